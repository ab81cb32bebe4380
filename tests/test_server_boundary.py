"""The server reads the store only through ``Store`` methods, and runs SQL only on its own tables.

Read from the source with ``ast`` (every import, at module level or inside a function), so a
route that reaches into the store's tables fails here rather than in review:
- no module of ``tracklet/server`` imports a store module but the package (``Store`` and its
  result types) and ``store.logsource`` (the ``LogSource`` contract, no SQL);
- only the modules that own the server's tables (``schema.py``, ``auth.py``, ``segments.py`` and
  the server's migrations) import SQLAlchemy, and they can only name tables from
  ``server/schema.py``, since the store's schema is off limits to every server module.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import tracklet.server

SERVER = Path(tracklet.server.__file__).resolve().parent
# Store modules the server may import: the public package and the log source contract.
STORE_ALLOWED = {"tracklet.store", "tracklet.store.logsource"}
# The server modules that own the server's tables (tracklet/server/schema.py) and query them.
SQL_OWNERS = {"schema.py", "auth.py", "registry_roles.py", "registry_checks.py", "segments.py", "sweeps_db.py", "audit.py", "events.py", "automations.py", "automations_worker.py",
              "artifact_blobs.py", "artifact_packed.py", "artifact_registry_sql.py", "artifact_gc.py",
              "wal_checkpoint.py", "write_gate.py", "run_creators.py", "primaries.py",
              "media_retention.py"}  # media_retention: a paged prune's state (media_prune_states/_digests)  # artifact_blobs; artifact_versions/_aliases


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError, ValueError):
        return False


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``from a import b`` gives ``a``, and
    ``a.b`` too when ``b`` is a submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if _is_module(f"{node.module}.{alias.name}"))
    return found


def _server_modules() -> list[Path]:
    modules = sorted(SERVER.rglob("*.py"))
    assert len(modules) > 15, modules  # the walk found the package
    return modules


def _is_sql_owner(path: Path) -> bool:
    relative = path.relative_to(SERVER)
    return relative.parts[0] == "migrations" or str(relative) in SQL_OWNERS


def test_the_server_imports_no_store_internals():
    reaching = {}
    for path in _server_modules():
        internal = {name for name in _imports(path)
                    if name.startswith("tracklet.store.") and name not in STORE_ALLOWED}
        if internal:
            reaching[str(path.relative_to(SERVER))] = sorted(internal)
    assert reaching == {}, "server modules must read the store through Store methods (tracklet.store)"


def test_only_the_owners_of_the_server_tables_use_sqlalchemy():
    using = {path for path in _server_modules()
             if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in _imports(path))}
    assert sorted(str(path.relative_to(SERVER)) for path in using if not _is_sql_owner(path)) == []
    assert {"auth.py", "segments.py", "schema.py"} <= {str(path.relative_to(SERVER)) for path in using}


def test_the_check_sees_imports_anywhere_in_a_module(tmp_path):
    """A guard that cannot fail is no guard: imports inside a function are found, submodules too."""
    module = tmp_path / "route.py"
    module.write_text("def handler():\n    import sqlalchemy as sa\n    from tracklet.store import schema, Store\n"
                      "    from tracklet.store.query import SeriesHistory\n")
    assert _imports(module) == {"sqlalchemy", "tracklet.store", "tracklet.store.schema", "tracklet.store.query"}
