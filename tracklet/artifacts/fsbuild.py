"""Making an object store's fsspec filesystem (s3fs, gcsfs) on the client side: in a
``forksafe.section()``, so that a fork on another thread waits for it (while it works:
``forksafe.FORK_WAIT``) and none begins while a fork is under way.

A filesystem's first making imports its library (s3fs imports aiohttp, which builds two TLS
contexts as it is imported) and sets up its client on fsspec's IO thread (aiobotocore's session,
whose credential resolver builds another): OpenSSL's first work in the process, under its own
locks, and modules half-imported. A child forked meanwhile (a ``Pool`` or ``DataLoader`` worker
started while an artifact worker resolved an ``s3://`` reference) inherited the module's import
lock held by a thread it doesn't have: its own first S3 client waited for ever (measured: every
child forked 5-700 ms into the build hung). So the making includes the import and, for s3fs,
the client's session (``connect``), which it would otherwise set up on first use, outside any
section. The s3fs client's TLS work after that (the context its first request builds, each
handshake step) runs in sections too: ``_session_in_sections``; the gcsfs client's likewise
(``_gcs_session_in_sections``: its aiohttp session's connector, with a TLS context made here)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tracklet.core import forksafe, threads


def made(make: Callable[[], Any]) -> Any:
    """``make()`` (which imports the filesystem's library and makes it; or ``url_to_fs``'s pair), in a
    fork-safe section, with the mask of the user's thread (``core/threads.py``: its IO loop may
    start processes); an s3fs filesystem's client is set up at once."""
    # concurrent.futures first, in a section of its own (a fork waits for the import): the build's
    # section then registers the fork's wait after that module's lock-holding fork hook
    # (forksafe.arm_fork_wait), not amid the build. At interpreter exit (an artifact stored by exit's
    # wait) its import can't register its atexit hook and raises: nothing here needs it then.
    try:
        with forksafe.section():
            import concurrent.futures.thread  # noqa: F401
    except RuntimeError:
        pass
    with forksafe.section(helpers=_fsspec_io_thread), threads.unblocked():
        made = make()
        fs = made[0] if isinstance(made, tuple) else made  # (fsspec.core.url_to_fs: the filesystem and a path)
        library = type(fs).__module__.split(".")[0]
        if library == "gcsfs" and not getattr(fs, "asynchronous", False):
            _gcs_session_in_sections(fs)
        if library == "s3fs" and not getattr(fs, "asynchronous", False):
            config = getattr(fs, "config_kwargs", None)
            session = _session_in_sections()
            if isinstance(config, dict) and session is not None:
                config.setdefault("http_session_cls", session)  # (one the user chose stays)
            try:
                fs.connect()
            except Exception:  # noqa: BLE001 - a bad configuration: the first use raises it, where it did
                pass
    return made


def _fsspec_io_thread() -> list[int]:
    """fsspec's IO thread, where an async filesystem's client is set up (aiobotocore's session and
    credential resolver, their TLS contexts) while the build's thread waits on it: its work is the
    build's (``forksafe.section``'s helpers), so a fork on a loaded machine doesn't give up on the
    build while that thread builds a TLS context (a child forked then hung in ``SSLContext``)."""
    asyn = sys.modules.get("fsspec.asyn")  # any state: made by the build; read, never imported, under the fork's lock
    running = getattr(asyn, "iothread", None)
    thread = running[0] if isinstance(running, list) and running else None
    ident = getattr(thread, "ident", None)
    return [ident] if isinstance(ident, int) else []


_session_class: list[Any] = []  # made once: aiobotocore's session class with its TLS work in sections


def _session_in_sections() -> Any:
    """aiobotocore's aiohttp session (``AioConfig(http_session_cls=)``) whose TLS work is code a
    fork waits for: its connector's TLS context, built at the filesystem's first request on an
    executor thread (the CA bundle loaded: certifi's, ~0.1 CPU s, under OpenSSL's global locks),
    in a section; and each step of every handshake on fsspec's IO thread (asyncio's TLS on
    ``wrap_bio``) in one (``forksafe.tls_object_class``). A child forked amid the build could
    inherit one of OpenSSL's locks held: its own first TLS context (a ``Pool`` worker's S3
    client, its upload client) waited in ``CRYPTO_THREAD_write_lock`` for ever. None where this
    aiobotocore builds its contexts otherwise (then as before)."""
    if not _session_class:
        try:
            from aiobotocore.httpsession import AIOHTTPSession
        except ImportError:
            AIOHTTPSession = None  # noqa: N806
        if AIOHTTPSession is None or not callable(getattr(AIOHTTPSession, "_build_ssl_contexts", None)):
            _session_class.append(None)
        else:
            class SessionInSections(AIOHTTPSession):
                def _build_ssl_contexts(self, proxy_url: Any) -> Any:
                    with forksafe.section():
                        contexts = super()._build_ssl_contexts(proxy_url)
                    for context in contexts:
                        if context is not None:
                            context.sslobject_class = forksafe.tls_object_class()
                    return contexts

            _session_class.append(SessionInSections)
    return _session_class[0]


_gcs_context: list[Any] = []  # made once: the TLS context of gcsfs's sessions, its handshake steps in sections


def _gcs_session_in_sections(fs: Any) -> None:
    """Give a gcsfs filesystem's aiohttp session (made at its first request, on fsspec's IO thread)
    a connector whose TLS is code a fork waits for: its context made here, in the build's section
    (``ssl.create_default_context()`` with ALPN ``http/1.1``, as aiohttp makes its default verified
    one: the system's CA certificates loaded under OpenSSL's global locks), once per process; and
    each step of every handshake in a section (``forksafe.tls_object_class``). Without it, gcsfs's
    session used aiohttp's default context, whose handshakes on the IO thread a fork didn't wait
    for: a child forked amid the process's first one could inherit one of OpenSSL's locks held.

    Through gcsfs's documented ``session_kwargs`` (passed to ``aiohttp.ClientSession``; gcsfs uses
    a ``connector`` given there as it is), the filesystem's ``loop`` and ``fsspec.asyn.sync`` (an
    aiohttp connector is made on its loop). A ``connector`` the user gave stays. gcsfs's own
    client-certificate (mutual TLS) context stays its own: that is read from ``fs._use_client_cert``
    (private, gcsfs >= 2026.x); where it is missing or true, or anything here fails, the session is
    gcsfs's, as before."""
    kwargs = getattr(fs, "session_kwargs", None)
    if not isinstance(kwargs, dict) or "connector" in kwargs or getattr(fs, "_use_client_cert", None) is not False:
        return
    loop = getattr(fs, "loop", None)
    try:
        import ssl

        import aiohttp
        from fsspec.asyn import sync

        if not _gcs_context:
            context = ssl.create_default_context()
            context.set_alpn_protocols(("http/1.1",))
            context.sslobject_class = forksafe.tls_object_class()
            _gcs_context.append(context)

        async def connector() -> Any:  # on the filesystem's loop: aiohttp's connector needs a running one
            return aiohttp.TCPConnector(ssl=_gcs_context[0])

        fs.session_kwargs = {**kwargs, "connector": sync(loop, connector)}
    except Exception:  # noqa: BLE001 - aiohttp or fsspec not as expected: gcsfs's own session, as before
        pass
