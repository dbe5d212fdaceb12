"""Time for the simulation: UTC-aware datetimes in, whole minutes since the epoch inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.sim.workload import SimulationError

__all__ = ["EPOCH", "MINUTES_PER_DAY", "from_minute", "to_micros", "to_minute", "utc_now"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTES_PER_DAY = 1440
_MICROS_PER_MINUTE = 60_000_000


def utc_now() -> datetime:
    """The default clock; tests and the demo inject their own."""
    return datetime.now(UTC)


def to_micros(at: datetime, *, what: str = "time") -> int:
    """Microseconds since the epoch; integer arithmetic so no instant lands on the wrong minute."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise SimulationError(f"{what} must be timezone-aware (UTC), got naive {at.isoformat()}")
    return (at - EPOCH) // timedelta(microseconds=1)


def to_minute(at: datetime, *, what: str = "time") -> int:
    """The minute `at` falls in; the simulation's resolution is one minute."""
    return to_micros(at, what=what) // _MICROS_PER_MINUTE


def from_minute(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)
