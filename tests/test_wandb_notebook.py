"""W&B's notebook rule for ``wandb.init(reinit="default")`` (the default): in a notebook (an
IPython kernel, or an IPython shell) a second ``wandb.init()`` finishes the live run and starts a
new one; in a script it returns the live run. Checked in a real Jupyter kernel (ipykernel driven by
jupyter_client) and a real IPython shell; without IPython the compat layer never imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

import tracklet

CELL = textwrap.dedent("""
    import json, sys
    import tracklet.compat.wandb as wandb
    settings = wandb.Settings(silent=True)
    first = wandb.init(project="nb", settings=settings)
    second = wandb.init(project="nb", settings=settings)
    kept = wandb.init(project="nb", reinit="return_previous", settings=settings)
    print(json.dumps({"first": first.id, "second": second.id, "kept": kept.id,
                      "current": wandb.run.id, "in_notebook": wandb._init.in_notebook()}))
    second.finish()
""")


def _ended(root: Path, run_id: str) -> str:
    return tracklet.Api(root).run(f"nb/{run_id}").state


def _check(root: Path, answer: dict) -> None:
    assert answer["in_notebook"] is True
    assert answer["first"] != answer["second"] == answer["current"] == answer["kept"]
    assert _ended(root, answer["first"]) == "finished"  # finished by the second init, not left running


def test_in_a_jupyter_kernel_a_second_init_finishes_the_first_run(root):
    pytest.importorskip("ipykernel", reason="pip install ipykernel")
    manager_module = pytest.importorskip("jupyter_client.manager", reason="pip install jupyter_client")
    import ipykernel

    path = os.pathsep.join([str(REPO), str(Path(ipykernel.__file__).parent.parent)])
    env = {**os.environ, "PYTHONPATH": path, "TRACKLET_DIR": str(root)}
    manager, client = manager_module.start_new_kernel(kernel_name="python3", env=env)
    outputs: list = []
    try:
        reply = client.execute_interactive(CELL, timeout=120, output_hook=outputs.append)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream" and m["content"].get("name") == "stdout")
    _check(root, json.loads(printed.strip().splitlines()[-1]))


def test_in_an_ipython_shell_a_second_init_finishes_the_first_run(root):
    pytest.importorskip("IPython", reason="pip install ipython")
    script = textwrap.dedent(f"""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell({CELL!r})
        result.raise_error()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TRACKLET_DIR": str(root)})
    assert done.returncode == 0, done.stderr
    _check(root, json.loads(done.stdout.strip().splitlines()[-1]))


def test_in_a_script_a_second_init_returns_the_live_run_and_ipython_is_not_imported(root):
    script = CELL + "assert 'IPython' not in sys.modules, 'the compat layer imported IPython'\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TRACKLET_DIR": str(root)})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["in_notebook"] is False and answer["first"] == answer["second"] == answer["kept"]
