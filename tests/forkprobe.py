"""What the fork probes share: code the scripts that tests run in fresh interpreters import
(``conftest.run_script`` puts this folder on their ``PYTHONPATH``) to fork a child, wait for it
and, where it hangs, say what it was doing instead of only that it timed out.

A child still running after its bound is explained on stderr (``explain``: py-spy's dump with
native frames, where py-spy is installed, and each thread's state and signal masks), then sent
SIGABRT, on which faulthandler (``PYTHONFAULTHANDLER=1``, or enabled by ``forked`` before it
forks) prints every thread's Python stack, and ended. Imported before a fork, so that a child
never imports it."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable


def explain(pid: int) -> str:
    """What process ``pid`` is doing: py-spy's dump with native frames (where py-spy is installed)
    and, from ``/proc``, each of its threads' state and signal masks."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    lines = [f"--- process {pid} still running: what it is doing"]
    if spy is not None:
        try:
            dumped = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True, text=True,
                                    timeout=60)
            lines.append(dumped.stdout + dumped.stderr)
        except (OSError, subprocess.SubprocessError) as error:
            lines.append(f"py-spy: {error!r}")
    try:
        for task in sorted(os.listdir(f"/proc/{pid}/task")):
            with open(f"/proc/{pid}/task/{task}/status") as status:
                wanted = [line.strip() for line in status if line.startswith(("Name", "State", "SigBlk", "SigIgn"))]
            lines.append(f"thread {task}: " + "; ".join(wanted))
    except OSError:
        pass
    return "\n".join(lines) + "\n"


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (its children, theirs, ...), from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found, pending = [], list(parents.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(parents.get(child, []))
    return found


def reap(pid: int, bound: float = 60.0) -> int:
    """Wait for forked child ``pid``; its exit code (``os.waitstatus_to_exitcode``). One still
    running after ``bound`` seconds (hung: a bound, not a timing check) is explained, sent SIGABRT
    (faulthandler's stacks) and, if that doesn't end it, SIGKILL."""
    deadline = time.monotonic() + bound
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    sys.stderr.write(explain(pid))
    sys.stderr.flush()
    for ending in (signal.SIGABRT, signal.SIGKILL):
        os.kill(pid, ending)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def forked(in_child: Callable[[], int | None], bound: float = 60.0) -> int:
    """Fork; the child runs ``in_child()`` and exits with the code it returns (anything but an int:
    0; an exception: 1, its traceback on stderr). The child's exit code, once it has ended (``reap``)."""
    if not faulthandler.is_enabled():
        faulthandler.enable()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            returned = in_child()
            code = returned if isinstance(returned, int) else 0
        except BaseException:  # noqa: BLE001 - the child's exit code says it
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return reap(pid, bound)


def fork_amid(build: Callable[[], object], when: float | Callable[[], object],
              in_child: Callable[[], int | None]) -> int:
    """Start ``build()`` on another thread and fork ``when`` seconds later (or once ``when()`` has
    returned): the child runs ``in_child()`` (``forked``). The child's exit code, once the build has
    ended too."""
    builder = threading.Thread(target=build)
    builder.start()
    if callable(when):
        when()
    else:
        time.sleep(when)
    code = forked(in_child)
    builder.join()
    return code


def fork_during_this_step(codes: list[int], lasting: float = 0.2) -> None:
    """Fork on another thread while the caller's step goes on for ``lasting`` seconds more: the
    child exits 3 if the step had ended when it was made (the fork waited for it), 4 if it was made
    amid it; its exit code is appended to ``codes`` (on that thread, once the child has ended)."""
    began, ended = threading.Event(), []

    def fork() -> None:
        began.set()
        codes.append(forked(lambda: 3 if ended else 4))

    threading.Thread(target=fork).start()
    began.wait(30)
    time.sleep(lasting)  # the step goes on: a fork that doesn't wait for it goes ahead meanwhile
    ended.append(True)
