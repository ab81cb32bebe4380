"""The rule that keeps a sweep pruner's stop of a function trial from being lost, held for code
to come: after the agent prunes a trial run in this process (``wandb.agent(function=...)``,
``Agent.run_function``), the run's ``log()`` raises ``TrialPruned`` at its entry
(``Run._stop_logging``), and tracklet code calling ``log()`` on the training thread under a
guard that keeps the tracker from stopping training (``except Exception:``, a context manager
catching around its ``yield``) must let it through, or the trial trains on to its end (as
``wandb.log()``'s guard did). A static scan of tracklet/: a broad handler around a call that can
reach ``log()`` (a call named ``log``, or of a function of the same module that makes one) has an
``except TrialPruned: raise`` before it. (The agent's raise into a trial that doesn't log lands
outside tracklet's code: ``sweeps/agent.py``'s ``_outside_tracklet``.)"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tracklet"
# where code runs on the caller's (training) thread and calls a run's log()
SCANNED = ("compat", "integrations", "core", "__init__.py")
BROAD = {"Exception", "BaseException", None}  # None: a bare except
# callbacks another module gives a run's log() to, by the attribute they are kept in
# (core/torch_watch.py: wandb.watch's and the Lightning logger's ``record``)
LOG_CALLBACKS = {"_record"}


def _caught(handler: ast.ExceptHandler) -> set[str | None]:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {kind.id if isinstance(kind, ast.Name) else kind.attr if isinstance(kind, ast.Attribute) else None
            for kind in kinds}


def _called(node: ast.AST) -> set[str]:
    """The names called in ``node`` (``run.log(...)`` -> log), nested functions left out."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Call):
            func = item.func
            found.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
        for child in ast.iter_child_nodes(item):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)
    return found


def _logging_functions(tree: ast.Module) -> set[str]:
    """``log`` and the functions of the module whose body calls one of these, to a fixpoint."""
    bodies = [(node.name, _called(node)) for node in ast.walk(tree)
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    logging = {"log"} | LOG_CALLBACKS
    while True:
        more = {name for name, calls in bodies if calls & logging} - logging
        if not more:
            return logging
        logging |= more


def _yields(body: list[ast.stmt]) -> bool:
    return any(isinstance(node, (ast.Yield, ast.YieldFrom)) for stmt in body for node in ast.walk(stmt))


def _swallowing(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what it calls) of each broad handler in ``tree`` around a call reaching log()
    with no ``except TrialPruned`` before it."""
    found = []
    logging = _logging_functions(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        reaches = sorted(set().union(*(_called(stmt) for stmt in node.body)) & logging)
        if not reaches and not _yields(node.body):  # a context manager's yield runs anything
            continue
        for handler in node.handlers:
            caught = _caught(handler)
            if "TrialPruned" in caught:
                break
            if caught & BROAD:
                found.append((handler.lineno, ", ".join(reaches) or "yield"))
                break
    return found


def test_guards_around_log_let_a_trials_prune_through():
    paths = [path for part in SCANNED for path in
             (sorted((PACKAGE / part).rglob("*.py")) if (PACKAGE / part).is_dir() else [PACKAGE / part])]
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: calls {what}"
             for path in paths for line, what in _swallowing(ast.parse(path.read_text(), str(path)))]
    assert found == []


def test_the_scan_finds_each_kind_of_guard():
    source = textwrap.dedent('''
        import contextlib

        def step(run, row):
            try:
                _write(run, row)
            except Exception:
                pass

        def _write(run, row):
            run.log(row)

        def hook(self, row):
            try:
                self._record(row, None)
            except (ValueError, BaseException):
                pass

        @contextlib.contextmanager
        def recording():
            try:
                yield
            except:
                pass

        def fine(run, row):
            try:
                run.log(row)
            except TrialPruned:
                raise
            except Exception:
                pass
            try:
                run.log(row)
            except ValueError:
                pass
    ''')
    assert [what for _line, what in _swallowing(ast.parse(source))] == ["_write", "_record", "yield"]
