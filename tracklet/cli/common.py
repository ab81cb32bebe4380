"""What every ``tracklet`` command module shares: the one-line error (:class:`CliError`), the
translation of tracklet's errors into it (:func:`_handle_errors`), the group's state (:class:`_State`,
:func:`_state`) and small helpers. It imports no command module, so command modules import it and
``tracklet.cli.main`` imports them without a cycle; it imports nothing heavy (the CLI starts fast).
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import shlex
from pathlib import Path
from typing import Any, Callable

import click

from tracklet.errors import TrackletError

ERROR_EXIT_CODE = 2


class CliError(click.ClickException, TrackletError):
    """An expected failure: one line on stderr, exit status 2."""

    exit_code = ERROR_EXIT_CODE

    def show(self, file: Any = None) -> None:
        click.echo(f"tracklet: error: {self.format_message()}", err=True)


def unknown_project(api: Any, project: str, also: list[str] | tuple[str, ...] = ()) -> CliError:
    """The error for a PROJECT argument that names nothing under the data root (a typo, most
    often), listing the projects there (``also``: names known otherwise, e.g. projects holding
    only artifacts), so a command never answers an unknown project with silence."""
    known = sorted({*api.projects(), *also})
    return CliError(f"no project {project!r} under {api.root} (projects: {', '.join(known) if known else 'none'})")


def _as_cli_error(error: Exception) -> CliError | None:
    """The one-line error for a failure a user can cause; None for anything else (a bug).

    Every :class:`~tracklet.errors.TrackletError` (no such run, the store busy or missing a driver,
    an unknown user, a bad filter, ...) is one; so is a ``ValueError`` (a bad option value), a
    ``KeyError`` (a missing key) and an ``OSError`` (a file that can't be read or written).
    """
    if isinstance(error, (TrackletError, ValueError)):
        return CliError(str(error))
    if isinstance(error, KeyError):
        return CliError(str(error.args[0]) if error.args else repr(error))
    if isinstance(error, OSError) and error.errno != errno.EPIPE:  # click exits quietly on a closed pipe
        where = f": {error.filename}" if error.filename else ""
        return CliError(f"{error.strerror or error}{where}")
    return None


def _handle_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into :class:`CliError` (one line, exit 2, no traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as error:
            translated = _as_cli_error(error)
            if translated is None:
                raise
            raise translated from None

    return wrapper


class _State:
    """What the group's options decide, shared with every command."""

    def __init__(self, root: Path | None) -> None:
        self.root_option = root
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            from tracklet.api.local import LocalApi

            self._api = LocalApi(self.root_option)
        return self._api

    def command_prefix(self) -> str:
        """How to call tracklet again with the same data root (for hints we print)."""
        if self.root_option is None:
            return "tracklet"
        return f"tracklet --dir {shlex.quote(str(self.root_option))}"


def _state(ctx: click.Context) -> _State:
    state = ctx.find_object(_State)
    return state if state is not None else _State(None)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).isoformat()


def _require_server_extra(what: str) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise CliError(f"{what} needs FastAPI and uvicorn: pip install 'tracklet[server]' ({error})") from None
