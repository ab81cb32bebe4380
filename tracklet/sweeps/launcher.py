"""Starting a command trial that dies with the agent thread that started it, with no Python run in
the forked child.

The trial gets SIGTERM when that thread dies (even by kill -9: ``PR_SET_PDEATHSIG``), so no
orphaned trial keeps running after its lease lapsed. Setting it takes a call in the child before
``exec``. ``subprocess.Popen``'s ``preexec_fn`` made that call, and with it CPython runs its whole
after-fork machinery in the child of a process with threads: the at-fork hooks of every module
(``os.register_at_fork``) and the clearing of the other threads' states, any of which may free
an object whose finalizer waits on a lock or condition another thread held at the fork. A trial
of a sweep run in a process that had encoded a video hung so for ever, before its ``exec``
(PyAV's scaler freeing its slice threads' condition variables; seen in CI).

So the child execs at once (``Popen`` without ``preexec_fn`` runs no Python there) into a small
fresh interpreter, :data:`_LAUNCHER`, which sets the death signal, checks the agent is still its
parent, and execs the trial's command in place (same pid, same environment: the signals the agent
sends reach the trial). It reports a failed ``exec`` of the command through a pipe closed by a
successful one, as ``Popen`` does, so the agent's error names the command.
"""

from __future__ import annotations

import errno as _errno
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

# argv: the agent's pid, the report pipe's fd, then the command. -S: no site import (a trial's
# start pays ~15 ms, not a site's .pth files); the environment is the trial's, read as its own
# interpreter will read it (not -I/-E: they coerce a C locale even where PYTHONCOERCECLOCALE=0 says
# not to, adding LC_CTYPE to the trial's environment), so the standard library is imported from
# the standard library only, not from the trial's working directory or PYTHONPATH.
_LAUNCHER = """\
import sys
sys.path[:] = [p for p in sys.path if p and p.startswith(sys.base_prefix)]  # not the cwd's or PYTHONPATH's os.py
import os, signal
parent, report, line = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (ImportError, OSError, AttributeError):
    pass
if os.getppid() != parent:  # the agent died before the death signal was set
    os._exit(1)
os.set_inheritable(report, False)  # closed by the exec: the agent reads no report
try:
    os.execvp(line[0], line)
except OSError as error:
    os.write(report, ("%d %s" % (error.errno or 0, error.strerror or error)).encode())
    os._exit(127)
"""


def dies_with_parent() -> bool:
    """Whether trials started here get the death signal (Linux, with an interpreter to launch)."""
    return sys.platform == "linux" and bool(sys.executable)


def start(line: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
    """``subprocess.Popen(line, env=env)``, the process dying with the calling thread where
    :func:`dies_with_parent`. Raises ``OSError`` naming ``line[0]`` when it can't be run, as
    ``Popen`` does."""
    if not dies_with_parent():
        return subprocess.Popen(list(line), env=dict(env))
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        process = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(os.getpid()), str(write), *line],
                                   env=dict(env), pass_fds=(write,))
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    try:
        report = b""
        while chunk := os.read(read, 4096):  # EOF at the command's exec (or the launcher's exit)
            report += chunk
    except BaseException:  # (a Ctrl-C while it started: the caller never sees the process)
        process.kill()
        process.wait()
        raise
    finally:
        os.close(read)
    if report:
        process.wait()
        number, _, text = report.decode(errors="replace").partition(" ")
        code = int(number) if number.isdigit() else _errno.ENOEXEC
        raise OSError(code, text or os.strerror(code), line[0])
    return process
