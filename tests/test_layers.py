"""Layers that only point down (docs/architecture.md, "The layers").

Every import in every module of tracklet/, at module level, inside functions, under
``TYPE_CHECKING`` and relative ones, and ``importlib.import_module("tracklet...")`` with a literal
name, must go to the importer's own package or to a lower layer. The checker is tested on planted
violations, so a broken checker can't pass quietly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tracklet

PACKAGE = Path(tracklet.__file__).parent

# Rank of each top-level package (or module) of tracklet: a module may import its own package and
# lower ranks only. Packages of one rank don't import each other.
LAYERS = {
    "errors": 0, "proto": 0,  # the error classes, the generated wire format: standard library only
    "core": 1,  # recording, the record log, reading one run's log
    "client": 2, "store": 2,  # the HTTP client of a server; the derived SQL store
    "artifacts": 3,  # artifacts: blobs, chunks, versions; lineage read from the store
    "media": 4,  # logged media and tables: encoded off the training thread into the artifacts' blob store
    "registry": 4,  # the model registry: collections of links to artifact versions, alias history, cards
    "api": 5,  # tracklet.Api: LocalApi (core + store + artifacts + media), RemoteApi (client)
    "sweeps": 5,  # hyperparameter sweeps: Optuna studies, leases and agents over the core
    "tracing": 5,  # @tracklet.op spans on the run's queue; OTLP decoding for the server's receiver
    "reproduce": 5,  # tracklet reproduce / diff: a run back into a run, two runs compared
    "reports": 5,  # reports: Markdown with tracklet-panel blocks, versions, view tokens (store + client)
    "server": 6, "compat": 6,  # the tracking server; the W&B API over the run and read APIs
    "importers": 7, "integrations": 7,  # W&B/TensorBoard importers; framework integrations
    "cli": 8,  # the command line
    "__init__": 9, "__main__": 9,  # the package's public names (tracklet.init, tracklet.Api, ...)
}
# Layers that build on the package's public names (``import tracklet``; ``tracklet.init``):
# products on top of the library, never the library itself.
USES_PUBLIC_NAMES = {"compat", "importers", "integrations", "cli", "__main__"}


def layer_of(module: str) -> str:
    """The top-level part of tracklet a module belongs to ("core", "store", ..., "__init__")."""
    parts = module.split(".")
    assert parts[0] == "tracklet", module
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (``tracklet.x.y``) names a module or package of tracklet on disk."""
    if not dotted.startswith("tracklet."):
        return False
    path = PACKAGE.joinpath(*dotted.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(module: str, source: str, *, is_package: bool = False) -> list[tuple[int, str, tuple[str, ...]]]:
    """``(line, imported module, names)`` for every import of a tracklet module in ``source``,
    wherever it is in the file; relative imports resolved against ``module``."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, target] if target else base)
            names = []
            for alias in node.names:  # ``from tracklet import errors`` imports the module tracklet.errors
                if _is_module(f"{target}.{alias.name}"):
                    found.append((node.lineno, f"{target}.{alias.name}", ()))
                else:
                    names.append(alias.name)
            if names or not node.names:
                found.append((node.lineno, target, tuple(names)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value, ()))
    return [(line, target, names) for line, target, names in found
            if target == "tracklet" or target.startswith("tracklet.")]


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """Each import in ``source`` (the text of ``module``) that points up or sideways."""
    importer = layer_of(module)
    if importer not in LAYERS:
        return [f"{module}: in no layer (add tracklet.{importer} to LAYERS)"]
    problems = []
    for line, target, names in imports_of(module, source, is_package=is_package):
        if target == "tracklet":
            if names == ("__version__",) or importer in USES_PUBLIC_NAMES | {"__init__"}:
                continue  # the version constant; the public names, from the products built on them
            problems.append(f"{module}:{line} imports the package's public names ({', '.join(names) or 'tracklet'})")
            continue
        imported = layer_of(target)
        if imported == importer:
            continue
        if imported not in LAYERS:
            problems.append(f"{module}:{line} imports {target}, which is in no layer (add it to LAYERS)")
        elif LAYERS[imported] >= LAYERS[importer]:
            problems.append(f"{module}:{line} imports {target}: {importer} (layer {LAYERS[importer]}) may not "
                            f"import {imported} (layer {LAYERS[imported]})")
    return problems


def _all_modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "static" not in path.parts)


def test_every_top_level_part_of_tracklet_has_a_layer():
    tops = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in _all_modules()}
    assert tops <= set(LAYERS), tops - set(LAYERS)


def test_imports_only_point_down():
    problems = []
    for path in _all_modules():
        problems += violations(module_name(path), path.read_text(), is_package=path.name == "__init__.py")
    assert problems == []


def test_core_imports_nothing_from_store_server_client_api_or_cli():
    # The rule the layers exist for, said directly.
    above = ("tracklet.store", "tracklet.server", "tracklet.client", "tracklet.api", "tracklet.cli")
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        module = module_name(path)
        for line, target, _ in imports_of(module, path.read_text(), is_package=path.name == "__init__.py"):
            assert not target.startswith(above), f"{module}:{line} imports {target}"


@pytest.mark.parametrize("module, source, is_package", [
    ("tracklet.core.run", "from tracklet.store import Store\n", False),  # module level
    ("tracklet.core.run", "def f():\n    from tracklet.server.client import SyncClient\n", False),  # lazy
    ("tracklet.core.run", "def f():\n    import tracklet.client.http\n", False),
    ("tracklet.core.system.monitor", "from ...api import Api\n", False),  # relative: tracklet.api
    ("tracklet.core", "from ..store import query\n", True),  # relative, from a package's __init__
    ("tracklet.core.run", "import typing\nif typing.TYPE_CHECKING:\n    from tracklet.cli.main import main\n", False),
    ("tracklet.core.run", "import importlib\nimportlib.import_module('tracklet.store.query')\n", False),
    ("tracklet.client.sync", "from tracklet.store import Store\n", False),  # sideways: one layer
    ("tracklet.store.query", "from tracklet.client.http import HttpClient\n", False),
    ("tracklet.store.query", "from tracklet.api import Api\n", False),  # up
    ("tracklet.server.app", "from tracklet.cli.common import CliError\n", False),
    ("tracklet.core.api", "from tracklet import Api\n", False),  # the facade, from the library
    ("tracklet.core.run", "from tracklet.nowhere import x\n", False),  # a part with no layer
    ("tracklet.nowhere.thing", "from tracklet.core import run\n", False),  # a module in no layer
])
def test_the_checker_finds_a_planted_violation(module, source, is_package):
    (problem,) = violations(module, source, is_package=is_package)
    assert problem.startswith(f"{module}:")


@pytest.mark.parametrize("module, source", [
    ("tracklet.core.run", ("from tracklet.core.layout import RunPaths\nfrom tracklet import errors\n"
                           "from tracklet.proto import records_pb2\nfrom . import lifecycle\n")),
    ("tracklet.core.run", "from tracklet import __version__\nimport numpy\n"),
    ("tracklet.api.local", "from tracklet.store import Store\nfrom tracklet.core.api import RecordedRun\n"),
    ("tracklet.api.remote", "def f():\n    from tracklet.client.http import HttpClient\n"),
    ("tracklet.cli.serve", "from tracklet.server.app import create_app\nfrom tracklet.client.sync import SyncClient\n"),
    ("tracklet.integrations.keras", "import tracklet\nfrom tracklet.compat import wandb\n"),
])
def test_the_checker_allows_what_points_down(module, source):
    assert violations(module, source) == []


def test_the_checker_reads_a_planted_module_on_disk(tmp_path):
    # The same walk as test_imports_only_point_down, over a copy of a real module with a lazy
    # import planted inside a function: the walk must find it.
    planted = tmp_path / "tracklet" / "core" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text((PACKAGE / "core" / "layout.py").read_text()
                       + "\n\ndef _planted():\n    from tracklet.server import app\n    return app\n")
    parts = planted.relative_to(tmp_path).with_suffix("").parts
    problems = violations(".".join(parts), planted.read_text())
    assert len(problems) == 1 and "tracklet.server" in problems[0]
