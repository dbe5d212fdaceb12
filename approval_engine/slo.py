"""SLO checks: what targets.yaml asks of a service after a change, and the before/after verdict.

A check compares one signal's mean over the window after a change was applied with its mean
over the same length of time before it:

- `max`: degraded when the after-value is above it and the before-value was not; above it
  before and after is a breach the change did not cause (unless the ratio below fires), so
  neither degraded nor healthy: "could not verify";
- `worse_than_before_by` (`2x`, `1.5x` or a number above 1): degraded when the after-value is
  more than that many times the before-value;
- `ignore_below`: an after-value below this is healthy whatever the rules above say, so that
  the ratio of two tiny numbers (0.1 % → 0.3 % errors) rolls nothing back.

A signal with too little data in either window is unknown too. A change with a degraded
signal is degraded; else with an unknown one, "could not verify"; else verified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "Reading",
    "SignalMeter",
    "SloCheck",
    "Verdict",
    "judge",
    "read",
    "show",
    "slo_problems",
    "verdict",
]

_RATIO = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*[x×]\s*$")


def _ratio(value: Any) -> Any:
    """`2x`, `1.5x` (or `1.5×`) as 2.0 and 1.5; numbers pass through."""
    if isinstance(value, str):
        match = _RATIO.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a factor like 2x or 1.5x")
        return float(match.group(1))
    return value


Factor = Annotated[float, BeforeValidator(_ratio), Field(gt=1)]


class SloCheck(BaseModel):
    """One signal's limits after a change; units are the signal's own (ratio, ms, %)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: float | None = Field(
        default=None, ge=0, description="degraded above this, unless it was above it before too"
    )
    worse_than_before_by: Factor | None = Field(
        default=None, description="degraded when after > before × this: 2x, 1.5x"
    )
    ignore_below: float = Field(
        default=0.0, ge=0, description="an after-value below this is healthy, whatever the ratio"
    )

    @model_validator(mode="after")
    def _some_limit(self) -> SloCheck:
        if self.max is None and self.worse_than_before_by is None:
            raise ValueError("a check needs `max`, `worse_than_before_by`, or both")
        return self


# A service's `slo:` entry replaces the default's for that signal; `null` turns it off.
ServiceSlo = dict[str, SloCheck | None]


def slo_problems(
    default: Mapping[str, SloCheck],
    services: Mapping[str, Mapping[str, SloCheck | None] | None],
    signals: Sequence[str],
) -> list[str]:
    """`key: reason` for each SLO that names a signal targets.yaml's `signals:` lacks."""
    known = ", ".join(sorted(signals)) or "none"
    problems = [
        f"slo.{name}: no signal {name!r} in `signals:` (known: {known})"
        for name in default
        if name not in signals
    ]
    for service, checks in services.items():
        problems.extend(
            f"services.{service}.slo.{name}: no signal {name!r} in `signals:` (known: {known})"
            for name in checks or {}
            if name not in signals
        )
    return problems


class SignalMeter(Protocol):
    """Reads an SLO signal of a target as one number over a window (the composition root wraps
    the agents' metrics source in one)."""

    def measure(
        self, signal: str, service: str, env: str, *, start: datetime, end: datetime
    ) -> float | None:
        """The signal's mean over [start, end), or None when there is too little data.

        Raising means "cannot tell right now" (a source down); the caller tries again later.
        """
        ...


Status = Literal["ok", "degraded", "no data", "breached before"]
Verdict = Literal["verified", "degraded", "unverified"]


@dataclass(frozen=True)
class Reading:
    """One signal before and after a change, and what its check made of them."""

    signal: str
    before: float | None
    after: float | None
    status: Status
    why: str  # `error_ratio 0.10 % → 41 % (max 2 %)`

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "before": self.before,
            "after": self.after,
            "status": self.status,
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reading:
        return cls(
            signal=str(data["signal"]),
            before=data.get("before"),
            after=data.get("after"),
            status=data["status"],
            why=str(data["why"]),
        )


def judge(signal: str, check: SloCheck, *, before: float | None, after: float | None) -> Reading:
    """The verdict on one signal; see the module docstring for the rules."""
    if before is None or after is None:
        missing = " and ".join(w for w, v in (("before", before), ("after", after)) if v is None)
        return Reading(signal, before, after, "no data", f"{signal}: no data {missing} the change")
    moved = f"{signal} {show(signal, before)} → {show(signal, after)}"
    if after < check.ignore_below:
        return Reading(signal, before, after, "ok", moved)
    top = check.max
    if top is not None and after > top >= before:
        return Reading(signal, before, after, "degraded", f"{moved} (max {show(signal, top)})")
    factor = check.worse_than_before_by
    if factor is not None and before > 0 and after > before * factor:
        return Reading(
            signal,
            before,
            after,
            "degraded",
            f"{moved} ({after / before:.1f}× worse; at most {factor:g}× allowed)",
        )
    if top is not None and after > top:
        return Reading(
            signal,
            before,
            after,
            "breached before",
            f"{moved}: above max {show(signal, top)} before the change too",
        )
    return Reading(signal, before, after, "ok", moved)


def read(
    meter: SignalMeter,
    checks: Mapping[str, SloCheck],
    service: str,
    env: str,
    *,
    applied_at: datetime,
    window_end: datetime,
) -> list[Reading]:
    """Measure every checked signal over the window after `applied_at` and the one before."""
    length = window_end - applied_at
    readings = []
    for signal, check in checks.items():
        before = meter.measure(signal, service, env, start=applied_at - length, end=applied_at)
        after = meter.measure(signal, service, env, start=applied_at, end=window_end)
        readings.append(judge(signal, check, before=before, after=after))
    return readings


def verdict(readings: Sequence[Reading]) -> Verdict:
    """Degraded if any signal is; else unverified if any is unknown; else verified."""
    if any(r.status == "degraded" for r in readings):
        return "degraded"
    if any(r.status != "ok" for r in readings):
        return "unverified"
    return "verified"


def show(signal: str, value: float) -> str:
    """A value the way people read the signal: 0.4 % errors, 180 ms, 72 % CPU."""
    if signal.endswith("_ratio"):
        percent = value * 100
        return f"{percent:.2g} %" if percent < 1 else f"{percent:.3g} %"
    if signal.startswith("latency"):
        return f"{value:,.0f} ms"
    if signal == "cpu":
        return f"{value:.0f} %"
    return f"{value:.3g}"
