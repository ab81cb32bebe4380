"""What differs between two runs (``tracklet diff A B``): config, environment, packages, seeds, code (a
unified diff of the files that differ, each run's files being its commit's with its diff and code
snapshot applied), inputs (artifact versions used) and summary metrics with relative differences.
"""

from __future__ import annotations

import difflib
import math
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tracklet.reproduce.snapshot import BlobReader, CodeSnapshot

MAX_CODE_FILES = 200  # files compared at most (a diff between distant commits)
GIT_TIMEOUT = 30.0


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"key", "a", "b"}`` for every key whose value differs (absent: ``None`` and ``missing`` set)."""
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, missing), b.get(key, missing)
        if left != right:
            out.append({"key": key, "a": None if left is missing else left, "b": None if right is missing else right,
                        "only": "b" if left is missing else "a" if right is missing else None})
    return out


def relative_difference(a: float, b: float) -> float | None:
    """``(b - a) / |a|``; None when ``a`` is 0 (and ``b`` is not) or either is not finite."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    if a == 0:
        return 0.0 if b == 0 else None
    return (b - a) / abs(a)


def _environment(run: Any) -> dict[str, Any]:
    meta = run.metadata
    git = meta.get("git") or {}
    return {
        "python": meta.get("python"), "python_implementation": meta.get("python_implementation"),
        "os": meta.get("os"), "hostname": meta.get("hostname"), "executable": meta.get("executable"),
        "cpu_model": meta.get("cpu_model"), "cpu_count": meta.get("cpu_count"), "gpus": meta.get("gpus"),
        "cuda_version": meta.get("cuda_version"), "cudnn_version": meta.get("cudnn_version"),
        "git.commit": git.get("commit"), "git.branch": git.get("branch"), "git.dirty": git.get("dirty"),
        "git.root": git.get("root"), "tracklet_version": meta.get("tracklet_version"),
        "command": meta.get("command"),
        **{f"variables.{name}": value for name, value in (meta.get("variables") or {}).items()},
    }


def _seeds(run: Any) -> dict[str, str]:
    """The seeds the program set, by API; one set several times is listed as ``api#2``, ``api#3``."""
    seeds: dict[str, str] = {}
    for seed in run.metadata.get("seeds") or []:
        key, number = seed["api"], 1
        while key in seeds:
            number += 1
            key = f"{seed['api']}#{number}"
        seeds[key] = seed["value"]
    return seeds


def _packages(run: Any) -> dict[str, str]:
    meta = run.metadata
    packages = dict(meta.get("packages") or {})
    for source in meta.get("package_sources") or []:
        where = source["url"] + (f"@{source['commit']}" if source.get("commit") else "")
        packages[source["name"]] = f"{source['version']} ({where})"
    return packages


def _summary(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key.startswith("_"):
            continue
        left, right = a.get(key), b.get(key)
        if left == right:
            continue
        entry: dict[str, Any] = {"key": key, "a": left, "b": right}
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
        if numeric:
            entry["difference"] = right - left  # type: ignore[operator]
            entry["relative"] = relative_difference(float(left), float(right))  # type: ignore[arg-type]
        out.append(entry)
    return out


def compare(a: Any, b: Any, blobs: BlobReader | None = None) -> dict[str, Any]:
    """What differs between runs ``a`` and ``b`` (``tracklet.core.api.RecordedRun``s). ``blobs``
    reads their code snapshots' blobs where they are not in the runs' data root (a server's store)."""
    inputs_a = {f"{u['project']}/{u['name']}": f"v{u['version']}" for u in a.used_artifacts}
    inputs_b = {f"{u['project']}/{u['name']}": f"v{u['version']}" for u in b.used_artifacts}
    packages = _changes(_packages(a), _packages(b))
    return {
        "a": a.path, "b": b.path,
        "config": _changes(_flatten(a.config), _flatten(b.config)),
        "environment": _changes(_environment(a), _environment(b)),
        "packages": packages,
        "seeds": _changes(_seeds(a), _seeds(b)),
        "code": code_diff(a, b, blobs),
        "inputs": _changes(inputs_a, inputs_b),
        "summary": _summary(a.summary, b.summary),
    }


# ------------------------------------------------------------------ code


def _git(repository: str, *args: str, text: bool = True) -> Any:
    try:
        done = subprocess.run(["git", "-C", repository, *args], capture_output=True, timeout=GIT_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace") if text else done.stdout


def _patch_paths(patch: bytes) -> set[str]:
    """Paths a ``git diff`` output touches (both sides of a rename)."""
    found = set()
    for line in patch.decode("utf-8", errors="replace").splitlines():
        if line.startswith("diff --git "):
            parts = line[len("diff --git "):].split(" b/", 1)
            if len(parts) == 2:
                found.add(parts[0].removeprefix("a/"))
                found.add(parts[1])
    return found


class _Code:
    """One run's source as it ran: files at its commit, its diff applied, its snapshot on top."""

    def __init__(self, run: Any, blobs: BlobReader | None = None) -> None:
        env = run.environment_record
        self.files = Path(run.files_dir)
        self.root = env.git_root if env is not None else ""
        self.commit = env.git_commit if env is not None else ""
        patch = self.files / "diff.patch"
        self.patch = patch.read_bytes() if env is not None and env.git_dirty and patch.is_file() else b""
        self.code = CodeSnapshot(run, blobs)  # its code artifact, or files/code/ (an older run)
        self.snapshot = set(self.code.digests)
        self.notes: list[str] = []

    def touched(self) -> set[str]:
        return _patch_paths(self.patch) | self.snapshot

    def materialize(self, paths: set[str], where: Path) -> dict[str, str | None]:
        """Each of ``paths`` as this run had it (None: absent), built in ``where``."""
        available = bool(self.root and self.commit and _git(self.root, "cat-file", "-e", f"{self.commit}^{{commit}}")
                         is not None)
        if not available and self.root:
            self.notes.append(f"commit {self.commit[:12] or '?'} is not in {self.root}: files at the commit unknown")
        for path in paths:
            content = _git(self.root, "show", f"{self.commit}:{path}", text=False) if available else None
            if content is not None:
                target = where / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        if self.patch and available:
            patch_file = where.parent / f"{where.name}.patch"
            patch_file.write_bytes(self.patch)
            try:
                done = subprocess.run(["git", "apply", str(patch_file)], cwd=where,
                                      capture_output=True, timeout=GIT_TIMEOUT, check=False)
                if done.returncode != 0:
                    self.notes.append("its diff.patch did not apply to the commit's files")
            except (OSError, subprocess.SubprocessError):
                self.notes.append("git apply could not run")
        for path in sorted(self.snapshot & paths):
            data = self.code.read(path)
            if data is None:
                self.notes.append(f"untracked file {path} of its code snapshot is {self.code.missing[path]}")
                continue
            target = where / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        contents: dict[str, str | None] = {}
        for path in paths:
            target = where / path
            contents[path] = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None
        return contents


def code_diff(a: Any, b: Any, blobs: BlobReader | None = None) -> dict[str, Any]:
    """``{"commits": [a, b], "diff": unified diff text, "notes": [...]}``; ``blobs`` as for ``compare``."""
    left, right = _Code(a, blobs), _Code(b, blobs)
    paths = left.touched() | right.touched()
    if left.commit and right.commit and left.commit != right.commit:
        repository = left.root if left.root and Path(left.root).is_dir() else right.root
        changed = _git(repository, "diff", "--name-only", left.commit, right.commit) if repository else None
        if changed is not None:
            paths |= set(changed.splitlines())
    notes: list[str] = []
    if len(paths) > MAX_CODE_FILES:
        notes.append(f"{len(paths)} files differ: the first {MAX_CODE_FILES} are shown")
        paths = set(sorted(paths)[:MAX_CODE_FILES])
    chunks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tracklet-diff-") as temporary:
        base = Path(temporary)
        (base / "a").mkdir()
        (base / "b").mkdir()
        files_a = left.materialize(paths, base / "a")
        files_b = right.materialize(paths, base / "b")
    for path in sorted(paths):
        before, after = files_a.get(path), files_b.get(path)
        if before == after:
            continue
        chunks.extend(difflib.unified_diff(
            (before or "").splitlines(keepends=True), (after or "").splitlines(keepends=True),
            fromfile=f"a/{path}" if before is not None else "/dev/null",
            tofile=f"b/{path}" if after is not None else "/dev/null"))
        if chunks and not chunks[-1].endswith("\n"):
            chunks[-1] += "\n"
    notes += [f"{a.path}: {note}" for note in left.notes] + [f"{b.path}: {note}" for note in right.notes]
    return {"commits": [left.commit, right.commit], "diff": "".join(chunks), "notes": notes}


def render(result: dict[str, Any]) -> str:
    """The comparison as text: one section per part that differs."""
    lines = [f"--- {result['a']}", f"+++ {result['b']}"]

    def section(title: str, changes: list[dict[str, Any]]) -> None:
        if not changes:
            return
        lines.append(f"{title}:")
        for change in changes:
            lines.append(f"  {change['key']}: {change['a']!r} -> {change['b']!r}"
                         + (f"  (only in {change['only']})" if change.get("only") else ""))

    section("config", result["config"])
    section("environment", result["environment"])
    section("packages", result["packages"])
    section("seeds", result["seeds"])
    section("inputs", result["inputs"])
    if result["summary"]:
        lines.append("summary:")
        for entry in result["summary"]:
            if "relative" in entry:
                relative = entry["relative"]
                shown = "n/a" if relative is None else f"{relative * 100:+.3g}%"
                lines.append(f"  {entry['key']}: {entry['a']!r} -> {entry['b']!r}  ({shown})")
            else:
                lines.append(f"  {entry['key']}: {entry['a']!r} -> {entry['b']!r}")
    code = result["code"]
    if code["diff"] or code["notes"]:
        lines.append("code:" + (f" {code['commits'][0][:12]} -> {code['commits'][1][:12]}"
                                if code["commits"][0] != code["commits"][1] else ""))
        lines.extend(f"  note: {note}" for note in code["notes"])
        if code["diff"]:
            lines.append(code["diff"].rstrip("\n"))
    return "\n".join(lines)
