"""The suite's rule: a test never forks the pytest process itself. A forked pytest(-xdist) worker
inherits execnet's threads, JAX's and every library's, and the suite's exit handlers ("os.fork()
was called ... JAX is multithreaded, so this will likely lead to a deadlock"). A test that needs a
fork runs the process that forks as a fresh interpreter (``conftest.run_script``, with
``forkprobe``'s helpers), its results printed for the test to check. A static scan of the tests'
code (a script in a string is not code here: it runs in its own interpreter)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# the calls that fork the process they run in
FORKS = {"os.fork", "os.forkpty", "forkprobe.forked", "forkprobe.fork_amid", "forkprobe.fork_during_this_step"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def forks_in(source: str) -> list[int]:
    """The lines of ``source`` that fork the process running it: ``FORKS``, or multiprocessing's
    ``fork`` start method (``get_context("fork")``, ``set_start_method("fork")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in FORKS or (name.rsplit(".", 1)[-1] in ("get_context", "set_start_method")
                             and any(isinstance(a, ast.Constant) and a.value == "fork"
                                     for a in node.args)):
            found.append(node.lineno)
    return found


def test_no_test_forks_the_pytest_process():
    # forkprobe's and serverfork's forks run in the scripts and the server template that import them
    found = [f"{path.name}:{line}" for path in sorted(TESTS.glob("*.py"))
             if path.name.startswith("test_") or path.name == "conftest.py"
             for line in forks_in(path.read_text())]
    assert found == [], "fork in a fresh interpreter (conftest.run_script), not in pytest's own process"


def test_the_rule_catches_a_fork_in_a_test_and_passes_one_in_a_script():
    assert forks_in("import os\ndef test_x():\n    pid = os.fork()\n") == [3]
    assert forks_in("import forkprobe\ndef test_x():\n    forkprobe.forked(lambda: 0)\n") == [3]
    assert forks_in("import multiprocessing as mp\ndef test_x():\n    mp.get_context('fork').Process()\n") == [3]
    assert forks_in("def test_x():\n    run_script('import os; os.fork()')\n") == []
