"""What reproducing a run needs beyond git state and package names, captured on the environment
thread (``core/environment.py``): the interpreter, allow-listed environment variables, CUDA
versions, where each package came from (PEP 610 ``direct_url.json``), and a snapshot of the
repository's untracked source files the program imported (stored by the run as a ``code`` artifact,
docs/reproduce.md).

Nothing here starts a process or imports a framework: torch is asked only when the program had
already imported it, and package sources are read from metadata files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklet.core import hostinfo
from tracklet.core.modules import loaded

if TYPE_CHECKING:
    from tracklet.core.filehash import HashedBytes
    from tracklet.core.wire import Message
    from tracklet.proto import records_pb2 as pb

# Environment variables that change what a program computes or where it runs, recorded by name.
VARIABLES = frozenset({
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE", "PYTORCH_CUDA_ALLOC_CONF", "PYTHONHASHSEED", "PYTHONOPTIMIZE",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
    "JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION", "KERAS_BACKEND", "TOKENIZERS_PARALLELISM",
    "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_OFFLINE", "LANG", "LC_ALL", "TZ",
    "PL_GLOBAL_SEED", "PL_SEED_WORKERS",  # Lightning's seed_everything() sets them (before the run, as a rule)
})
# torchrun's (torch.distributed.run) description of a process of a distributed run: recorded, and
# turned back into a torchrun launch by ``tracklet reproduce``, never passed on as they are.
LAUNCH_VARIABLES = frozenset({
    "WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "ROLE_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT",
})
VARIABLES = VARIABLES | LAUNCH_VARIABLES
# ... and every variable with one of these prefixes,
VARIABLE_PREFIXES = ("NCCL_", "TORCH_", "CUDNN_")
# ... unless its name looks like it holds a secret.
SECRET_PARTS = ("KEY", "TOKEN", "SECRET", "PASS", "CREDENTIAL", "AUTH", "COOKIE", "SESSION", "PRIVATE")
MAX_VARIABLE_CHARS = 1000

# The code snapshot: imported untracked files, each at most MAX_CODE_FILE_BYTES, all together at
# most MAX_CODE_BYTES; the rest is named in ``code_skipped``.
MAX_CODE_FILE_BYTES = 1 << 20
MAX_CODE_BYTES = 8 << 20
CODE_DIR = "code"


def capture_interpreter(environment: pb.Environment | Message, environ: dict[str, str] | None = None) -> None:
    """Python's implementation, the allow-listed variables, CUDA versions."""
    environment.python_implementation = hostinfo.python_implementation()
    for name, value in sorted(variables(os.environ if environ is None else environ).items()):
        environment.variables[name] = value
    cuda, cudnn = cuda_versions()
    environment.cuda_version, environment.cudnn_version = cuda, cudnn


def variables(environ: Any) -> dict[str, str]:
    """The allow-listed variables of ``environ`` (URLs without credentials)."""
    found = {}
    for name, value in list(environ.items()):
        upper = name.upper()
        if name not in VARIABLES and not upper.startswith(VARIABLE_PREFIXES):
            continue
        if any(part in upper for part in SECRET_PARTS):
            continue
        text = str(value)[:MAX_VARIABLE_CHARS]
        if "@" in text:  # a URL with userinfo (redact's regexes are imported only then)
            from tracklet.core.redact import redact_url

            text = redact_url(text)
        found[name] = text
    return found


def cuda_versions() -> tuple[str, str]:
    """``(torch.version.cuda, cudnn version)`` when the program imported torch, else empty."""
    torch = loaded("torch")
    if torch is None:
        return "", ""
    cuda = cudnn = ""
    try:
        cuda = str(getattr(torch.version, "cuda", None) or "")
        backends = loaded("torch.backends.cudnn")
        if backends is not None and cuda:
            version = backends.version()
            cudnn = str(version) if version else ""
    except Exception:  # a half-initialised or unusual torch: what was found
        pass
    return cuda, cudnn


# ------------------------------------------------------------------ package sources (PEP 610)


def package_source(distribution: Any) -> dict[str, Any]:
    """Where a distribution came from, from its ``direct_url.json``: ``{}`` for an index
    install, else ``url``, ``editable``, ``vcs``, ``commit``, ``requested_revision``."""
    try:
        text = distribution.read_text("direct_url.json")
    except Exception:
        return {}
    if not text:
        return _checkout_source(distribution)
    import json  # only for a direct install (~1.3 ms of CPU in a fresh process)

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return {}
    from tracklet.core.redact import redact_url

    source: dict[str, Any] = {"url": redact_url(data["url"])}
    dir_info = data.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        source["editable"] = True
    vcs_info = data.get("vcs_info")
    if isinstance(vcs_info, dict):
        source["vcs"] = str(vcs_info.get("vcs") or "")
        source["commit"] = str(vcs_info.get("commit_id") or "")
        source["requested_revision"] = str(vcs_info.get("requested_revision") or "")
    return source


# Files that mark a directory as a project's root (where ``pip install -e`` is pointed).
_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def _checkout_source(distribution: Any) -> dict[str, Any]:
    """A source tree on ``sys.path`` (PYTHONPATH, ``setup.py develop``) is a distribution through the
    ``*.egg-info`` directory setuptools left in it, with no ``direct_url.json``: record it as an
    editable install (``file://`` of the project's root, whose commit ``fill_package`` reads) rather
    than ``name==version``. An egg-info inside ``site-packages``/``dist-packages`` is an installed
    copy (``setup.py install``): ``{}``, as an index install."""
    where = getattr(distribution, "_path", None)  # PathDistribution: its metadata directory
    if where is None or not str(where).endswith(".egg-info"):
        return {}
    found = os.path.dirname(os.path.abspath(str(where)))
    if os.path.basename(found) in ("site-packages", "dist-packages"):
        return {}
    root = Path(found)
    for directory in (root, *list(root.parents)[:2]):  # a src/ layout: the project root is above
        if any((directory / name).is_file() for name in _PROJECT_FILES):
            root = directory
            break
        if (directory / ".git").exists():
            break
    return {"url": root.as_uri(), "editable": True}


def fill_package(package: pb.Package | Message, source: dict[str, Any]) -> None:
    """Set ``package``'s source fields; a local directory's commit is read now (its HEAD moves
    without the installed metadata changing, so it is never cached)."""
    if not source:
        return
    package.url = source["url"]
    package.editable = bool(source.get("editable"))
    package.vcs = source.get("vcs", "")
    package.commit = source.get("commit", "")
    package.requested_revision = source.get("requested_revision", "")
    if not package.commit and package.url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        head = git_head(Path(unquote(urlsplit(package.url).path)))
        if head:
            package.vcs, package.commit = "git", head


def git_head(path: Path) -> str:
    """The commit checked out in the git work tree holding ``path``, read from ``.git`` without
    running git ("" when not a repository or unreadable)."""
    try:
        for directory in (path, *path.parents):
            dot_git = directory / ".git"
            if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
                text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
                if not text.startswith("gitdir:"):
                    return ""
                git_dir = (directory / text.partition(":")[2].strip()).resolve()
                break
            if dot_git.is_dir():
                git_dir = dot_git
                break
        else:
            return ""
        head = (git_dir / "HEAD").read_text(encoding="utf-8", errors="replace").strip()
        if not head.startswith("ref:"):
            return head
        ref = head.partition(":")[2].strip()
        common = git_dir
        common_file = git_dir / "commondir"
        if common_file.is_file():
            common = (git_dir / common_file.read_text(encoding="utf-8").strip()).resolve()
        for base in (git_dir, common):
            ref_file = base / ref
            if ref_file.is_file():
                return ref_file.read_text(encoding="utf-8", errors="replace").strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
                commit, _, name = line.partition(" ")
                if name.strip() == ref:
                    return commit.strip()
    except OSError:
        pass
    return ""


def requirement_line(name: str, version: str, package: pb.Package | Message | None) -> str:
    """One line of ``requirements.txt``: ``name==version``, or where a direct install came from."""
    if package is None or not package.url:
        return f"{name}=={version}"
    if package.editable:
        return f"-e {package.url}" + (f"  # {name}=={version} at {package.vcs} {package.commit}" if package.commit
                                      else f"  # {name}=={version}")
    if package.vcs and package.commit:
        return f"{name} @ {package.vcs}+{package.url}@{package.commit}"
    return f"{name} @ {package.url}"


# ------------------------------------------------------------------ code snapshot


def imported_files(root: str) -> dict[str, str]:
    """The Python source files under ``root`` the program has imported so far, and its main
    script: ``{path relative to root ("/"-separated): absolute path}``. Installed packages
    (``site-packages``) are left out; files are matched by path prefix (one string test a module)."""
    top = os.path.realpath(root).rstrip(os.sep) + os.sep
    # Where modules under root may be found by: root itself, and sys.path entries that reach into
    # it through a symbolic link (each mapped to its place under root).
    prefixes = {top: ""}
    for entry in sys.path:
        given = os.path.abspath(entry or ".")
        real = os.path.realpath(given)
        if given != real and (real + os.sep).startswith(top):
            prefixes[given.rstrip(os.sep) + os.sep] = (real + os.sep)[len(top):]
    paths = []
    for module in list(sys.modules.values()):
        try:  # the module's own namespace: a lazy module's __getattr__ must not run (or import) here
            paths.append(vars(module).get("__file__"))
        except Exception:  # None placeholders, objects without a namespace
            continue
    main = sys.argv[0] if sys.argv else ""
    if main.endswith(".py"):
        paths.append(os.path.abspath(main))
    found = {}
    for path in paths:
        if not isinstance(path, str) or not path.endswith(".py"):
            continue
        for prefix, under in prefixes.items():
            if path.startswith(prefix):
                relative = under + path[len(prefix):]
                break
        else:
            continue
        parts = relative.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts or not os.path.isfile(path):
            continue
        found["/".join(parts)] = path
    return dict(sorted(found.items()))


def snapshot_code(environment: pb.Environment | Message, imported: dict[str, str],
                  untracked: set[str]) -> dict[str, HashedBytes]:
    """The ``imported`` files (relative path: absolute path) that are ``untracked``, read within
    the caps: ``{relative path: HashedBytes}`` (stored by the run as a ``code`` artifact, with
    the digest carried along so no one hashes a file again); each is recorded in ``code_files`` and
    what was left out in ``code_skipped``."""
    chosen = [(relative, path) for relative, path in imported.items() if relative in untracked]
    total = 0
    files: dict[str, HashedBytes] = {}
    for relative, path in chosen:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            environment.code_skipped.append(f"{relative}: unreadable ({error.strerror or error})")
            continue
        if len(data) > MAX_CODE_FILE_BYTES:
            environment.code_skipped.append(f"{relative}: {len(data)} bytes, over the {MAX_CODE_FILE_BYTES}-byte cap")
            continue
        if total + len(data) > MAX_CODE_BYTES:
            environment.code_skipped.append(f"{relative}: the snapshot would pass {MAX_CODE_BYTES} bytes")
            continue
        from tracklet.core.filehash import HashedBytes

        hashed = HashedBytes(data)  # small files: CPython's own sha256, no OpenSSL (~3 ms of CPU) to load
        digest = hashed.digest
        files[relative] = hashed
        total += len(data)
        entry = environment.code_files.add()
        entry.path, entry.size_bytes, entry.sha256 = relative, len(data), digest
    return files


def write_code_files(files: dict[str, HashedBytes], files_dir: Path) -> None:
    """The snapshot (``snapshot_code``'s) as run files, ``files/code/<path>``: the older form
    (``tracklet reproduce`` still reads it), kept for a capture that has no run to log the artifact with."""
    for relative, hashed in files.items():
        target = files_dir / CODE_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(hashed.data)


def program_path(root: str) -> str:
    """The main script relative to ``root`` ("" when it is not a file inside it)."""
    main = sys.argv[0] if sys.argv else ""
    if not main or not os.path.isfile(main):
        return ""
    relative = os.path.relpath(os.path.realpath(main), os.path.realpath(root))
    if relative == ".." or relative.startswith(".." + os.sep):
        return ""
    return relative.replace(os.sep, "/")
