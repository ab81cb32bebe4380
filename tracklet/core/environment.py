"""Environment capture: git state, installed packages, host and hardware, gathered off the caller's
thread by a short-lived daemon thread that queues one ``Environment`` record when done.

Files written to the run's ``files/`` directory: ``diff.patch`` (``git diff HEAD``, tracked changes
only) when the working tree is dirty, ``requirements.txt`` (``name==version`` per package; where a
direct or editable install came from). The repository's untracked, not ignored source files the
program had imported (``core/provenance.py``) are handed to the run, which logs them as a ``code``
artifact (``Run._log_code_snapshot``; without a run: ``files/code/``). The interpreter, allow-listed
environment variables and CUDA versions are recorded with the host.

The package inventory (reading every installed distribution's metadata: 100-250 ms in a venv with
100+ packages) is cached under the data root (``cache/``) per interpreter and ``sys.path``, with
what each watched directory (``site-packages``, those packages were found in) held. A run reads it
as is while those directories keep their modification times; after ``pip install`` (a directory
changed) only the entries added or changed there are read and the removed ones dropped
(``_update_inventory``: ~4 ms of CPU, not a scan), and the cache is rewritten. ``finish()``
waits at most ``Settings.capture_wait`` (0.1 s) for the capture; parts not captured by then, and
parts whose capture failed, are named in the record's ``incomplete`` field with the reason in
``incomplete_reasons``, instead of holding up the end of the run. Packages the cache answers are
captured first, before ``init()`` returns, and before git; a scan (no usable cache) comes last. A run that found
no inventory cache still writes one: interpreter exit waits for its scan, at most
``INVENTORY_EXIT_WAIT``, so the next short run of the script finds it.
The git remote is recorded without credentials (``core/redact.py``); the diff is recorded as is.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tracklet.core import hostinfo, threads

if TYPE_CHECKING:  # the record is a core/wire.py message; these functions also fill protobuf's
    from tracklet.core.filehash import HashedBytes
    from tracklet.core.wire import Message
    from tracklet.proto import records_pb2 as pb

GIT_TIMEOUT = 10.0
# Seconds interpreter exit waits for a package scan finish() did not wait for, so that its cache is
# written for the next run (a short script run again and again would otherwise never have one).
INVENTORY_EXIT_WAIT = 2.0


class _Command:
    """One git command started with ``os.posix_spawnp`` (its output on a pipe, stdin and stderr
    on the null device), read once by :meth:`output`.

    Not ``subprocess``: importing it (with ``selectors``, ``signal``, ``locale``, ...) and its
    ``Popen`` bookkeeping were ~150 file-system and pipe calls on the capture thread, each of which
    gives the GIL up; beside a busy training loop, every one of them then waits out a switch
    interval (5 ms) to get it back."""

    __slots__ = ("pid", "fd")

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd

    @classmethod
    def start(cls, args: list[str], cwd: str) -> _Command | _PopenCommand | None:
        if not hasattr(os, "posix_spawnp"):  # Windows
            return _PopenCommand.start(args, cwd)
        try:
            read_end, write_end = os.pipe()  # not inheritable: only the dup2 reaches git
        except OSError:
            return None
        try:
            pid = os.posix_spawnp("git", ["git", "-C", cwd, *args], os.environ, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_end, 1),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ], setsigmask=threads.NO_SIGNALS)  # not the capture thread's (core/threads.py)
        except (OSError, ValueError, TypeError):  # no git, or a cwd or argument it can't take
            os.close(read_end)
            return None
        finally:
            os.close(write_end)
        return cls(pid, read_end)

    def output(self, timeout: float = GIT_TIMEOUT) -> str | None:
        """What the command printed, or None if it failed or took longer than ``timeout``."""
        import select

        chunks = []
        deadline = time.monotonic() + timeout
        poller = select.poll()  # (not select.select: a training process holding over 1,024 files can't use it)
        poller.register(self.fd, select.POLLIN)
        try:
            while True:
                if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                    self.stop()
                    return None
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            self.stop()
            return None
        finally:
            self.close()
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped by someone else (a SIGCHLD handler): its status is lost
            return None
        if os.waitstatus_to_exitcode(status) != 0:
            return None
        return b"".join(chunks).decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Kill the command if it still runs, and reap it."""
        try:
            os.kill(self.pid, 9)  # SIGKILL (the signal module is not imported for it)
            os.waitpid(self.pid, 0)
        except OSError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _PopenCommand:
    """``_Command`` where ``os.posix_spawnp`` is missing (Windows): ``subprocess``."""

    def __init__(self, process: Any) -> None:
        self._process = process

    @classmethod
    def start(cls, args: list[str], cwd: str) -> _PopenCommand | None:
        import subprocess

        try:
            return cls(subprocess.Popen(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        except (OSError, ValueError, subprocess.SubprocessError):
            return None

    def output(self, timeout: float = GIT_TIMEOUT) -> str | None:
        import subprocess

        try:
            out, _ = self._process.communicate(timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            self.stop()
            return None
        return None if self._process.returncode != 0 else out.decode("utf-8", errors="replace")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()

    def close(self) -> None:
        pass


class GitProbe:
    """The git questions of a capture, asked at once: the commands start as child processes
    when the probe is made and are read by :meth:`capture`.

    Run one after another on a thread that shares the GIL with a busy training loop, each
    command's pipe reads wait for the GIL several times (~40 ms for the three); started together
    first, they run while the thread reads the host and the package inventory, and are read in
    one wait.
    """

    # One call for root, commit and branch; in a repository without commits it fails, and the
    # root alone is asked for (see capture).
    HEAD = ("rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD")
    REMOTE = ("config", "--get", "remote.origin.url")
    DIFF = ("diff", "HEAD", "--binary")

    def __init__(self, cwd: str) -> None:
        self._cwd = cwd
        self._started = {name: _Command.start(list(args), cwd) for name, args in
                         (("head", self.HEAD), ("remote", self.REMOTE), ("diff", self.DIFF))}
        self.root = ""  # the work tree's top level, once captured
        # The code snapshot's question (which imported files are untracked), asked as soon as the
        # top level is known (see capture): the paths asked about and git's command for them.
        self._asked: list[tuple[list[str], _Command | _PopenCommand | None]] = []
        self._imported: dict[str, str] = {}  # provenance.imported_files(root) when it was asked
        self._modules: frozenset[str] = frozenset()  # sys.modules' names then

    def _output(self, name: str) -> str | None:
        """What the command printed, or None if it failed, timed out or couldn't start."""
        command = self._started.pop(name, None)
        return None if command is None else command.output()

    def abandon(self) -> None:
        """Stop every command not read yet (a capture that failed before reading them)."""
        for command in [*self._started.values(), *(command for _, command in self._asked)]:
            if command is not None:
                command.stop()
                command.close()
        self._started.clear()
        self._asked.clear()

    def capture(self, environment: pb.Environment | Message, files_dir: Path) -> None:
        found = self._output("head")
        lines = found.splitlines() if found is not None else []
        if len(lines) != 3:
            root = _git(["rev-parse", "--show-toplevel"], self._cwd)
            if root is None:
                self.abandon()
                return
            lines = [root.strip(), "", ""]
        environment.git_root, environment.git_commit, environment.git_branch = (line.strip() for line in lines)
        self.root = environment.git_root
        self._ask_untracked()  # beside the diff (it reads every tracked file's state), not after it
        # https://user:token@host/... would reach every reader of the project: never record userinfo.
        from tracklet.core.redact import redact_url  # on the capture thread: its regexes cost init() nothing

        environment.git_remote = redact_url((self._output("remote") or "").strip())
        diff = self._output("diff")
        if diff and environment.git_commit:
            data = diff.encode("utf-8")
            environment.git_dirty = True
            from tracklet.core.filehash import sha256_hex  # a small diff: no OpenSSL (~3 ms of CPU) to load

            environment.git_diff_sha256 = sha256_hex(data)
            (files_dir / "diff.patch").write_bytes(data)

    UNTRACKED = ("ls-files", "--others", "--exclude-standard", "-z", "--")

    def _ask_untracked(self) -> None:
        """Start git's answer to :meth:`untracked` for the files imported from the work tree so
        far, in commands of at most 500 paths: it then runs beside the diff instead of starting
        after it (one more process start, and git's own, that a short run's ``finish()`` waited
        for in turn)."""
        if not self.root:
            return
        from tracklet.core import provenance

        self._modules = frozenset(sys.modules)
        self._imported = provenance.imported_files(self.root)
        paths = list(self._imported)
        self._asked = [(paths[start:start + 500], _Command.start([*self.UNTRACKED, *paths[start:start + 500]], self.root))
                       for start in range(0, len(paths), 500)]

    def imported(self) -> dict[str, str]:
        """``provenance.imported_files(root)`` now: as read when git was asked, unless the program
        imported or dropped modules since."""
        if frozenset(sys.modules) == self._modules:
            return self._imported
        from tracklet.core import provenance

        return provenance.imported_files(self.root)

    def untracked(self, paths: list[str]) -> list[str]:
        """Which of ``paths`` (relative to the top level) are untracked and not ignored. Only those
        paths are asked about: git doesn't walk the work tree for them. Paths already asked about
        (:meth:`_ask_untracked`) are read from that command's answer."""
        found, asked = [], set()
        for chunk, command in self._asked:
            if command is not None:
                found += [path for path in (command.output() or "").split("\0") if path]
                asked.update(chunk)
        self._asked = []
        rest = [path for path in paths if path not in asked]
        for start in range(0, len(rest), 500):
            listed = _git([*self.UNTRACKED, *rest[start:start + 500]], self.root)
            found += [path for path in (listed or "").split("\0") if path]
        wanted = set(paths)
        return [path for path in found if path in wanted]


def _git(args: list[str], cwd: str) -> str | None:
    command = _Command.start(args, cwd)
    return None if command is None else command.output()


def capture_git(environment: pb.Environment | Message, cwd: str, files_dir: Path) -> None:
    """The git state of ``cwd`` (root, commit, branch, remote without credentials, the diff
    against HEAD as ``diff.patch``)."""
    GitProbe(cwd).capture(environment, files_dir)


Inventory = list[tuple[str, str, dict[str, Any]]]  # (name, version, source: provenance.package_source)


def capture_packages(environment: pb.Environment | Message, files_dir: Path, cache_dir: Path | None = None,
                     cached: Inventory | None = None) -> None:
    """Every installed distribution as ``name==version`` (first on ``sys.path`` wins, as imports do),
    with where a direct or editable install came from (PEP 610), and its commit. ``cached``: the
    inventory already read from ``cache_dir``'s cache (else it is read again, then scanned)."""
    from tracklet.core import provenance

    packages = cached
    if packages is None and cache_dir is not None:
        packages = _cached_inventory(cache_dir)
    if packages is None:
        packages, directories = _scan_packages()
        if cache_dir is not None:
            _save_inventory(cache_dir, directories)
    lines = []
    for name, version, source in packages:
        package = environment.packages.add()
        package.name = name
        package.version = version
        provenance.fill_package(package, source)
        lines.append(provenance.requirement_line(name, version, package))
    lines.sort(key=str.lower)
    (files_dir / "requirements.txt").write_text("".join(line + "\n" for line in lines))


# One metadata entry of a watched directory: (entry name, its stamp, Name, Version, package_source);
# Name is "" for an entry without one (kept, so that it is not read again).
Entry = tuple[str, tuple[int, ...], str, str, dict[str, Any]]
# The watched directories in ``sys.path`` order: (path, its mtime or -1, its entries in the order
# importlib.metadata yields them).
Directories = list[tuple[str, int, list[Entry]]]


def _scan_packages() -> tuple[Inventory, Directories]:
    """The distributions (``importlib.metadata``'s full scan: every entry's metadata read), and the
    watched directories with what each held, for the cache."""
    from importlib import metadata

    before = {os.path.abspath(entry or "."): _mtime(os.path.abspath(entry or ".")) for entry in sys.path}
    found: dict[str, list[Entry]] = {}
    for distribution in metadata.distributions():
        where = getattr(distribution, "_path", None)  # PathDistribution: its .dist-info directory
        if where is None:
            continue  # from another finder: not in a directory this cache can watch
        entry = os.path.abspath(str(where))
        stamp = _stamp(entry)  # before reading: a change meanwhile is seen by the next run
        found.setdefault(os.path.dirname(entry), []).append(
            (os.path.basename(entry), stamp, *_read_distribution(distribution)))
    # mtimes taken before the listing: a change meanwhile is seen by the next run
    directories = [(path, before[path] if path in before else _mtime(path), found.get(path, []))
                   for path in _watched_paths(set(found))]
    return _merged(directories), directories


def _read_distribution(distribution: Any) -> tuple[str, str, dict[str, Any]]:
    """Name (``""`` without one), version and ``package_source`` of a ``PathDistribution`` (the
    full scan) or a ``_MetadataEntry`` (an update)."""
    from tracklet.core.provenance import package_source

    name = distribution.metadata.get("Name")
    if not name:
        return "", "", {}
    return str(name), distribution.version or "", package_source(distribution)


def _merged(directories: Directories) -> Inventory:
    """The inventory: the first distribution of each name, in ``sys.path`` order (as imports)."""
    seen: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for _, _, entries in directories:
        for _, _, name, version, source in map(_valid_entry, entries):
            if name and name.lower() not in seen:
                seen[name.lower()] = (name, version, source)
    return list(seen.values())


def _cache_file(cache_dir: Path) -> Path:
    """One cache file per interpreter and ``sys.path``, named by a BLAKE2b digest of them.

    ``_blake2`` is built into CPython; ``hashlib`` would first load OpenSSL (~3 ms of a short
    run's capture, which ``finish()`` may wait for), which a clean repository's capture never needs
    (only a diff or a code snapshot is hashed with SHA-256)."""
    try:
        from _blake2 import blake2b
    except ImportError:  # an interpreter built without it
        from hashlib import blake2b

    text = "\0".join([sys.executable, sys.version, *(os.path.abspath(entry or ".") for entry in sys.path)])
    return cache_dir / f"packages5-{blake2b(text.encode('utf-8', 'surrogatepass'), digest_size=16).hexdigest()}.marshal"


def _watched_paths(sources: set[str]) -> list[str]:
    """The directories whose contents decide the inventory, in ``sys.path`` order: those packages
    were found in (``sources``), plus every ``site-packages``/``dist-packages`` directory on
    ``sys.path`` (where a first install lands). Installing or removing a package adds or removes
    a ``*.dist-info`` entry there, which changes the directory's mtime. Other ``sys.path`` entries
    (a script's own directory, say /tmp) change all the time and hold no packages, so they are
    not watched."""
    paths: dict[str, None] = {}
    for entry in sys.path:
        path = os.path.abspath(entry or ".")
        if path in sources or os.path.basename(path) in ("site-packages", "dist-packages"):
            paths[path] = None
    paths.update(dict.fromkeys(sorted(sources)))  # found by a finder outside sys.path: last
    return list(paths)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _stamp(entry: str) -> tuple[int, ...]:
    """What changes when a metadata entry is replaced or rewritten: the entry's inode and mtime
    (a reinstall, even of the same version, makes a new ``*.dist-info`` directory; pip writing a
    file in it, such as ``direct_url.json``, changes its mtime) and its ``METADATA``/``PKG-INFO``
    file's mtime and size (an edit in place)."""
    status = os.stat(entry)
    name = "METADATA" if entry.lower().endswith(".dist-info") else "PKG-INFO"
    try:
        inner = os.stat(os.path.join(entry, name))
    except OSError:  # an egg-info file, or no metadata
        return (status.st_ino, status.st_mtime_ns, -1, -1)
    return (status.st_ino, status.st_mtime_ns, inner.st_mtime_ns, inner.st_size)


def _listed(directory: str) -> list[str]:
    """The metadata entries ``importlib.metadata`` finds in ``directory``, in the order it yields
    them: ``*.dist-info``/``*.egg-info`` grouped by normalized name in listing order, then an
    ``.egg``'s ``EGG-INFO``. Raises ``OSError`` for what is not a directory (a zip file)."""
    import re

    egg = os.path.basename(directory).lower().endswith(".egg")
    groups: dict[str, list[str]] = {}
    eggs = []
    for child in os.listdir(directory):
        low = child.lower()
        if low.endswith((".dist-info", ".egg-info")):
            name = re.sub(r"[-_.]+", "-", low.rpartition(".")[0].partition("-")[0]).replace("-", "_")
            groups.setdefault(name, []).append(child)
        elif egg and low == "egg-info":
            eggs.append(child)
    return [child for children in groups.values() for child in children] + eggs


def _update_inventory(directories: Directories) -> Directories:
    """The cached directories brought up to date: an unchanged directory (same mtime) is kept as
    is; a changed one is listed again, and of its entries only those added or changed (their
    ``_stamp``) are read, the removed ones dropped. ``pip install`` of one package then costs a
    listing, a few hundred ``stat`` calls and one distribution's metadata (~3 ms of CPU with 250
    packages), not a full scan (~110 ms). Returns ``directories`` itself when nothing changed."""
    updated: Directories = []
    for directory in directories:
        path, mtime, entries = directory
        now = _mtime(path)  # before listing: a change meanwhile is seen by the next run
        if now == mtime:
            updated.append(directory)
            continue
        known = {entry[0]: entry for entry in map(_valid_entry, entries)}
        fresh: list[Entry] = []
        for child in _listed(path) if now != -1 else ():
            full = os.path.join(path, child)
            stamp = _stamp(full)
            old = known.get(child)
            if old is not None and old[1] == stamp:
                fresh.append(old)
            else:
                fresh.append((child, stamp, *_read_distribution(_MetadataEntry(full))))
        updated.append((path, now, fresh))
    if all(new is old for new, old in zip(updated, directories)):
        return directories
    return updated


class _MetadataEntry:
    """One ``*.dist-info``/``*.egg-info`` entry, read as ``importlib.metadata.PathDistribution``
    reads it (``metadata.get``, ``version``, ``read_text``: what ``_read_distribution`` and
    ``provenance.package_source`` use) without importing ``importlib.metadata``: its imports
    (``email``, ``zipfile``, ``csv``) are 20-35 ms of CPU in a fresh process, which the first run
    after an install would wait for in ``finish()``. The headers are parsed as ``email``'s compat32
    policy does (the first occurrence of a name; continuation lines kept, then dedented as
    ``importlib.metadata`` does); ``_update_inventory``'s
    test compares the result with ``importlib.metadata``'s full scan."""

    __slots__ = ("_path", "metadata", "version")

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        text = self.read_text("METADATA") or self.read_text("PKG-INFO") or self.read_text("") or ""
        self.metadata = self._headers(text)
        self.version = self.metadata.get("Version")

    def read_text(self, filename: str) -> str | None:
        try:
            return self._path.joinpath(filename).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, KeyError, NotADirectoryError, PermissionError):
            return None

    @staticmethod
    def _headers(text: str) -> dict[str, str]:
        """The headers before the first blank line, each name's first value."""
        headers: dict[str, str] = {}
        name = value = None
        for line in text.splitlines(keepends=True):
            if name is not None and line[:1] in (" ", "\t"):
                value = (value or "") + line  # a continuation line
                continue
            if name is not None and name.lower() not in headers:
                headers[name.lower()] = _MetadataEntry._unfolded(value)
            name, colon, value = line.partition(":")
            if not colon or not name.strip() or not line.strip():
                name = None
                break
            value = value.lstrip(" \t")
        if name is not None and name.lower() not in headers:
            headers[name.lower()] = _MetadataEntry._unfolded(value)
        return _Headers(headers)

    @staticmethod
    def _unfolded(value: str | None) -> str:
        """A header's value as ``importlib.metadata`` gives it: a folded one dedented ("RFC822
        indentation", its ``_adapters.Message``)."""
        value = (value or "").rstrip("\r\n")
        if "\n" not in value:
            return value
        import textwrap

        return textwrap.dedent(" " * 8 + value)


class _Headers(dict[str, str]):
    """Header names looked up regardless of case, as in ``email``."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def _valid_entry(entry: Any) -> Entry:
    """A cached entry as read from the file, checked (``TypeError``/``ValueError`` if it is not one)."""
    child, stamp, name, version, source = entry
    return (str(child), tuple(int(part) for part in stamp), str(name), str(version), dict(source))


def _load_inventory(cache_dir: Path) -> tuple[Inventory, list[tuple[str, int]], bytes] | None:
    """The inventory a run saved (``_save_inventory``), the watched directories' mtimes, and the
    directories' entries still marshalled (read only once one changed: a hit then costs what it
    did before entries were kept, ~0.1 ms); ``None`` when absent, damaged or not of this format.
    Kept with ``marshal`` (built in) rather than ``json``: the capture thread then imports no json
    package (four modules, a dozen file-system calls each, every one of which hands the GIL back
    to a busy training loop for a switch interval). Only this interpreter version reads the file
    (its name holds ``sys.version``); what is read is checked."""
    import marshal

    try:
        data = marshal.loads(_cache_file(cache_dir).read_bytes())
        packages = [(str(name), str(version), dict(source)) for name, version, source in data["packages"]]
        mtimes = [(str(path), int(mtime)) for path, mtime in data["mtimes"]]
        entries = data["entries"]
        if not isinstance(entries, bytes):
            return None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):  # absent, or damaged: scan again
        return None
    return packages, mtimes, entries


def _cached_inventory(cache_dir: Path) -> Inventory | None:
    """The inventory from the cache, brought up to date with what changed since
    (``_update_inventory``; the cache is then rewritten); ``None`` (scan) without a usable cache."""
    import marshal

    loaded = _load_inventory(cache_dir)
    if loaded is None:
        return None
    packages, mtimes, entries = loaded
    if all(_mtime(path) == mtime for path, mtime in mtimes):
        return packages
    try:
        directories = [(str(path), int(mtime), list(held)) for path, mtime, held in marshal.loads(entries)]
        if [(path, mtime) for path, mtime, _ in directories] != mtimes:
            return None
        updated = _update_inventory(directories)
        packages = _merged(updated)
    except Exception:  # damaged entries, a watched path no longer a directory, unreadable metadata: scan
        return None
    _save_inventory(cache_dir, updated, packages)
    return packages


def _save_inventory(cache_dir: Path, directories: Directories, packages: Inventory | None = None) -> None:
    """Write the cache: the inventory the directories make (``packages``, else merged here) and
    their mtimes, for a hit to read as is, and their entries (marshalled apart: an update reads
    them)."""
    import marshal

    try:
        if packages is None:
            packages = _merged(directories)
        cache_dir.mkdir(parents=True, exist_ok=True)
        target = _cache_file(cache_dir)
        temporary = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(marshal.dumps({"packages": packages,
                                             "mtimes": [(path, mtime) for path, mtime, _ in directories],
                                             "entries": marshal.dumps(directories)}))
        os.replace(temporary, target)  # readers see the whole file or none
    except (OSError, ValueError):  # a read-only data root: scan every time
        pass


def _import_capture_modules() -> None:
    """Import what the capture's parts use (not ``hashlib``: only a diff or a code snapshot is
    hashed with SHA-256, and it loads OpenSSL)."""
    import marshal  # noqa: F401  (the inventory cache)
    import select  # noqa: F401  (reading git's output)

    from tracklet.core import provenance, redact  # noqa: F401
    try:
        import _blake2  # noqa: F401  (the inventory cache's name)
    except ImportError:
        pass


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


class EnvironmentCapture:
    """Captures the environment on a daemon thread and queues one ``Environment`` record.

    The parts: the host (with the interpreter, variables and CUDA versions), git, the package
    inventory and the code snapshot (imported untracked files), in the order :meth:`_order` gives
    (packages the cache answers first, before ``init()`` returns). ``finish(timeout)``
    waits up to ``timeout`` for the whole; if the thread is still busy then, it queues what is
    ready, names the missing parts in ``incomplete`` and why in ``incomplete_reasons``, and the
    thread's later results are dropped. A part whose capture raised is named there too (what
    it had captured before failing is kept).
    """

    REASON_LENGTH = 500  # characters of an error's text kept as a reason

    PARTS = ("host", "git", "packages", "code")

    def __init__(self, cwd: str, files_dir: Path, put: Callable[[Any], None], report: Callable[[Any, str], None],
                 cache_dir: Path | None = None, gpu_names: bool = True,
                 log_code: Callable[[dict[str, HashedBytes], str], None] | None = None):
        """``log_code(files, program)`` stores the code snapshot (the run logs it as a ``code``
        artifact); called on this thread, with the lock held, once the part is kept. Without
        it the snapshot goes into ``files/code/``."""
        self._cwd = cwd
        self._log_code = log_code
        self._code: dict[str, HashedBytes] = {}  # the snapshot read by the code part
        self._gpu_names = gpu_names
        self._files_dir = files_dir
        self._put = put
        self._report = report
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._done: list[str] = []
        self._reasons: dict[str, str] = {}  # why a part is missing: set when its capture fails
        self._queued = False
        self._record: Message | None = None  # created on the thread
        self._thread = threading.Thread(target=self._run, name="tracklet-environment", daemon=True)
        self._gate: threading.Event | None = None
        self._git_probe: GitProbe | None = None
        self._cpu_model: str | None = None  # read by _prepare
        self._inventory: Inventory | None = None  # the cached package inventory, read by _prepare
        self._ended = threading.Event()  # set as the thread ends

    def start(self, gate: threading.Event | None = None) -> None:
        """Start the thread; with ``gate``, it starts git's commands, reads the CPU model and the
        inventory cache and captures the packages the cache answers at once, and captures the rest
        once the gate is set (``init()`` sets it as it returns).

        The modules the parts use are imported here, on the caller's thread (~0.5 ms of
        ``init()``): on the capture thread, after the gate, a training loop that holds the GIL let
        it run once per switch interval (5 ms), and each import's dozen file-system calls hands the
        GIL back, so a tight loop left the imports (and all that follows them) to ``finish()``."""
        _import_capture_modules()
        self._gate = gate
        threads.start(self._thread)

    def _run(self) -> None:
        steps = {"host": self._capture_host, "git": self._capture_git, "code": self._capture_code,
                 "packages": self._capture_packages}
        # git's commands start before the gate, while init() ends: spawning them is system calls,
        # which release the GIL, and the processes then run beside the training loop from its start.
        self._git_probe = GitProbe(self._cwd)
        try:
            # Before the gate too: what reads only files (the CPU model, the inventory cache) and the
            # packages the cache answers. After the gate, a tight training loop lets this thread run
            # once per switch interval (5 ms) and takes the GIL back at each of its file-system
            # calls, so this work used to be left to finish(); here it costs init() ~2 ms of CPU.
            self._prepare()
            from tracklet.core import wire  # no protobuf: the record is written by hand

            with self._lock:
                record = self._new_record()
            self._files_dir.mkdir(parents=True, exist_ok=True)
            early, late = self._order()
            for part in (*early, *late):
                if part in late and self._gate is not None:
                    self._gate.wait()
                partial = wire.Message("Environment")
                failure = None
                try:
                    steps[part](partial)
                except Exception as error:
                    failure = error
                    self._report(("environment", part), f"tracklet: capturing the environment ({part}) failed: {error!r}")
                with self._lock:
                    queued = self._queued
                if queued:  # finish() stopped waiting: what this thread captures now is dropped
                    if part != "packages":  # but the inventory scan is for the next run too
                        self._cache_inventory()
                    return
                with self._lock:
                    record.environment.TakeFrom(partial)  # moved: the partial is dropped
                    if failure is None:
                        self._done.append(part)
                    else:
                        self._reasons[part] = f"failed: {failure!r}"[: self.REASON_LENGTH]
                    # Under the lock, and only while the record is not queued: finish() can't pass here
                    # to close the run's artifact worker meanwhile.
                    if part == "code" and self._code and not self._queued:
                        self._store_code(record.environment.program)
            self._queue_once()
        except Exception as error:
            self._report("environment", f"tracklet: capturing the environment failed: {error!r}")
            with self._lock:
                for part in self.PARTS:
                    self._reasons.setdefault(part, f"failed: {error!r}"[: self.REASON_LENGTH])
        finally:
            if self._git_probe is not None:
                self._git_probe.abandon()
            self._ended.set()

    def _order(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The parts in the order they are captured in: (before the gate, ``init()`` returning;
        after it). Packages answered by the inventory cache come first, before the gate (a list
        built from what was read) and before git (whose processes a short run's ``finish()`` may
        wait for): cheap and certain, they are not left out when ``capture_wait`` runs out. Not the
        host before the gate: it may load NVML (GPU names) or cuDNN (its version), which can take
        longer than the rest of ``init()``; not git: its processes are still running. A scan (no
        cache: 100-250 ms in a venv of 100+ packages) comes last, so git and the code snapshot are
        not left out behind it."""
        if self._inventory is not None:
            return ("packages",), ("host", "git", "code")
        return (), ("host", "git", "code", "packages")

    def _cache_inventory(self) -> None:
        """Scan the packages and save the cache, if this run found none (finish() stopped waiting
        before the packages part): the next run reads it instead of scanning too late again."""
        if self._cache_dir is None or self._inventory is not None:
            return
        try:
            _save_inventory(self._cache_dir, _scan_packages()[1])
        except Exception:
            pass  # the next run scans again

    def _prepare(self) -> None:
        """What the parts need first: the CPU model, the cached inventory (their modules were
        imported by :meth:`start`). The record is a ``core/wire.py`` message, so this thread
        imports no protobuf (~30 ms of CPU in a fresh process, which a short run's ``finish()``
        would wait for)."""
        self._cpu_model = _cpu_model()
        if self._cache_dir is not None:
            self._inventory = _cached_inventory(self._cache_dir)

    def _capture_host(self, environment: pb.Environment | Message) -> None:
        environment.hostname = hostinfo.hostname()  # os.uname(): no import of socket
        environment.os = hostinfo.platform_string()
        environment.executable = sys.executable
        environment.cpu_model = self._cpu_model if self._cpu_model is not None else _cpu_model()
        environment.cpu_count = os.cpu_count() or 0
        try:
            environment.memory_total_bytes = hostinfo.memory_total_bytes()
        except Exception:
            pass
        if self._gpu_names:  # else the system monitor records the GPUs (SystemInfo), NVML opened once
            from tracklet.core.system.nvidia import gpu_names

            environment.gpus.extend(gpu_names())
        from tracklet.core.provenance import capture_interpreter

        capture_interpreter(environment)

    def _capture_git(self, environment: pb.Environment | Message) -> None:
        if self._git_probe is not None:
            self._git_probe.capture(environment, self._files_dir)

    def _capture_code(self, environment: pb.Environment | Message) -> None:
        probe = self._git_probe
        if probe is None or not probe.root:
            return
        from tracklet.core import provenance

        environment.program = provenance.program_path(probe.root)
        imported = probe.imported()
        if imported:
            self._code = provenance.snapshot_code(environment, imported, set(probe.untracked(list(imported))))

    def _store_code(self, program: str) -> None:
        """Hand the snapshot to ``log_code`` (or write it into ``files/code/``); a failure is
        reported, and the part stays captured (its files are listed in the record)."""
        files, self._code = self._code, {}
        try:
            if self._log_code is not None:
                self._log_code(files, program)
            else:
                from tracklet.core import provenance

                provenance.write_code_files(files, self._files_dir)
        except Exception as error:
            self._report(("environment", "code-store"), f"tracklet: storing the code snapshot failed: {error!r}")

    def _capture_packages(self, environment: pb.Environment | Message) -> None:
        capture_packages(environment, self._files_dir, self._cache_dir, self._inventory)

    def _new_record(self) -> Message:
        """The record parts are merged into (call with the lock held)."""
        if self._record is None:
            from tracklet.core import wire

            self._record = wire.Record()
            self._record.environment.SetInParent()
        return self._record

    def _queue_once(self, unfinished: str = "") -> None:
        """Queue the record once: parts not done are named in ``incomplete``, each with its
        reason (``unfinished`` for those without one: still being captured)."""
        with self._lock:
            if self._queued:
                return
            self._queued = True
            record = self._new_record()
            missing = [part for part in self.PARTS if part not in self._done]
            environment = record.environment
            environment.incomplete.extend(missing)
            for part in missing:
                environment.incomplete_reasons[part] = self._reasons.get(part) or unfinished or "not captured"
        self._put(record)

    def finish(self, timeout: float) -> None:
        """Make sure the record is queued: complete if the capture ends within ``timeout``;
        otherwise with what is ready, the rest named with the reason."""
        if self._thread.is_alive():
            threads.join(self._thread, timeout)  # in slices: a Ctrl-C is seen (core/threads.py)
        if self._thread.is_alive() and self._cache_dir is not None and self._inventory is None:
            # No inventory cache (the first run after an install): let the scan end and write it
            # before the process exits, or every later short run would miss it too.
            from tracklet.core import lifecycle

            lifecycle.wait_at_exit(self._ended, INVENTORY_EXIT_WAIT)
        if self._thread.ident is not None:  # started
            self._queue_once(f"not captured within the {timeout:.2g} s finish() waited for it (capture_wait)")
