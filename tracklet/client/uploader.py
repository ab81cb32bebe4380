"""Online mode: a run's record log streamed to a tracking server while the run goes on.

The run records locally exactly as offline (the record log stays the source of truth); this
thread tails the log every ``upload_interval`` seconds and sends the server the complete frames
it doesn't have yet, each after the media and table blobs its records name, with ``SyncClient`` (the same code as ``tracklet sync``: by byte offset,
resumable, jittered bounded backoff while the server is unreachable). Training never waits for
it: ``finish()`` gives it at most ``upload_timeout`` seconds after the log is closed, then leaves
the rest to ``tracklet sync``.

It also sends the run's other parts (``parts/<label>.tlog`` in the run's local directory: its
child processes' parts, docs/shared-runs.md) whose writers are gone and whose logs are behind the
server's copy, after the run's own log in each pass: what a pool worker ended by its pool's SIGTERM
left unsent reaches the server by the time the parent's ``finish()`` returns, without ``tracklet
sync``. A part whose writer lives is its own writer's to upload (only where liveness can't be known,
no ``flock``, does the last pass send it too). A process that joined the run as a child (a pool
worker) leaves the other parts to the writer that passed the run on. Two uploaders of one part are safe: the server
appends under the copy's lock and takes a resend whose overlap equals its bytes (``new_tail``), so
each byte is stored once. A part is looked at again only when its size changes; a part that fails
(refused, damaged) is reported once and left as it is locally. ``tracklet.init`` hands the run ``online_uploader`` as its uploader
factory, so the recording core never imports this layer.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tracklet.core import threads
from tracklet.core.layout import RunPaths
from tracklet.core.settings import Settings

UPLOAD_STATE_DIR = "artifact-uploads"  # under <data root>/cache: resumable uploads (as artifacts/remote.py's)


def online_uploader(paths: RunPaths, settings: Settings, report: Callable[[Any, str], None],
                    blob_dir: Path | None = None) -> Uploader:
    """The uploader an online run starts (``tracklet.core.run.UploaderFactory``): the one
    ``tracklet.init`` hands the run, with ``blob_dir``, the local artifacts directory whose media
    and table blobs go to the server before the records naming them."""
    assert settings.base_url is not None
    return Uploader(paths, settings.base_url, interval=settings.upload_interval, report=report,
                    api_key=settings.api_key, blob_dir=blob_dir)


class Uploader:
    """Tails a live run's record log on its own thread and uploads what is new (see the module)."""

    def __init__(self, paths: RunPaths, base_url: str, *, interval: float,
                 report: Callable[[Any, str], None], api_key: str | None = None,
                 blob_dir: Path | None = None) -> None:
        self._paths = paths
        self._blob_dir = blob_dir
        self._base_url = base_url
        self._api_key = api_key
        self._interval = interval
        self._report = report
        self._stop = threading.Event()
        self._done = threading.Event()
        self._cut_at: float | None = None  # cut_wait(): finish() waits no later than this (monotonic)
        self.offset = 0
        self._parts: dict[str, int] = {}  # other parts' labels -> their local size when last synced (or failed)
        self._thread = threading.Thread(target=self._run, name="tracklet-uploader", daemon=True)

    def start(self) -> None:
        # The thread imports the sync client (httpx, ...), which registers a thread-pool hook with
        # ``threading._register_atexit``. A script that logs and exits at once reaches interpreter
        # shutdown before that import is done, and registering then raises: the import failed and
        # nothing was uploaded. Imported here, on the caller's thread, the hook is registered in time
        # (~11 ms CPU, mostly ``logging``, which the thread's import loads anyway).
        import concurrent.futures.thread  # noqa: F401

        from tracklet.core import forksafe

        forksafe.arm_fork_wait()  # after that import's own fork hook, so a fork's wait runs before it
        threads.start(self._thread)

    def _run(self) -> None:
        try:
            self._upload()
        except Exception as error:  # contained: a dead uploader must not make finish() wait its timeout out
            self._report(("uploader", type(error)), f"tracklet: uploading failed: {error!r}; the run is recorded "
                                                    "locally")
        finally:
            self._done.set()

    def _upload(self) -> None:
        try:
            from tracklet.client.sync import SyncClient, SyncError, local_damage
        except ImportError as error:
            self._report("uploader-import", f"tracklet: online mode needs httpx "
                                            f"(pip install 'tracklet[server]'): {error}; the run is recorded locally")
            return
        # Retry for as long as the process lives: an outage only delays the upload.
        try:
            client = SyncClient(self._base_url, give_up_after=float("inf"), api_key=self._api_key,
                                blob_dir=self._blob_dir, upload_state_dir=self._paths.root / "cache" / UPLOAD_STATE_DIR)
        except Exception as error:  # e.g. an unreadable credentials file
            self._report("uploader-setup", f"tracklet: cannot upload to {self._base_url}: {error}; "
                                           "the run is recorded locally")
            return
        damage_reported = False
        with client:
            while True:
                stopping = self._stop.wait(self._interval)
                try:
                    result = client.sync_run(self._paths)
                    for line in result.describe_gaps():
                        self._report(("uploader-gap", line[:80]), f"tracklet: online upload to {self._base_url}: {line}")
                    offset = result.offset
                    if (offset == self.offset or stopping) and not damage_reported:  # behind local damage?
                        damage = local_damage(self._paths, offset)
                        if damage is not None and not damage.torn_tail:
                            damage_reported = True
                            self._report("uploader-damage", f"tracklet: online upload to {self._base_url} stopped "
                                         f"at local damage: {damage.describe()}; the run is recorded locally")
                    self.offset = offset
                except SyncError as error:  # the server refused (not unreachable): say so once
                    self._report(("uploader-refused", str(error)[:80]), f"tracklet: upload to {self._base_url} "
                                 f"refused: {error}; the run is recorded locally")
                except Exception as error:  # contained: uploading must never take the run down
                    self._report(("uploader", type(error)), f"tracklet: uploading failed: {error!r}")
                try:
                    self._sync_parts(client, final=stopping)
                except Exception as error:  # contained, as above
                    self._report(("uploader-parts", type(error)), f"tracklet: uploading the run's parts failed: {error!r}")
                if stopping:
                    break

    def _sync_parts(self, client: Any, *, final: bool) -> None:
        """Send the run's other parts whose writers are gone (see the module): each part's log is
        looked at (``writer_alive``, then ``sync_run``: the server's offset, the bytes after it)
        only when its size differs from what the last look saw; ``final``: the pass at
        ``finish()``, which also sends a part whose writer's liveness can't be known."""
        from tracklet.client.sync import SyncError, local_damage
        from tracklet.core.childrun import passed_by
        from tracklet.core.recordlog import writer_alive

        if passed_by(self._paths.root, self._paths.project, self._paths.run_id) is not None:
            return  # a child's part: the writer that passed the run on sends its parts (a pool worker's
            # uploader sending its siblings' would hold up its own exit, which its pool waits for)
        for label in self._paths.parts():
            if label == self._paths.part:
                continue
            part = self._paths.part_paths(label)
            try:
                found = os.stat(part.log_file)
            except OSError:
                continue
            if not stat.S_ISREG(found.st_mode):
                continue  # no part (a name on disk): opening a FIFO waited for a writer for ever
            size = found.st_size
            if self._parts.get(label) == size:
                continue  # unchanged since it was sent (or failed)
            alive = writer_alive(part.log_file)
            if alive or (alive is None and not final):
                continue  # its writer's own uploader sends it
            name = f"{self._paths.project}/{self._paths.run_id} part {label}"
            try:
                result = client.sync_run(part)
            except SyncError as error:  # refused or unreadable: said once, the local part kept as it is
                self._parts[label] = size
                self._report(("uploader-part-refused", str(error).replace(label, "")[:80]),
                             f"tracklet: uploading {name} to {self._base_url} failed: {error}; the part is recorded "
                             f"locally, and `tracklet sync {self._paths.project}/{self._paths.run_id} --url "
                             f"{self._base_url}` sends it once the cause is fixed")
                continue
            self._parts[label] = size
            for line in result.describe_gaps():
                self._report(("uploader-gap", line[:80]), f"tracklet: online upload to {self._base_url}: {line}")
            damage = local_damage(part, result.offset)
            if damage is not None and not damage.torn_tail:
                self._report(("uploader-part-damage", label), f"tracklet: online upload to {self._base_url} stopped "
                             f"at local damage: {damage.describe()}; the part is recorded locally")

    def cut_wait(self, seconds: float) -> None:
        """Make ``finish()`` (a call under way, or a later one) wait at most ``seconds`` from now
        for the upload: a pool worker's part whose pool is torn down (``core/childrun.py``). Safe in
        a signal handler: it sets one attribute."""
        at = time.monotonic() + seconds
        self._cut_at = at if self._cut_at is None else min(self._cut_at, at)

    def finish(self, timeout: float) -> bool:
        """Send what the closed log holds, waiting at most ``timeout`` (and no later than
        ``cut_wait`` says); False if not all of it."""
        self._stop.set()
        started = time.monotonic()
        deadline = started + timeout
        while True:
            end = deadline if self._cut_at is None else min(deadline, self._cut_at)
            left = end - time.monotonic()
            # in slices: a cut_wait() may come meanwhile (a signal handler on this very thread)
            if self._done.wait(max(0.0, min(left, 0.1))):
                return True
            if left <= 0.1:
                break
        sync = f"`tracklet sync {self._paths.project}/{self._paths.run_id} --url {self._base_url}`"
        within = f"tracklet: the upload to {self._base_url} did not finish within {time.monotonic() - started:.0f}s"
        parent = self._delivering_writer()
        if parent is not None:
            print(f"{within}; this part ({self._paths.part}) is complete locally, and the run's online writer in "
                  f"process {parent}, which passed the run to this one, uploads the rest of it (at the latest when "
                  f"its run finishes; should that process not get to it, {sync} finishes the upload)", file=sys.stderr)
        else:
            print(f"{within}; the run is complete locally, and {sync} finishes the upload", file=sys.stderr)
        return False

    def _delivering_writer(self) -> int | None:
        """The pid of the live online writer that passed this part's run to this process (its
        uploader sends the part once this process is gone: ``_sync_parts``), or ``None``."""
        if self._paths.part is None:
            return None
        try:
            from tracklet.core.childrun import delivering_writer

            return delivering_writer(self._paths.root, self._paths.project, self._paths.run_id)
        except Exception:  # never in the way of the message
            return None
