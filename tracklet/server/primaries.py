"""Who holds a shared run's primary on a server (docs/shared-runs.md, "Claiming the primary").

W&B's shared mode without ``x_primary`` makes a process the run's primary if the run doesn't exist
yet, else a secondary writer. Two processes on different nodes starting run ``id=`` at once both
find no log; each asks the server first (``POST /api/v1/runs/{project}/{run_id}/primary``), and
``claim`` lets exactly one of them hold the primary: the claim is a row of ``run_primaries``
(migration s0021) whose primary key (project, run id) makes the first INSERT win on every server
process and node sharing the database (SQLite or PostgreSQL), and a takeover is a compare-and-set
on the holder's token (``UPDATE ... WHERE token = <the holder's>``), so two takeovers can't both
win either. The writer names itself by a random token (never shown to anyone) plus its host and pid
(shown, so the refused one can say who holds it); the same token claiming again is granted again
(a retried request).

Who may take a claim another writer holds:

- nobody while the holder is live: the run's own log on the server is ``running`` and grew within
  the server's heartbeat lapse (the rule by which the server marks a silent run ``crashed``), or
  the holder claimed it within the lapse and after the log last grew (it may not have uploaded
  yet);
- once it isn't (the run finished, failed, crashed or went silent, or the holder never uploaded):
  a writer whose run the server doesn't hold yet (the holder never uploaded a byte), or one that
  resumes the run (``resume``), as W&B lets a process continue a finished shared run as its
  primary only with ``resume=``. Without it, a writer of a run that exists is refused, and joins it
  as a secondary (a late evaluator).

A run with no claim whose log the server holds (its primary started before the server had this
route, or didn't claim: a native ``tracklet.init`` primary, an offline run synced later) counts
alike: live while its log is ``running`` and fresh, else open to a writer that resumes.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tracklet.server.schema import run_primaries

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
MAX_HOST_CHARS = 255


@dataclasses.dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    claimed_at: float


@dataclasses.dataclass(frozen=True)
class RunLog:
    """What the server holds of the run's own log: its size, and its store row's state and
    heartbeat (when the store last saw it grow); state None when the store has no row."""

    offset: int
    state: str | None
    heartbeat_at: float | None


@dataclasses.dataclass(frozen=True)
class Claim:
    granted: bool
    holder: Holder | None  # who holds the primary now (the claimant when granted); None: a run nobody claimed
    live: bool  # whether that holder counts as writing the run (a refusal's reason)
    log: RunLog
    previous: Holder | None = None  # the holder a granted takeover replaced


def claim(engine: sa.Engine, project: str, run_id: str, *, token: str, host: str, pid: int, resume: bool,
          run_log: Callable[[], RunLog], lapse: float, now: Callable[[], float] = time.time,
          taking: Callable[[Holder | None], None] | None = None) -> Claim:
    """Claim run ``project/run_id``'s primary for the writer ``token`` (``host``, ``pid``), by the
    rules of the module's docstring. ``run_log()`` says what the server holds of the run's log,
    ``lapse`` is the server's heartbeat lapse in seconds. Atomic across processes sharing
    ``engine``'s database: of concurrent claims exactly one is granted. ``taking(holder)`` is
    called before the transaction that would claim it (the holder it replaces, or None), so that
    transaction's audit event can say so, and with None after a takeover that lost the race."""
    key = sa.and_(run_primaries.c.project == project, run_primaries.c.run_id == run_id)
    for _ in range(4):  # a claim that loses a race sees the winner's row the next time round
        with engine.connect() as connection:
            row = connection.execute(sa.select(run_primaries.c.token, run_primaries.c.host, run_primaries.c.pid,
                                               run_primaries.c.claimed_at).where(key)).first()
        log = run_log()
        at = now()
        held = None if row is None else Holder(row.host, row.pid, row.claimed_at)
        if row is not None and hmac.compare_digest(row.token.encode(), token.encode()):
            return Claim(True, held, True, log)  # this writer's claim, asked again
        if _live(held, log, at, lapse):
            return Claim(False, held, True, log)
        if log.offset > 0 and not resume:  # the run exists and ended: W&B continues it as primary only resumed
            return Claim(False, held, False, log)
        mine = Holder(host, pid, at)
        if taking is not None:
            taking(held)
        try:
            with engine.begin() as connection:
                if row is None:
                    connection.execute(run_primaries.insert().values(project=project, run_id=run_id, token=token,
                                                                     host=host, pid=pid, claimed_at=at))
                    won = True
                else:
                    won = connection.execute(run_primaries.update().where(key, run_primaries.c.token == row.token)
                                             .values(token=token, host=host, pid=pid, claimed_at=at)).rowcount == 1
        except IntegrityError:  # another writer's first claim committed first
            won = False
        if won:
            return Claim(True, mine, True, log, previous=held)
        if taking is not None and held is not None:
            taking(None)  # it replaced nobody after all: its refusal's event names no one it replaced
    raise RuntimeError(f"the primary of run {project}/{run_id} changed hands during every try of this claim")


def _live(held: Holder | None, log: RunLog, at: float, lapse: float) -> bool:
    """Whether the primary counts as writing the run at ``at``: the run's log on the server is
    ``running`` and grew within ``lapse`` seconds, or the holder claimed it within ``lapse`` and
    after the log last grew (it may not have uploaded yet: a new run, or one it resumes)."""
    if log.offset > 0 and log.state == "running" and log.heartbeat_at is not None and at - log.heartbeat_at < lapse:
        return True
    if held is None or at - held.claimed_at >= lapse:
        return False
    return log.offset == 0 or log.heartbeat_at is None or held.claimed_at >= log.heartbeat_at
