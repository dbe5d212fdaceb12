"""Simulated request traffic: daily and weekly curves, trend, holidays, bursts and noise.

Demand is a pure function of (seed, service, env, minute):

    rps = base_rps * env_scale * trend(day) * weekday_or_weekend(day) * holiday(day)
          * daily_curve(minute of day) * (1 + burst lift) * (1 + 5 % noise)

All of it is in UTC. The scripted events are listed by `TrafficModel.events()`; the concrete
occurrences in a time range by `TrafficModel.windows()`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from agents.sim.clock import MINUTES_PER_DAY, from_minute
from agents.sim.noise import normal, stream_key, uniform
from agents.sim.profiles import PRODUCTION_ENVS, environment_scale, is_production, service_profile

__all__ = ["EventWindow", "TrafficEvent", "TrafficModel", "daily_curve", "holiday_name"]

NOISE = 0.05
HOLIDAY_FACTOR = 0.6
WEEKLY_GROWTH = 0.01
MARKETING_SERVICES = ("checkout",)
FLASH_SERVICES = ("search",)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0 as in `date.weekday()`
_MONDAY = 0
_MARKETING_START = 10 * 60
_MARKETING_END = 11 * 60
_MARKETING_LIFT = (0.4, 0.6)
_FLASH_DAILY_CHANCE = 2 / 7
_FLASH_EARLIEST = 8 * 60
_FLASH_START_SPAN = 14 * 60
_FLASH_MINUTES = (10, 20)
_FLASH_LIFT = (0.8, 1.5)
_TREND_CYCLE_WEEKS = 13
_TREND_GROWTH_WEEKS = 11
_FIXED_HOLIDAYS = {(1, 1): "new-year", (12, 25): "christmas", (12, 26): "boxing-day"}


def _daily_table() -> tuple[float, ...]:
    # Quiet at night (~0.4 of the mean at 03:00), a late-morning peak (~1.45 at 11:00-12:00)
    # and an evening one (~1.55 at 19:00), built from wrapped Gaussians scaled to a mean of 1.
    def bump(hour: float, centre: float, width: float) -> float:
        distance = abs(hour - centre)
        distance = min(distance, 24 - distance)
        return math.exp(-0.5 * (distance / width) ** 2)

    raw = [
        0.35
        + 0.9 * bump(m / 60, 11.0, 2.5)
        + 0.5 * bump(m / 60, 15.0, 2.5)
        + 1.0 * bump(m / 60, 19.5, 2.3)
        for m in range(MINUTES_PER_DAY)
    ]
    mean = sum(raw) / len(raw)
    return tuple(r / mean for r in raw)


_DAILY = np.array(_daily_table(), dtype=np.float64)


def daily_curve(minute_of_day: int) -> float:
    """The daily shape at a minute of the UTC day, 1.0 on average."""
    return float(_DAILY[minute_of_day % MINUTES_PER_DAY])


def _last_monday_of_may(year: int) -> date:
    last = date(year, 5, 31)
    return last - timedelta(days=last.weekday())


def holiday_name(day: date) -> str | None:
    """The simulated public holiday on `day`, if any."""
    if day == _last_monday_of_may(day.year):
        return "memorial-day"
    return _FIXED_HOLIDAYS.get((day.month, day.day))


def _trend(day: int) -> float:
    # +1 %/week compounding for 11 weeks, then 2 weeks sliding back: a 13-week cycle (aligned
    # to Mondays) so that the level never runs away whatever the date of the demo. Scaled so
    # that the cycle's middle is 1.0; the level stays within about ±6 % of `base_rps`.
    position = (day + _EPOCH_WEEKDAY) % (_TREND_CYCLE_WEEKS * 7) / 7
    if position <= _TREND_GROWTH_WEEKS:
        weeks = position
    else:
        back = (position - _TREND_GROWTH_WEEKS) / (_TREND_CYCLE_WEEKS - _TREND_GROWTH_WEEKS)
        weeks = _TREND_GROWTH_WEEKS * (1 - back)
    return float((1 + WEEKLY_GROWTH) ** (weeks - _TREND_GROWTH_WEEKS / 2))


@dataclass(frozen=True)
class TrafficEvent:
    """A scripted traffic pattern: a recurring burst, a random flash burst or a holiday.

    `factor_min`..`factor_max` multiply the usual demand while it lasts. Empty `services` or
    `environments` mean every one.
    """

    name: str
    kind: str
    services: tuple[str, ...]
    environments: tuple[str, ...]
    schedule: str
    factor_min: float
    factor_max: float


@dataclass(frozen=True)
class EventWindow:
    """One occurrence of a `TrafficEvent`, `start` inclusive, `end` exclusive."""

    name: str
    kind: str
    start: datetime
    end: datetime
    factor: float


_EVENTS = (
    TrafficEvent(
        name="checkout-monday-marketing",
        kind="burst",
        services=MARKETING_SERVICES,
        environments=PRODUCTION_ENVS,
        schedule="every Monday 10:00-11:00 UTC except holidays; the newsletter goes out at 10:00",
        factor_min=1 + _MARKETING_LIFT[0],
        factor_max=1 + _MARKETING_LIFT[1],
    ),
    TrafficEvent(
        name="search-flash",
        kind="flash",
        services=FLASH_SERVICES,
        environments=PRODUCTION_ENVS,
        schedule=(
            "on about 2 days in 7 (not holidays), once, starting at a random minute between "
            "08:00 and 22:00 UTC, for 10-20 minutes"
        ),
        factor_min=1 + _FLASH_LIFT[0],
        factor_max=1 + _FLASH_LIFT[1],
    ),
    TrafficEvent(
        name="new-year",
        kind="holiday",
        services=(),
        environments=(),
        schedule="1 January, all day UTC",
        factor_min=HOLIDAY_FACTOR,
        factor_max=HOLIDAY_FACTOR,
    ),
    TrafficEvent(
        name="memorial-day",
        kind="holiday",
        services=(),
        environments=(),
        schedule="last Monday of May, all day UTC",
        factor_min=HOLIDAY_FACTOR,
        factor_max=HOLIDAY_FACTOR,
    ),
    TrafficEvent(
        name="christmas",
        kind="holiday",
        services=(),
        environments=(),
        schedule="25 December, all day UTC",
        factor_min=HOLIDAY_FACTOR,
        factor_max=HOLIDAY_FACTOR,
    ),
    TrafficEvent(
        name="boxing-day",
        kind="holiday",
        services=(),
        environments=(),
        schedule="26 December, all day UTC",
        factor_min=HOLIDAY_FACTOR,
        factor_max=HOLIDAY_FACTOR,
    ),
)


@dataclass(frozen=True)
class _Burst:
    name: str
    kind: str
    start: int  # minute of the day, inclusive
    end: int  # minute of the day, exclusive
    factor: float
    ramp_up: int  # minutes until the full lift
    ramp_down: int  # minutes of decline before `end`

    def lift(self, minute_of_day: NDArray[np.int64]) -> NDArray[np.float64]:
        up = (minute_of_day - self.start + 1) / self.ramp_up
        down = (self.end - minute_of_day) / (self.ramp_down + 1)
        shape = np.clip(np.minimum(up, down), 0.0, 1.0)
        inside = (minute_of_day >= self.start) & (minute_of_day < self.end)
        return np.where(inside, shape * (self.factor - 1.0), 0.0)


@dataclass(frozen=True)
class _DayPlan:
    level: float  # trend, weekday/weekend and holiday, times base_rps * env_scale
    holiday: str | None
    bursts: tuple[_Burst, ...]


class TrafficModel:
    """Requests per second of every simulated service; a pure function of seed and minute."""

    def __init__(self, *, seed: int) -> None:
        self.seed = seed
        # Per instance rather than module-wide so two seeds never share entries.
        self._plan = functools.lru_cache(maxsize=8192)(self._make_plan)

    def events(self, services: tuple[str, ...] = ()) -> list[TrafficEvent]:
        """The scripted events that touch any of `services` (all of them when empty)."""
        return [
            e
            for e in _EVENTS
            if not services or not e.services or any(s in e.services for s in services)
        ]

    def demand(self, service: str, env: str, minutes: NDArray[np.int64]) -> NDArray[np.float64]:
        """Requests per second during each of `minutes` (minutes since the epoch)."""
        days = minutes // MINUTES_PER_DAY
        minute_of_day = minutes - days * MINUTES_PER_DAY
        rps = _DAILY[minute_of_day].copy()
        for day in np.unique(days).tolist():
            plan = self._plan(service, env, day)
            today = days == day
            lift = np.zeros(int(today.sum()), dtype=np.float64)
            for burst in plan.bursts:
                lift += burst.lift(minute_of_day[today])
            rps[today] *= plan.level * (1.0 + lift)
        key = stream_key(self.seed, "demand", service, env)
        return np.asarray(rps * (1.0 + NOISE * normal(key, minutes)), dtype=np.float64)

    def windows(
        self, service: str, env: str, *, start_minute: int, end_minute: int
    ) -> list[EventWindow]:
        """Occurrences of holidays and bursts overlapping [start_minute, end_minute)."""
        found: list[EventWindow] = []
        first_day = start_minute // MINUTES_PER_DAY
        last_day = (end_minute - 1) // MINUTES_PER_DAY
        for day in range(first_day, last_day + 1):
            plan = self._plan(service, env, day)
            day_start = day * MINUTES_PER_DAY
            spans: list[tuple[str, str, int, int, float]] = []
            if plan.holiday is not None:
                spans.append((plan.holiday, "holiday", 0, MINUTES_PER_DAY, HOLIDAY_FACTOR))
            spans += [(b.name, b.kind, b.start, b.end, b.factor) for b in plan.bursts]
            for name, kind, begin, finish, factor in spans:
                if day_start + begin < end_minute and day_start + finish > start_minute:
                    found.append(
                        EventWindow(
                            name=name,
                            kind=kind,
                            start=from_minute(day_start + begin),
                            end=from_minute(day_start + finish),
                            factor=factor,
                        )
                    )
        return found

    def _make_plan(self, service: str, env: str, day: int) -> _DayPlan:
        profile = service_profile(service)
        today = date(1970, 1, 1) + timedelta(days=day)
        holiday = holiday_name(today)
        weekday = (day + _EPOCH_WEEKDAY) % 7
        level = profile.base_rps * environment_scale(env) * _trend(day)
        if weekday >= 5:
            level *= profile.weekend_factor
        if holiday is not None:
            # Marketing and viral moments stay home on holidays too.
            return _DayPlan(level=level * HOLIDAY_FACTOR, holiday=holiday, bursts=())
        bursts: list[_Burst] = []
        if is_production(env) and service in MARKETING_SERVICES and weekday == _MONDAY:
            bursts.append(self._marketing_burst(service, day))
        if is_production(env) and service in FLASH_SERVICES:
            bursts += self._flash_burst(service, day)
        return _DayPlan(level=level, holiday=None, bursts=tuple(bursts))

    def _marketing_burst(self, service: str, day: int) -> _Burst:
        draw = uniform(stream_key(self.seed, "marketing", service), np.array([day]))[0]
        low, high = _MARKETING_LIFT
        return _Burst(
            name="checkout-monday-marketing",
            kind="burst",
            start=_MARKETING_START,
            end=_MARKETING_END,
            factor=1 + low + (high - low) * float(draw),
            ramp_up=2,  # the newsletter lands within a minute or two
            ramp_down=10,
        )

    def _flash_burst(self, service: str, day: int) -> list[_Burst]:
        counters = np.arange(4, dtype=np.int64) + 4 * day
        occurs, when, length, size = uniform(stream_key(self.seed, "flash", service), counters)
        if occurs >= _FLASH_DAILY_CHANCE:
            return []
        start = _FLASH_EARLIEST + int(when * _FLASH_START_SPAN)
        shortest, longest = _FLASH_MINUTES
        low, high = _FLASH_LIFT
        return [
            _Burst(
                name="search-flash",
                kind="flash",
                start=start,
                end=start + shortest + int(length * (longest - shortest + 1)),
                factor=1 + low + (high - low) * float(size),
                ramp_up=1,  # a link goes viral: no warning
                ramp_down=3,
            )
        ]
