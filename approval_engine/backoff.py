"""Rate limits between ticks: once the PR host says "not before", opsgate leaves it alone.

A RateLimitedError pauses the proposal whose work the host refused or, when `backend_wide`
(GitHub's primary limit counts every call of the token), every proposal, until its
`retry_after` has passed. Pauses are stored, so a restart honours them too. The proposal's
thread hears once when opsgate will try again; a pause that follows an expired one without a
step getting through in between is the same episode and extends it quietly.

Other temporary failures (5xx, no answer) need no pause: the backend retries them with
backoff inside the call, and the next tick is later than what they ask for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta

from approval_engine import store as db
from approval_engine.errors import RateLimitedError

__all__ = ["EVERY_CALL", "Backoff"]

log = logging.getLogger(__name__)

EVERY_CALL = "*"  # the key of a backend-wide pause


class Backoff:
    def __init__(self, *, store: db.Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self._lapsed: set[str] = set()  # keys whose stored pause is over; cleared on success

    def until(self, proposal_id: str | None = None) -> tuple[datetime, str] | None:
        """When the host may be asked again for `proposal_id`'s work (None: for anything),
        and who the host is; None when it may be asked now."""
        keys = [EVERY_CALL] if proposal_id is None else [EVERY_CALL, proposal_id]
        now = self.clock()
        paused: list[tuple[datetime, str]] = []
        with self.store.transaction() as session:
            for key in keys:
                row = session.get(db.BackoffRow, key)
                if row is None:
                    continue
                if row.until > now:
                    paused.append((row.until, row.host))
                else:
                    self._lapsed.add(key)
        return max(paused, default=None)

    def holds(self, proposal_id: str | None = None) -> bool:
        return self.until(proposal_id) is not None

    def guard(self, proposal_id: str | None = None) -> None:
        """Raise, without asking the host, what it would answer during a pause."""
        paused = self.until(proposal_id)
        if paused is None:
            return
        at, host = paused
        error = RateLimitedError(
            f"{host} is rate-limiting opsgate; try again after {clock_time(at)} UTC",
            retry_after=(at - self.clock()).total_seconds(),
        )
        error.host = host
        raise error

    def note(self, error: Exception, proposal_id: str | None) -> None:
        """Pause after a rate limit (other errors are no pause): every call when it is
        backend-wide, else `proposal_id`'s work; the proposal's thread is told once."""
        if not isinstance(error, RateLimitedError):
            return
        key = EVERY_CALL if error.backend_wide else proposal_id
        if key is None:
            return  # a limit on one call outside any proposal: the person who asked saw it
        now = self.clock()
        until = now + timedelta(seconds=math.ceil(error.retry_after))
        with self.store.transaction() as session:
            row = session.get(db.BackoffRow, key)
            if row is not None and row.until >= until:
                return  # the pause we know of, raised by guard()
            self._lapsed.discard(key)
            if row is not None:  # limited again before a step got through: one episode
                row.until, row.host = until, error.host
            else:
                session.add(db.BackoffRow(key=key, until=until, host=error.host))
            if proposal_id is not None and row is None:
                db.enqueue(
                    session,
                    dedupe_key=f"{proposal_id}:rate-limited:{until.isoformat()}",
                    kind="rate_limited",
                    text=f"{error.host} is rate-limiting opsgate; retrying at "
                    f"{clock_time(until)} UTC",
                    proposal_id=proposal_id,
                    at=now,
                )
        log.warning("%s rate-limits opsgate (%s) until %s: %s", error.host, key, until, error)

    def passed(self, proposal_id: str) -> None:
        """A step of `proposal_id` got through after a pause: the episode is over."""
        keys = [k for k in (proposal_id, EVERY_CALL) if k in self._lapsed]
        if not keys:
            return
        now = self.clock()
        with self.store.transaction() as session:
            for key in keys:
                row = session.get(db.BackoffRow, key)
                if row is not None and row.until <= now:
                    session.delete(row)
                self._lapsed.discard(key)


def clock_time(at: datetime) -> str:
    """HH:MM, rounded up: never earlier than the moment it names."""
    whole = at.replace(second=0, microsecond=0)
    return (whole if whole == at else whole + timedelta(minutes=1)).strftime("%H:%M")
