"""Cheap facts about the host for the records a run starts with.

``platform.platform()`` costs 10-20 ms on Linux (it reads the interpreter binary to find the libc
version) and importing ``platform`` a few more; ``init()`` pays neither. These give the same strings
from ``os.uname()`` and ``os.confstr()``, and fall back to ``platform`` where those don't exist.
"""

from __future__ import annotations

import functools
import os
import sys


@functools.lru_cache(maxsize=1)
def platform_string() -> str:
    """What ``platform.platform()`` returns, e.g. ``Linux-6.1.0-x86_64-with-glibc2.36``."""
    try:
        uname = os.uname()
        if uname.sysname == "Linux":
            libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
            name, _, version = libc.partition(" ")
            suffix = f"-with-{name}{version}" if name and version else ""
            return f"{uname.sysname}-{uname.release}-{uname.machine}{suffix}"
    except (AttributeError, OSError, ValueError):
        pass
    import platform

    return platform.platform()


def hostname() -> str:
    """``socket.gethostname()``, without importing ``socket`` where ``os.uname()`` knows it."""
    try:
        return os.uname().nodename
    except AttributeError:  # Windows
        import socket

        return socket.gethostname()


def os_user_name() -> str:
    """The OS user this process runs as (``getpass.getuser()``: $LOGNAME, $USER, $LNAME, $USERNAME,
    else the password database), "" where none can be found (a container's uid with no passwd
    entry): a run starts whatever it says."""
    import getpass

    try:
        return getpass.getuser()[:256]
    except Exception:  # OSError (no entry for the uid), KeyError on older Pythons, ImportError (no pwd)
        return ""


def recordable_text(text: str) -> str:
    """``text`` as a record's string can hold it: what the OS gave undecodable (an environment
    variable, a path or an argument that isn't UTF-8 comes back with lone surrogates, which protobuf
    refuses, so the whole record would be lost) becomes U+FFFD; the rest is kept as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # bytes the OS couldn't decode: decoded again, the undecodable ones replaced
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no OS decoding made (a user's string): "?"
        return text.encode("utf-8", "replace").decode("utf-8")


def unrecordable_characters(text: str) -> list[str]:
    """What ``recordable_text`` replaces in ``text``: its lone surrogates (the only ``str``
    characters UTF-8 can't encode), each once, in order, as ``U+DC80``."""
    found = dict.fromkeys(f"U+{ord(char):04X}" for char in text if "\ud800" <= char <= "\udfff")
    return list(found)


def python_implementation() -> str:
    """``platform.python_implementation()`` (``CPython``, ``PyPy``, ...), without importing
    ``platform`` (9 regular expressions compiled at import)."""
    name = sys.implementation.name
    return {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython", "jython": "Jython"}.get(name, name)


def python_version() -> str:
    """``platform.python_version()``: e.g. ``3.11.7``."""
    return sys.version.split()[0]


def memory_total_bytes() -> float:
    """Physical memory, without importing psutil where ``sysconf`` knows it."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        import psutil

        return float(psutil.virtual_memory().total)
