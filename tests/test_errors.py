"""One error hierarchy (tracklet/errors.py) and a CLI split into command modules without import cycles."""

from __future__ import annotations

import ast
import builtins
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracklet
from tracklet import errors
from tracklet.cli.common import CliError, _as_cli_error
from tracklet.cli.main import main

PACKAGE = Path(tracklet.__file__).parent
CLI = PACKAGE / "cli"
_BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                       if isinstance(value, type) and issubclass(value, BaseException)}
# Where each error was defined before tracklet/errors.py: those import paths keep working.
OLD_HOMES = {
    "tracklet.core.api": ["RunNotFound"],
    "tracklet.core.export": ["MissingDependency"],
    "tracklet.core.recordlog": ["RecordLogError"],
    "tracklet.core.remote": ["RemoteError"],
    "tracklet.core.validate": ["RecordRejected"],
    "tracklet.core.values": ["Unsupported"],
    "tracklet.core.warn": ["TrackletWarning"],
    "tracklet.core.encoder": ["TrackletWarning"],
    "tracklet.store.filters": ["FilterSyntaxError"],
    "tracklet.store.query": ["RunNotIndexed"],
    "tracklet.store.ingest": ["IndexerBusy"],
    "tracklet.store.engine": ["MissingDriver"],
    "tracklet.server.auth": ["AuthError"],
    "tracklet.server.client": ["SyncError"],
    "tracklet.server.files": ["NameConflict"],
    "tracklet.server.logs": ["BadRequest", "OffsetConflict"],
    "tracklet.importers.leveldblog": ["NotAWandbFile"],
    "tracklet.importers.writer": ["SourceError"],
    "tracklet.integrations.huggingface": ["TrainingIncomplete"],
    "tracklet.media.base": ["MediaError"],
    "tracklet.sweeps.agent": ["TrialPruned"],
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exception_classes_outside_errors() -> list[str]:
    """``module.Class`` for each class in tracklet deriving from a builtin exception by name,
    anywhere but tracklet/errors.py and the W&B compatibility layer (which keeps W&B's classes)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "errors.py" or (PACKAGE / "compat" / "wandb") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases}
                if bases & _BUILTIN_EXCEPTIONS:
                    found.append(f"{_module_name(path)}.{node.name}")
    return found


def test_every_exception_class_is_defined_in_errors_with_the_common_base():
    # A new exception class elsewhere must derive from TrackletError (or live in tracklet/errors.py).
    assert _exception_classes_outside_errors() == []
    defined = [value for value in vars(errors).values()
               if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == errors.__name__]
    assert {cls.__name__ for cls in defined} == set(errors.__all__)
    for cls in defined:
        base = errors.TrackletWarning if issubclass(cls, Warning) else errors.TrackletError
        assert issubclass(cls, base), cls
    assert errors.TrackletError.__bases__ == (Exception,)
    assert errors.TrackletWarning.__bases__ == (UserWarning,)
    assert issubclass(CliError, errors.TrackletError)


def test_errors_keep_their_standard_base_and_old_import_path():
    # Existing `except LookupError:` and the like keep catching them.
    assert issubclass(errors.RunNotFound, LookupError) and issubclass(errors.RunNotIndexed, LookupError)
    assert issubclass(errors.AuthError, LookupError)
    assert issubclass(errors.FilterSyntaxError, ValueError) and issubclass(errors.RecordRejected, ValueError)
    assert issubclass(errors.MissingDependency, ImportError) and issubclass(errors.MissingDriver, ImportError)
    assert issubclass(errors.IndexerBusy, RuntimeError) and issubclass(errors.SyncError, RuntimeError)
    assert issubclass(errors.Unsupported, TypeError)
    for module, names in OLD_HOMES.items():
        for name in names:
            assert getattr(importlib.import_module(module), name) is getattr(errors, name), f"{module}.{name}"
    assert tracklet.TrackletError is errors.TrackletError
    assert tracklet.TrackletWarning is errors.TrackletWarning


def test_import_tracklet_errors_imports_nothing_heavy():
    code = ("import sys, tracklet, tracklet.errors; tracklet.TrackletError; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('google', 'numpy', 'sqlalchemy', 'click', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _cli_imports() -> dict[str, set[str]]:
    """tracklet.cli module -> the tracklet.cli modules it imports, at the top or inside functions."""
    graph: dict[str, set[str]] = {}
    for path in CLI.glob("*.py"):
        name = _module_name(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)  # from tracklet.cli import x
        graph[name] = {t for t in targets if t.startswith("tracklet.cli.") and t != name}
    return {name: {t for t in targets if t in graph} for name, targets in graph.items()}


def test_cli_modules_import_each_other_without_a_cycle():
    graph = _cli_imports()
    assert {"tracklet.cli.main", "tracklet.cli.common", "tracklet.cli.runs", "tracklet.cli.serve"} <= graph.keys()
    assert graph["tracklet.cli.common"] == set()  # the shared helpers import no command module
    assert all("tracklet.cli.main" not in targets for targets in graph.values())  # only main imports commands
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in visiting, "import cycle: " + " -> ".join(path + [name])
        if name in done:
            return
        visiting.add(name)
        for target in sorted(graph[name]):
            visit(target, path + [name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_every_command_is_registered_once():
    assert sorted(main.commands) == sorted(["projects", "runs", "show", "export", "index", "gc", "run", "demo",
                                            "server", "ui", "admin", "login", "sync", "import", "artifact",
                                            "registry", "sweep", "agent", "audit", "automation", "reproduce", "diff",
                                            "report", "traces", "media"])


def test_cli_help_imports_no_store_server_or_protobuf():
    code = ("import sys\nfrom tracklet.cli.main import main\n"
            "try:\n    main(['--help'], prog_name='tracklet')\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'fastapi', 'google', 'numpy', "
            "'httpx', 'uvicorn', 'rich'}), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: tracklet" in done.stdout
    assert done.stderr.strip() == "[]"


@pytest.mark.parametrize("error", [
    errors.RunNotFound("no run 'x'"), errors.IndexerBusy("another process is indexing"),
    errors.RunNotIndexed("not indexed"), errors.AuthError("no user 'x'"), errors.MissingDriver("no psycopg"),
    errors.MissingDependency("no pyarrow"), errors.FilterSyntaxError("bad", "a ==", 3),
    errors.RecordLogError("not a record log"), ValueError("bad value"),
])
def test_tracklet_errors_become_one_line_cli_errors(error):
    translated = _as_cli_error(error)
    assert isinstance(translated, CliError) and translated.format_message() == str(error)


def test_bugs_are_not_translated():
    assert _as_cli_error(RuntimeError("a bug")) is None
    assert _as_cli_error(TypeError("a bug")) is None


def test_a_tracklet_error_from_a_command_is_one_line_and_status_2(tmp_path):
    result = CliRunner().invoke(main, ["--dir", str(tmp_path), "show", "nosuchrun"])
    assert result.exit_code == 2
    assert result.output.startswith("tracklet: error: ") and "Traceback" not in result.output
