"""``RemoteApi``: ``tracklet.Api(base_url=...)``, the same read calls as the local ``Api``,
answered by a tracking server's read API (docs/server.md) instead of a data root.

Runs come from the server's store, so what a ``RemoteRun`` knows is what the store holds: identity,
state, config, summary, metadata, numeric histories (at full resolution or bucketed), console
output, alerts, system metrics, files, tables (``table``) and media (``media``, ``images``: the
files fetched from the server, docs/media.md). NaN and ±inf travel as the strings "NaN", "Infinity",
"-Infinity" (strict JSON, core/jsonsafe.py) and come back as floats.
Requests go through the client package's ``HttpClient`` (``tracklet.client.http``): the API key
from ``api_key``, ``$TRACKLET_API_KEY`` or ``tracklet login``, a few retries of what can't reach
the server (``read_retry``), and refusals as ``RemoteError`` (``RunNotFound`` for an unknown run).
"""

from __future__ import annotations

import contextlib
import functools
import os

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklet.api import Api
from tracklet.core.jsonsafe import float_from_json
from tracklet.core.runuser import RunUser
from tracklet.core.reader import RUNTIME, STEP, TIMESTAMP, Alert, ConsoleLine, History
from tracklet.core.settings import check_name
from tracklet.errors import RemoteError, RunNotFound, TrackletWarning

if TYPE_CHECKING:
    from tracklet.client.http import HttpClient, RetryPolicy

__all__ = ["RemoteApi", "RemoteError", "RemoteRun", "RemoteTable", "series_from_json"]

PAGE = 10_000  # the server's largest page of runs
_ARRAYS = ("x", "steps", "values", "first_steps", "min", "max", "last", "count", "nonfinite")
_INTEGER_ARRAYS = ("steps", "first_steps", "count", "nonfinite")


def _split(path: str) -> tuple[str, str]:
    project, sep, run_id = path.partition("/")
    if not sep:
        raise ValueError(f"a remote run is named project/run_id; got {path!r}")
    return check_name("project", project), check_name("run id", run_id)


def _array(values: list[Any], integer: bool) -> Any:
    import numpy as np

    if integer:
        return np.asarray(values, dtype=np.int64)
    return np.asarray([float_from_json(v) for v in values], dtype=np.float64)  # "NaN" etc.: core/jsonsafe.py


def series_from_json(data: dict[str, Any]) -> Any:
    """A history endpoint's series as a ``tracklet.store.query.SeriesHistory``."""
    from tracklet.store.query import SeriesHistory

    arrays = {name: _array(data[name], name in _INTEGER_ARRAYS) for name in _ARRAYS if name in data}
    return SeriesHistory(run=data["run"], key=data["key"], exact=data["exact"], stat=data.get("stat"),
                         logged=_logged(data), **arrays)


def _logged(data: dict[str, Any]) -> Any:
    """How an exact series' values were logged (``blocks.Logged``), from its JSON: a JSON integer
    is an int (a bool where ``bools`` names it); None when every value is a float."""
    import numpy as np

    from tracklet.store.blocks import BOOL, INT, Logged

    values = data.get("values")
    if not data.get("exact") or not values:
        return None
    exact = [at for at, value in enumerate(values) if type(value) is int]
    if not exact:
        return None
    kinds = np.zeros(len(values), dtype=np.uint8)
    ints = np.zeros(len(values), dtype=np.int64)
    kinds[exact] = INT
    ints[exact] = [values[at] for at in exact]
    kinds[data.get("bools") or []] = BOOL
    return Logged(kinds, ints)


def _as_logged(data: dict[str, Any]) -> list[Any]:
    """An exact series' JSON values as logged: JSON integers are ints already (exact), those that
    ``bools`` names were bools."""
    values = data["values"]
    for at in data.get("bools") or ():
        values[at] = bool(values[at])
    return values


def _with_histograms(data: dict[str, Any]) -> list[Any]:
    """A ``values`` answer's values, the histograms it names (``histograms``: positions) as
    ``Histogram``; a server older than that field gives none."""
    from tracklet.core.values import Histogram

    values = data["values"]
    for at in data.get("histograms") or ():
        item = values[at]
        values[at] = Histogram._raw([float_from_json(edge) for edge in item["edges"]], list(item["counts"]),
                                    int(item.get("nan_count", 0)), int(item.get("inf_count", 0)))
    return values


def read_retry() -> RetryPolicy:
    """Reads retry what can't reach the server a few times, briefly: a caller is waiting."""
    from tracklet.client.http import RetryPolicy

    return RetryPolicy(base=0.25, cap=2.0, give_up_after=10.0, attempts=3)


def _runtimes(times: list[Any], start: float | None) -> list[Any]:
    """``_runtime`` beside ``_timestamp``: seconds since ``start`` (the run's start; else its first
    row's time), as ``core.history`` computes it for a run read from its record log."""
    if start is None:
        start = next((t for t in times if t is not None), 0.0)
    return [None if t is None else t - start for t in times]


class RemoteRun:
    """A run on a tracking server, as its store row tells it; :meth:`refresh` fetches it again."""

    def __init__(self, http: HttpClient, row: dict[str, Any], project: str) -> None:
        self._http = http
        self._row = row
        self.project = project

    @property
    def id(self) -> str:
        return self._row["run_id"]

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def refresh(self) -> RemoteRun:
        self._row = self._http.get_json(f"/api/v1/runs/{self.path}", missing=RunNotFound)["run"]
        return self

    def _field(self, name: str) -> Any:
        if name not in self._row:  # a listing row leaves out the key list: fetch the whole row
            self.refresh()
        return self._row.get(name)

    name = property(lambda self: self._field("name"))
    state = property(lambda self: self._field("state"), doc="running, finished, failed or crashed")
    tags = property(lambda self: list(self._field("tags") or []))
    group = property(lambda self: self._field("group_name"))
    job_type = property(lambda self: self._field("job_type"))
    notes = property(lambda self: self._field("notes"))
    host = property(lambda self: self._field("host"))
    created_at = property(lambda self: self._field("created_at"))
    updated_at = property(lambda self: self._field("updated_at"),
                          doc="When the run last wrote a record with a time (the store's: seconds since the epoch).")
    last_step = property(lambda self: self._field("last_step"))
    exit_code = property(lambda self: self._field("exit_code"))
    config = property(lambda self: dict(self._field("config") or {}))
    summary = property(lambda self: dict(self._field("summary") or {}))
    metadata = property(lambda self: dict(self._field("metadata") or {}),
                        doc="How and where it ran: command, git, python, GPUs (what the store recorded).")

    @property
    def user(self) -> RunUser | None:
        """Who created the run, as the server says: the user of the API key that started its upload
        (``verified``); on a server without keys, the OS user name its client recorded (unverified);
        None for a run uploaded before the server recorded users (an older server too)."""
        if "user" not in self._row and "metadata" not in self._row:
            self.refresh()  # a listing row; a full row without `user` is an older server's: no user
        return RunUser.from_json(self._row.get("user"))

    def _part_labels(self) -> list[str]:
        """A shared run's parts' labels, sorted (none for a run with one writer)."""
        parts = self.metadata.get("parts")
        return sorted(label for label in parts if isinstance(label, str)) if isinstance(parts, dict) else []

    def keys(self) -> list[str]:
        """The run's history keys the server indexed, named as ``RecordedRun.history`` names them:
        its own log's and, of a shared run, every part's (a part's key another writer owns is
        ``<key>/l:<label>``: ``core/parts.Ownership``, docs/shared-runs.md)."""
        own = [key for key in self._field("keys") or [] if isinstance(key, str) and key]
        parts = self.metadata.get("parts")
        if isinstance(parts, dict) and parts:
            from tracklet.core.parts import Ownership

            logged = {label: [key for key in part.get("keys") or [] if isinstance(key, str) and key]
                      for label, part in parts.items() if isinstance(label, str) and isinstance(part, dict)}
            owners = Ownership(own, (), logged, {})
            names = dict.fromkeys(own)
            for label in sorted(logged):
                names.update(dict.fromkeys(owners.part_key(label, key) for key in logged[label]))
            own = list(names)
        return [key for key in own if not key.startswith("_")]

    def history(self, keys: Sequence[str] | None = None) -> History:
        """Every value of ``keys`` (default: all), as columns aligned on ``_step`` like the local
        ``RecordedRun.history``, with ``_timestamp`` and ``_runtime`` (seconds since the run's start);
        ``None`` where a step has no value for a key.
        Numbers come from the server's store; strings, structured values (logged lists), histograms
        (``Histogram``, as the record log's reader gives them) and ints outside int64 (exact; the
        store's series hold the nearest float) from its copy of the record log (at most 10,000 per
        key; NaN inside a list reads as ``"NaN"``: the JSON policy)."""
        names = list(keys) if keys is not None else self.keys()
        wanted = ["_timestamp", *names]
        # a shared run's parts' rows' times (the store's "_timestamp/l:<label>"), a hundred a request
        times = [f"_timestamp/l:{label}" for label in self._part_labels()]
        series: dict[str, Any] = {}
        for asked in [wanted, *(times[at : at + 100] for at in range(0, len(times), 100))]:
            data = self._http.get_json(f"/api/v1/runs/{self.path}/history", keys=",".join(asked), buckets=0)
            series.update((item["key"], item) for item in data["series"])
        texts = self._texts(names)
        steps = sorted({step for item in (*series.values(), *texts.values()) for step in item["steps"]})
        history = History()
        history[STEP] = steps
        for name in wanted:
            if name == "_runtime":  # not a series of the server's: the local reader's rule
                continue
            by_step = ({step: value if not isinstance(value, str) else float_from_json(value)
                        for step, value in zip(series[name]["steps"], _as_logged(series[name]))}
                       if name in series else {})
            if name in texts:
                by_step.update(zip(texts[name]["steps"], _with_histograms(texts[name])))
            if name == TIMESTAMP:  # a shared run's row at a step: the latest time of any writer's there
                for part in times:
                    for step, value in zip(series[part]["steps"], series[part]["values"]) if part in series else ():
                        if isinstance(value, (int, float)) and (by_step.get(step) is None or value > by_step[step]):
                            by_step[step] = value
            history[name] = [by_step.get(step) for step in steps]
            if name == TIMESTAMP:
                history[RUNTIME] = _runtimes(history[TIMESTAMP], self.created_at)
        return history

    def _texts(self, names: Sequence[str]) -> dict[str, Any]:
        """The strings, structured values, histograms and ints outside int64 of ``names`` (the
        server's ``values`` route), a hundred keys a request. The numbers were read already: a
        server older than the route (404), or one that fails to answer it, gives them alone, with
        a warning for a failure; a key the server gave only its first values of is named in a warning."""
        import warnings

        found: dict[str, Any] = {}
        for start in range(0, len(names), 100):
            try:
                data = self._http.get_json(f"/api/v1/runs/{self.path}/values", missing=RunNotFound,
                                           keys=",".join(names[start:start + 100]))
            except RunNotFound:
                return found  # a server without the route (or the run gone since): numbers only
            except RemoteError as error:
                warnings.warn(f"tracklet: the history of {self.path} holds its numbers only: its strings and "
                              f"structured values could not be read ({error})", TrackletWarning, stacklevel=3)
                return found
            found.update(data["keys"])
        cut = sorted(name for name, values in found.items() if values.get("truncated"))
        if cut:
            warnings.warn(f"tracklet: the server gave the first values only of {', '.join(cut)} in the history of "
                          f"{self.path} (None after them)", TrackletWarning, stacklevel=3)
        return found

    def console(self, *, after: int = 0, limit: int = 1000, search: str | None = None,
                stream: str | None = None) -> list[ConsoleLine]:
        """Console lines numbered above ``after`` (at most ``limit``), optionally only those
        containing ``search`` (any case) or from one ``stream``."""
        data = self._http.get_json(f"/api/v1/runs/{self.path}/console", after=after, limit=limit, q=search, stream=stream)
        return [ConsoleLine(line["time"], line["stream"], line["text"]) for line in data["lines"]]

    @property
    def alerts(self) -> list[Alert]:
        """The run's alerts, oldest first, like the local ``RecordedRun.alerts``."""
        found: list[Alert] = []
        after = 0
        while True:
            page = self._http.get_json(f"/api/v1/runs/{self.path}/alerts", after=after, limit=10_000)["alerts"]
            found.extend(Alert(item["time"], item["title"], item["text"], item["level"]) for item in page)
            if len(page) < 10_000:
                return found
            after = page[-1]["seq"]

    def system_metrics(self, names: Sequence[str] | None = None, *, buckets: int = 1000,
                       x: str = "time") -> list[Any]:
        """System metric series (``SeriesHistory`` with ``stat`` mean or max) over the run."""
        data = self._http.get_json(f"/api/v1/runs/{self.path}/system", names=",".join(names) if names else None,
                              buckets=buckets, x=x)
        return [series_from_json(item) for item in data["series"]]

    def system_history(self, stat: str = "mean") -> History:
        """The system metrics as the local ``RecordedRun.system_metrics(stat)`` gives them: one
        row per stats window, ``_timestamp`` (the window's end, to the millisecond the server
        keeps), ``_runtime`` and one column per metric holding the window's mean (or max with
        ``stat="max"``), ``None`` where a window lacks it. ``wandb.Api``'s
        ``run.history(stream="system")`` and ``run.system_metrics`` read it from a server."""
        if stat not in ("mean", "max"):
            raise ValueError(f"stat must be 'mean' or 'max', not {stat!r}")
        by_name: dict[str, dict[float, float]] = {}
        for series in self.system_metrics(buckets=0):
            if series.stat == stat:
                by_name[series.key] = dict(zip(series.x.tolist(), series.values.tolist()))
        times = sorted({when for points in by_name.values() for when in points})
        history = History()
        history[TIMESTAMP] = times
        history[RUNTIME] = _runtimes(list(times), self.created_at)
        for name in sorted(by_name):
            points = by_name[name]
            history[name] = [points.get(when) for when in times]
        return history

    @property
    def used_artifacts(self) -> list[dict[str, Any]]:
        """The artifact versions this run used, in order, each once; the keys of the local
        ``RecordedRun.used_artifacts`` (project, name, type, version, digest) and ``time``, when the
        run used it (seconds since the epoch; 0 from a server that doesn't say). Versions in
        projects this key may not read are left out."""
        return self._artifacts("used")

    @property
    def logged_artifacts(self) -> list[dict[str, Any]]:
        """The artifact versions this run logged, as :attr:`used_artifacts`."""
        return self._artifacts("logged")

    def _artifacts(self, direction: str) -> list[dict[str, Any]]:
        data = self._http.get_json(f"/api/v1/runs/{self.path}/artifacts", missing=RunNotFound)
        return [{"project": item["project"], "name": item["name"], "type": item["type"], "version": item["index"],
                 "digest": item["digest"], "time": item.get("time", 0.0)} for item in data[direction]]

    def files(self) -> list[str]:
        """Names of the run's files on the server (diff.patch, requirements.txt...)."""
        return [item["name"] for item in self.file_entries()]

    def file_entries(self) -> list[dict[str, Any]]:
        """The run's files on the server: ``name``, ``size``, ``sha256`` and last update each."""
        return list(self._http.get_json(f"/api/v1/runs/{self.path}/files")["files"])

    def download_file(self, name: str, target: str | os.PathLike) -> Path:
        """The run file ``name`` written to ``target`` (in place only once whole); ``FileNotFoundError``
        if the run has no such file."""
        from urllib.parse import quote

        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        with self._http.stream("GET", f"/api/v1/runs/{self.path}/files/{quote(name)}") as response:
            if response.status_code == 404:
                raise FileNotFoundError(f"run {self.path} has no file {name!r} on the server")
            if response.status_code != 200:
                response.read()
                raise self._http.refusal(response, what=f"file {name!r} of run {self.path}")
            with open(partial, "wb") as out:
                for piece in response.iter_bytes():
                    out.write(piece)
        os.replace(partial, target)
        return target

    def table_keys(self) -> list[str]:
        """The keys the run logged tables under (``tracklet.Table``, docs/tables.md)."""
        return list(self._http.get_json(f"/api/v1/runs/{self.path}/tables", missing=RunNotFound)["keys"])

    def table_versions(self, key: str) -> list[dict[str, Any]]:
        """Each time ``key`` was logged, oldest first: ``step`` (``table(key, step)`` reads that
        version), ``time`` (seconds since the epoch), ``log_mode`` and ``rows``; ``index`` is the
        version's place among all of them (read a page at a time: every version; a server before
        session 34 lists the last 10,000), ``version`` the ``n`` of its run-table name
        ``run-<id>-<key>:v<n>`` (docs/tables.md#lineage; a server before session 32: ``index``).
        ``TableNotFound`` for a key the run never logged."""
        from tracklet.client.table_versions import table_version_pages
        from tracklet.errors import TableNotFound

        listed, first = table_version_pages(self._http, self.path, key, missing=TableNotFound)
        return [{"index": first + place, "step": item["step"], "time": item.get("time", 0.0),
                 "log_mode": item["log_mode"], "rows": item["rows"], "version": int(item.get("version", first + place))}
                for place, item in enumerate(listed)]

    def table(self, key: str, step: int | None = None, *, version: int | None = None) -> RemoteTable:
        """The table logged under ``key`` (its version at ``step``; default the latest; or its
        run-table version ``v<version>``, ``table_versions``' ``version``), queried lazily on the
        server like the local ``RecordedRun.table``: ``filter``, ``sort``, ``page``, ``count``,
        ``len()``, ``to_arrow``, ``to_pandas``."""
        return RemoteTable(self._http, self.path, key, step, version=version)

    def _table_blobs(self, key: str, version: int | None = None) -> Any:
        """The files of table ``key``'s media cells (``local_path``, ``read_bytes``), from the server:
        those version ``v<version>`` names (without it, those of the key's last logs)."""
        return _RemoteBlobs(self._http, self.path, table_key=key, table_version=version)

    def media(self, key: str | None = None, kind: str | None = None) -> list[Any]:
        """The run's logged media under ``key`` (all keys when None) of ``kind`` (``"image"``,
        ``"audio"``, ...), in step order, then by place in the logged list, like the local
        ``RecordedRun.media``: ``tracklet.media.read.MediaItem``s whose bytes (``read_bytes()``,
        ``to_numpy()``, ``to_pil()``, masks) come from the server, checked against their digest,
        and whose ``path`` is a copy in the machine's blob cache. The server's store doesn't index
        ``channels``, ``sample_rate``, ``fps``, ``frames``, ``mode`` or ``source_name``: they are
        0 or "" here (the files hold them)."""
        entries = self._http.get_json(f"/api/v1/runs/{self.path}/media", missing=RunNotFound, key=key,
                                      kind=kind)["media"]
        blobs = _RemoteBlobs(self._http, self.path)
        per_step: dict[tuple[str, int], int] = {}
        for entry in entries:
            entry["step"] = int(entry["step"])  # a string past 2**53 - 1 (exact in JavaScript too)
            per_step[(entry["key"], entry["step"])] = per_step.get((entry["key"], entry["step"]), 0) + 1
        items = [_media_item(entry, per_step[(entry["key"], entry["step"])], blobs) for entry in entries]
        items.sort(key=lambda item: (item.step, item.key, item.index))
        return items

    def images(self, key: str | None = None) -> list[Any]:
        """``media(key, kind="image")``."""
        return self.media(key, kind="image")

    def media_keys(self) -> list[str]:
        """The keys media were logged under, in the order first logged."""
        return list(dict.fromkeys(item.key for item in sorted(self.media(), key=lambda item: item.time)))

    def __repr__(self) -> str:
        return f"<tracklet RemoteRun {self.path}>"


#: The most bytes one media file read from a server into memory (``read_bytes``) may have when its
#: record gives no size: a table's media cell (the cell comes from a table file, so a crafted or
#: damaged one may name any blob the project holds). It was 1 GiB, held twice while the pieces were
#: joined. ``local_path`` (what ``wandb.Api``'s table cells and ``path`` use) streams a file of any
#: size into the blob cache in 1 MiB pieces instead, bounded by the cache's own cap.
MAX_MEDIA_READ_BYTES = 256 << 20


class _RemoteBlobs:
    """A run's media blobs on a server, for ``MediaItem`` (``read_bytes``, ``local_path``): each
    fetched from ``GET .../media/{digest}`` and checked against its digest; ``local_path`` puts it
    in the machine's size-capped blob cache (``artifacts/cache.py``) first."""

    def __init__(self, http: HttpClient, path: str, table_key: str | None = None,
                 table_version: int | None = None) -> None:
        self._http, self._path = http, path
        # A logged table's media cells are served by their own route, for the table key naming them
        # (and the version: the server looks in that version's records, not in the key's last logs).
        self._route = "media" if table_key is None else "table-blobs"
        self._params: dict[str, Any] = {} if table_key is None else {"key": table_key}
        if table_key is not None and table_version is not None:
            self._params["version"] = int(table_version)
        self.url = f"{http.base_url}/api/v1/runs/{path}/{self._route}"
        self._cache: Any = None

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """The file's bytes, streamed and capped: at ``size`` when its record gives it, else at
        ``MAX_MEDIA_READ_BYTES`` (a server's answer is never read whole into memory unbounded);
        checked against ``digest``, which must be a sha256 in hex."""

        from tracklet.core.digests import is_sha256
        from tracklet.errors import ArtifactError

        if not is_sha256(digest):
            raise ArtifactError(f"{str(digest)[:100]!r} is not a media file's digest (a sha256 in hex)")
        import httpx

        cap = MAX_MEDIA_READ_BYTES if size is None else int(size)
        try:
            return self._read_capped(digest, cap)
        except httpx.TransportError as failure:
            raise ArtifactError(f"{self.url}/{digest}: reading it failed ({type(failure).__name__}: {failure})") \
                from None

    @contextlib.contextmanager
    def _response(self, digest: str) -> Iterator[Any]:
        """The server's 200 answer for the file (``ArtifactError`` for none, its refusal else)."""
        from tracklet.errors import ArtifactError

        with self._http.stream("GET", f"/api/v1/runs/{self._path}/{self._route}/{digest}",
                               params=self._params) as response:
            if response.status_code == 404:
                response.read()
                raise ArtifactError(f"{self.url}/{digest}: the server has no such file of run {self._path} "
                                    f"({response.text[:200]})")
            if response.status_code != 200:
                response.read()
                raise self._http.refusal(response, what=f"media file {digest}")
            yield response

    def _read_capped(self, digest: str, cap: int) -> bytes:
        import hashlib

        from tracklet.errors import ArtifactError

        hasher, parts, total = hashlib.sha256(), [], 0
        with self._response(digest) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise ArtifactError(f"{self.url}/{digest}: the server announced {int(declared)} bytes, more than the "
                                    f"{cap} bytes expected (nothing read; local_path streams a large file to disk)")
            for chunk in response.iter_bytes(1 << 20):
                total += len(chunk)
                if total > cap:
                    raise ArtifactError(f"{self.url}/{digest}: the server sent more than the {cap} bytes expected")
                hasher.update(chunk)
                parts.append(chunk)
        if hasher.hexdigest() != digest:
            raise ArtifactError(f"{self.url}/{digest}: the bytes received don't match their digest")
        return b"".join(parts)

    def local_path(self, digest: str) -> Path | None:
        """The file in the machine's blob cache, streamed there from the server in 1 MiB pieces
        (never whole in memory, whatever its size) and checked against its digest and the length
        the server announced; None when the cache has no room for it."""
        import httpx

        from tracklet.artifacts.cache import BlobCache, CacheFull
        from tracklet.core.digests import is_sha256
        from tracklet.errors import ArtifactError

        if not is_sha256(digest):
            raise ArtifactError(f"{str(digest)[:100]!r} is not a media file's digest (a sha256 in hex)")
        if self._cache is None:
            self._cache = BlobCache()
        if not self._cache.has(digest):
            try:
                with self._response(digest) as response:
                    declared = response.headers.get("content-length", "")
                    if not declared.isdigit():
                        raise ArtifactError(f"{self.url}/{digest}: the server gave no length for the file")
                    try:
                        self._cache.put_stream(response.iter_bytes(1 << 20), digest, int(declared))
                    except CacheFull:
                        return None
            except httpx.TransportError as failure:
                raise ArtifactError(f"{self.url}/{digest}: reading it failed ({type(failure).__name__}: {failure})") \
                    from None
        return Path(self._cache.path(digest))


def _media_item(entry: dict[str, Any], count: int, blobs: _RemoteBlobs) -> Any:
    """A ``MediaItem`` from one entry of ``GET .../media`` (``routes_media.MediaEntry``)."""
    from tracklet.media.read import Box, Boxes, Mask, MediaItem

    masks = {mask["name"]: Mask(mask["name"], mask["digest"], entry["width"], entry["height"],
                                {int(k): v for k, v in mask.get("class_labels", {}).items()}, blobs)
             for mask in entry.get("masks", [])}
    boxes = {}
    for group in entry.get("boxes", []):
        labels = {int(k): v for k, v in group.get("class_labels", {}).items()}
        boxes[group["name"]] = Boxes(group["name"], [
            Box(b["min_x"], b["max_x"], b["min_y"], b["max_y"], b["pixel"], b["class_id"], b["caption"],
                dict(b["scores"]), labels.get(b["class_id"])) for b in group.get("boxes", [])], labels)
    return MediaItem(entry["key"], entry["step"], entry["index"], count, entry["kind"], entry["digest"],
                     entry["format"], entry["mime"], entry["size_bytes"], entry["time"], entry["caption"],
                     entry["width"], entry["height"], 0, entry["duration"], 0, 0.0, 0, "", "",
                     entry["thumbnail"], masks, boxes, blobs)


class RemoteTable:
    """A logged table on a tracking server, as ``GET .../tables/{key}`` pages it (filtered and
    sorted there by DuckDB); built up like the local ``TableQuery``, run by ``count``, ``len()``,
    ``to_arrow`` and ``to_pandas`` (a page of at most 1,000 rows per request). A bad filter or an
    unknown column is the server's 400 (``RemoteError``); an unknown key ``TableNotFound``."""

    PAGE = 1000  # the server's largest page

    def __init__(self, http: HttpClient, path: str, key: str, step: int | None = None, *,
                 filters: tuple[str, ...] = (), order: tuple[str, bool] | None = None, offset: int = 0,
                 limit: int | None = None, version: int | None = None) -> None:
        self._http, self._path, self.key, self._step = http, path, key, step
        self._filters, self._order, self._offset, self._limit = filters, order, offset, limit
        self._version = version  # run-table version v<n> (wins over step)

    def _with(self, **changes: Any) -> RemoteTable:
        fields: dict[str, Any] = dict(filters=self._filters, order=self._order, offset=self._offset, limit=self._limit,
                                      version=self._version)
        fields.update(changes)
        return RemoteTable(self._http, self._path, self.key, self._step, **fields)

    def filter(self, expression: str) -> RemoteTable:
        return self._with(filters=(*self._filters, expression))

    def sort(self, column: str, descending: bool = False) -> RemoteTable:
        return self._with(order=(column, bool(descending)))

    def page(self, offset: int = 0, limit: int = 100) -> RemoteTable:
        return self._with(offset=offset, limit=limit)

    def _get(self, offset: int, limit: int) -> dict[str, Any]:
        from urllib.parse import quote

        from tracklet.errors import TableNotFound

        text = " and ".join(f"({expression})" for expression in self._filters) if self._filters else None
        sort, descending = self._order if self._order is not None else (None, False)
        return self._http.get_json(f"/api/v1/runs/{self._path}/tables/{quote(self.key, safe='/')}",
                                   missing=TableNotFound, step=self._step, filter=text, sort=sort,
                                   descending=descending, offset=offset, limit=limit, version=self._version)

    def count(self) -> int:
        """Rows matching the filters (before paging)."""
        return int(self._get(0, 1)["total"])

    @property
    def chart(self) -> dict[str, Any] | None:
        """The chart the version was logged with (``wandb.plot.*``), as the local
        ``TableQuery.chart``; None when there is none."""
        return self._get(0, 1).get("chart")

    def __len__(self) -> int:
        left = max(0, self.count() - self._offset)
        return left if self._limit is None else min(left, self._limit)

    def to_arrow(self) -> Any:
        """The result as a ``pyarrow.Table`` (NaN and ±inf back as floats)."""
        import pyarrow as pa

        rows: list[list[Any]] = []
        offset, wanted = self._offset, self._limit
        while True:
            size = self.PAGE if wanted is None else min(self.PAGE, wanted - len(rows))
            if size <= 0:
                break
            page = self._get(offset, size)
            columns = page["columns"]
            rows.extend(page["rows"])
            offset += len(page["rows"])
            if len(page["rows"]) < size:
                break
        if not columns:
            from tracklet.media.table_arrow import rows_only

            return rows_only(len(rows))
        arrays = []
        for index, column in enumerate(columns):
            values = [row[index] for row in rows]
            if column["type"] in ("double", "float", "halffloat"):
                values = [value if not isinstance(value, str) else float_from_json(value) for value in values]
            arrays.append(pa.array(values))
        return pa.Table.from_arrays(arrays, names=[column["name"] for column in columns])

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def __repr__(self) -> str:
        return f"<tracklet RemoteTable {self._path} {self.key!r}>"


class RemoteApi(Api):
    """Read access to the runs on the tracking server at ``base_url``."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        from tracklet.client.http import HttpClient

        self._http = HttpClient(base_url, api_key=api_key, timeout=timeout, retry=read_retry(), error=RemoteError)
        self.base_url = self._http.base_url
        self._remote_artifacts: Any = None

    @classmethod
    def over(cls, http: Any) -> RemoteApi:
        """An Api over ``http``, the client of the server something was read from (a run of an
        artifact's lineage: its ``logged_artifacts()`` resolve on that server). It shares the
        client: closing it is the owner's."""
        api = object.__new__(cls)
        api._http, api.base_url, api._remote_artifacts = http, http.base_url, None
        return api

    def close(self) -> None:
        self._http.close()

    def _reports_backend(self) -> Any:
        from tracklet.core.extensions import load

        return load("reports").remote_backend(self._http)

    def projects(self) -> list[str]:
        """The projects this key may read."""
        return [project["name"] for project in self._http.get_json("/api/v1/projects")["projects"]]

    def runs(self, project: str, filter: str | None = None, order_by: str | None = None,
             limit: int | None = None, offset: int = 0) -> list[RemoteRun]:
        """A project's runs, newest first unless ``order_by`` says otherwise (syntax: docs/store.md)."""
        return list(self._iter_runs(check_name("project", project), filter, order_by, limit, offset))

    def _iter_runs(self, project: str, filter: str | None, order_by: str | None, limit: int | None,
                   offset: int) -> Iterator[RemoteRun]:
        remaining = limit
        while remaining is None or remaining > 0:
            page = PAGE if remaining is None else min(PAGE, remaining)
            try:
                rows = self._http.get_json(f"/api/v1/projects/{project}/runs", missing=RunNotFound, filter=filter,
                                      order_by=order_by, limit=page, offset=offset)["runs"]
            except RunNotFound:
                return  # a project with no runs on the server
            yield from (RemoteRun(self._http, row, project) for row in rows)
            if len(rows) < page:
                return
            offset += len(rows)
            if remaining is not None:
                remaining -= len(rows)

    def sweep(self, path: str) -> dict[str, Any]:
        from tracklet.api.local import _sweep_path
        from tracklet.errors import SweepNotFound

        project, sweep_id = _sweep_path(path)
        return self._http.get_json(f"/api/v1/projects/{project}/sweeps/{sweep_id}", missing=SweepNotFound)["sweep"]

    def traces(self, project: str, filter: Any = None, run: Any = None, limit: int = 100) -> list[Any]:
        """See :meth:`tracklet.Api.traces`; payloads stored as blobs on the server, and the media
        they reference (``TraceSpan.blob``), are fetched from it when read."""
        from tracklet.api.traces import check_filter, run_id_of, trace_of

        check_name("project", project)
        data = self._http.get_json(f"/api/v1/projects/{project}/traces", run=run_id_of(run), limit=limit,
                                   **check_filter(filter))
        return [trace_of(row, functools.partial(self._trace_blob, project, row["trace_id"]))
                for row in data["traces"]]

    def _trace_blob(self, project: str, trace_id: str, digest: str) -> bytes:
        response = self._http.request("GET", f"/api/v1/projects/{project}/traces/{trace_id}/blobs/{digest}")
        if response.status_code != 200:
            raise self._http.refusal(response, what=f"blob {digest} of trace {trace_id}")
        return response.content

    def run(self, path: str) -> RemoteRun:
        """A run by ``project/run_id``; ``RunNotFound`` if the server has none."""
        project, run_id = _split(path)
        return RemoteRun(self._http, {"run_id": run_id}, project).refresh()

    def history(self, runs: Sequence[str | RemoteRun] | str | RemoteRun, keys: Sequence[str] | str, *,
                x: str = "step", start: float | None = None, end: float | None = None,
                buckets: int | None = 1000) -> list[Any]:
        """Like ``Api.history``: per run and key, a ``SeriesHistory`` (buckets of min, max, last and
        count over the window, or exact points), from the server's store."""
        items = [runs] if isinstance(runs, (str, RemoteRun)) else list(runs)
        names = [keys] if isinstance(keys, str) else list(keys)
        found: list[Any] = []
        for item in items:
            path = item.path if isinstance(item, RemoteRun) else "/".join(_split(item))
            data = self._http.get_json(f"/api/v1/runs/{path}/history", keys=",".join(names), x=x, start=start, end=end,
                                  buckets=buckets or 0)
            found.extend(series_from_json(series) for series in data["series"])
        return found

    # ------------------------------------------------------------ artifacts (docs/artifacts.md)

    def _artifacts(self) -> Any:
        """The server's artifacts, downloaded through the local store of the default data root."""
        if self._remote_artifacts is None:
            from tracklet.artifacts.artifact import _data_root
            from tracklet.artifacts.remote import RemoteArtifacts
            from tracklet.client.artifacts import ArtifactClient

            self._remote_artifacts = RemoteArtifacts(ArtifactClient(self._http), _data_root(None))
        return self._remote_artifacts

    def artifact(self, name: str, type: str | None = None) -> Any:  # noqa: A002
        """A committed artifact version on the server: ``"project/name:alias"``, ``"project/name:v3"``
        or ``"project/name"`` (latest), or a registry collection's (``"registry/collection:alias"``,
        ``"models:/name@alias"``: docs/registry.md); ``download()`` fetches its files.
        ``ArtifactNotFound`` if none."""
        from tracklet.artifacts.artifact import _data_root
        from tracklet.registry.service import resolve_on_server

        found = resolve_on_server(self._http, _data_root(None), name, type=type)
        return found if found is not None else self._artifacts().artifact(name, type=type)

    # ------------------------------------------------------------ the model registry (docs/registry.md)

    @property
    def registry(self) -> Any:
        """The server's model registry (``tracklet.registry.remote.RemoteRegistry``)."""
        from tracklet.registry.service import open_remote

        return open_remote(self.base_url, http=self._http)

    def alias_history(self, collection: str, alias: str | None = None) -> list[Any]:
        """Every move of the collection's aliases on the server (of ``alias`` only), oldest first."""
        from tracklet.registry.service import parse_collection

        ref = parse_collection(collection)
        return self.registry.history(ref.registry, ref.collection, alias or (None if ":" not in collection
                                                                              else ref.selector))

    def registry_collections(self, registry: str | None = None) -> list[dict[str, Any]]:
        return self.registry.collections(registry)

    def artifact_versions(self, name: str, type: str | None = None) -> list[Any]:  # noqa: A002
        """Every version of ``"project/name"`` on the server, oldest first; or of a registry
        collection of the server's (``"registry/collection"``, ``"wandb-registry-model/name"``,
        ``"models:/name"``), each as read through it."""
        from tracklet.artifacts.artifact import _data_root
        from tracklet.artifacts.names import parse_ref
        from tracklet.errors import ArtifactError
        from tracklet.registry.service import versions as registry_versions

        linked = registry_versions(_data_root(None), name, type=type, http=self._http)
        if linked is not None:
            return linked
        ref = parse_ref(name)
        if ref.project is None:
            raise ArtifactError(f"artifact_versions() needs 'project/name'; got {name!r}")
        found = self._artifacts().versions(ref.project, ref.name)
        return [artifact for artifact in found if type is None or artifact.type == type]

    def artifact_collections(self, project: str, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
        """A project's artifact collections on the server: ``{"name", "type", "versions", "latest",
        "description", "tags"}`` each."""
        return self._artifacts().collections(check_name("project", project), type)

    def delete_artifact_collection(self, name: str) -> list[Any]:
        """Delete every version of the server's collection ``"project/name"`` and its aliases
        (``LocalApi.delete_artifact_collection``'s rules; needs the project's admin role). Returns
        the versions deleted (``VersionInfo``s)."""
        from tracklet.api.local import _collection_path
        from tracklet.artifacts.remote import version_info

        project, collection = _collection_path(name, "delete_artifact_collection()")
        answer = self._artifacts().client.delete_collection(project, collection)
        return [version_info(document) for document in answer["deleted"]]

    def set_artifact_collection_type(self, name: str, type: str) -> str:  # noqa: A002
        """Give every version of the server's collection ``"project/name"`` the type ``type``
        (needs the project's admin role). Returns its type before."""
        from tracklet.api.local import _collection_path

        project, collection = _collection_path(name, "set_artifact_collection_type()")
        return str(self._artifacts().client.set_collection_type(project, collection, type)["previous_type"])

    def edit_artifact_collection(self, name: str, *, description: str | None = None, tags: list[str] | None = None,
                                 add_tags: list[str] | None = None, remove_tags: list[str] | None = None,
                                 type: str | None = None) -> dict[str, Any]:  # noqa: A002
        """Edit the server's collection ``"project/name"`` in one request, one transaction
        (``LocalApi.edit_artifact_collection``'s rules, checked here first, then by the server):
        the description and tags need the project's write role, a ``type`` the admin role (a 403
        changes nothing, not the fields sent with it either). Returns ``{"description", "tags"}``
        as stored."""
        from tracklet.api.local import _collection_path
        from tracklet.artifacts.fields import CollectionEdit

        project, collection = _collection_path(name, "edit_artifact_collection()")
        edit = CollectionEdit(type=type, description=description, tags=tags, add_tags=list(add_tags or []),
                              remove_tags=list(remove_tags or [])).checked(f"artifact collection {project}/{collection}")
        answer = self._artifacts().client.edit_collection(project, collection, edit)
        return {"description": answer.get("description", ""), "tags": list(answer.get("tags", []))}

    def __repr__(self) -> str:
        return f"<tracklet RemoteApi {self.base_url}>"
