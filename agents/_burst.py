"""The BurstPredictor's model: settings, what a prediction holds, and how windows are found.

See agents/burst_predictor.py for the method in words; this module does the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from agents.analysis.forecast import Forecast, forecast
from agents.base import AgentContext, AgentSettings
from agents.errors import SourceError
from agents.graphs import Graph, Line, Span
from approval_engine.config import Duration
from approval_engine.model import Scalar

__all__ = ["BurstPredictorSettings", "BurstWindow", "Prediction", "predict"]

FloatArray = npt.NDArray[np.float64]

HOUR = timedelta(hours=1)
WEEK_HOURS = 168
MIN_HISTORY = timedelta(days=14)
MIN_WEEKS_SEEN = 2  # once is not a pattern
GRAPH_HISTORY = timedelta(days=3)
_EPSILON = 1e-9  # so that exactly 3.0 pods' worth stays 3


class BurstPredictorSettings(AgentSettings):
    horizon: Duration = Field(
        default=timedelta(hours=48),
        ge=HOUR,
        le=timedelta(days=7),
        description="how far ahead to look for bursts, in whole hours",
    )
    history: Duration = Field(
        # Four weeks: a burst must recur in 3 of 4 (`recurrence`), which forgives one holiday
        # Monday but not a random spike that hit the same hour twice. (forecast() takes the
        # median of three past weeks only from 22 days on; from 21 it takes the mean of two.)
        default=timedelta(days=28),
        ge=MIN_HISTORY,
        le=timedelta(days=90),
        description="demand history the forecast reads, in whole hours; 14 days at least",
    )
    step: Duration = Field(
        default=timedelta(minutes=5), le=HOUR, description="sampling step; must divide an hour"
    )
    signal: str = Field(
        default="requests", min_length=1, description="demand signal, a rate (requests/s)"
    )
    pod_start: Duration = Field(
        default=timedelta(minutes=3),
        le=HOUR,
        description="how long a pod the HPA adds takes to serve traffic",
    )
    headroom: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="demand planned for above the forecast peak, as a fraction (0.1 = 10 %)",
    )
    min_lift_pct: float = Field(
        default=25.0,
        gt=0.0,
        le=1000.0,
        description="ignore rises smaller than this, in percent: over the hour before, and "
        "within pod_start plus one step",
    )
    recurrence: float = Field(
        default=0.75,
        gt=0.0,
        le=1.0,
        description="share of the past weeks that must show the rise at that hour of the week "
        "(and two at least)",
    )
    lead: Duration = Field(
        default=timedelta(hours=1),
        le=timedelta(days=2),
        description="review and sync time: propose at least this long before pods must be "
        "ready; later windows are reported as too late for a reviewed change",
    )
    max_floor: int = Field(
        default=30, ge=1, le=1000, description="never propose more; policy.yaml limits still apply"
    )

    @field_validator("horizon", "history")
    @classmethod
    def _whole_hours(cls, value: timedelta) -> timedelta:
        if value % HOUR:
            raise ValueError(f"must be whole hours, got {value}")
        return value

    @field_validator("step")
    @classmethod
    def _divides_an_hour(cls, value: timedelta) -> timedelta:
        if HOUR % value:
            raise ValueError(f"must divide an hour evenly (1m, 5m, 15m …), got {value}")
        return value


@dataclass(frozen=True)
class BurstWindow:
    """Consecutive forecast hours the HPA's pods cannot absorb; `end` is exclusive."""

    start: datetime
    end: datetime
    peak_rps: float  # expected peak: the forecast, or the hour before × past_lift if higher
    forecast_rps: float  # the forecast's hourly peak, the highest in the window
    past_lift: float  # median peak / peak of the hour before, in the weeks that had the rise
    planned_rps: float  # that peak plus headroom: what the floor is sized for
    upper_rps: float  # the forecast's upper band there
    before_rps: float  # forecast peak of the hour before the window
    pods_before: int  # what the HPA would run for that hour (its max aside)
    capacity_before_rps: float  # those pods at 100 % CPU
    needed_floor: int  # pods serving peak + headroom at the target CPU (capped)
    weeks_seen: int  # past weeks that showed the rise at this hour of the week
    weeks_observed: int
    ready_by: datetime  # when the floor must be in force (start - pod_start)
    late: bool  # ready_by - lead has passed: no time left for review

    @property
    def lift_pct(self) -> float:
        """Rise of the window's peak over the hour before, in percent."""
        return (self.peak_rps / self.before_rps - 1.0) * 100.0 if self.before_rps > 0 else 0.0

    @property
    def confidence(self) -> float:
        return self.weeks_seen / self.weeks_observed if self.weeks_observed else 0.0

    def label(self) -> str:
        """ "Mon 10–11 UTC", "Mon 23–24 UTC", "Mon 22–Tue 02 UTC" """
        if (self.end - HOUR).date() == self.start.date():
            return f"{self.start:%a %H}–{(self.end - HOUR).hour + 1:02d} UTC"
        return f"{self.start:%a %H}–{self.end:%a %H} UTC"


@dataclass(frozen=True)
class Prediction:
    """What `predict` saw for one workload; `note` says why something is missing.

    `times` are the starts of the forecast hours; `point`/`upper` their forecast peaks.
    `needed_floor` is the floor the windows that are not too late ask for, or the current
    floor when it suffices (None when there is no HPA or no forecast).
    """

    service: str
    env: str
    origin: datetime  # ctx.now rounded down to the hour: where history ends, forecast starts
    signal: str
    times: tuple[datetime, ...] = ()
    point: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    windows: tuple[BurstWindow, ...] = ()
    pod_capacity_rps: float | None = None  # one pod at 100 % CPU
    target_cpu: float | None = None
    current_floor: int | None = None
    current_max: int | None = None
    needed_floor: int | None = None
    history_days: float = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)
    graph: Graph | None = None
    note: str = ""

    @property
    def raises_floor(self) -> bool:
        return (
            self.needed_floor is not None
            and self.current_floor is not None
            and self.needed_floor > self.current_floor
        )


@dataclass(frozen=True)
class _Hpa:
    floor: int
    ceiling: int
    target_cpu: float


def predict(
    ctx: AgentContext, settings: BurstPredictorSettings, service: str, env: str
) -> Prediction:
    """Forecast one workload's demand and find the burst windows its HPA floor cannot absorb.

    Shared by the agent and `/predict`; `note` says why a part is missing (short history,
    no HPA, no way to size a pod). Raises SourceUnavailableError when metrics are down.
    """
    now = _utc(ctx.now)
    end = now.replace(minute=0, second=0, microsecond=0)  # only whole hours are forecast
    p = Prediction(service=service, env=env, origin=end, signal=settings.signal)
    try:
        hpa = hpa_knobs(ctx.knobs.current_values(service, env))
    except ValueError as e:
        return replace(p, note=f"cannot read the HPA knobs: {e}")
    start = end - settings.history
    demand = _read(ctx, settings.signal, service, env, start, end, settings.step)
    peaks = _hourly_peaks(demand, HOUR // settings.step)
    observed = np.flatnonzero(np.isfinite(peaks))
    p = replace(p, history_days=(len(peaks) - observed[0]) / 24 if observed.size else 0.0)
    if p.history_days < MIN_HISTORY.days:
        note = f"only {p.history_days:.1f} days of {settings.signal} history; forecasts need 14"
        return replace(p, note=note)
    if observed.size < p.history_days * 12:
        return replace(p, note=f"{settings.signal} history has gaps in most hours")
    result = forecast(peaks, settings.horizon // HOUR, season=24)
    p = replace(
        p,
        times=tuple(end + HOUR * i for i in range(len(result.point))),
        point=tuple(result.point.tolist()),
        upper=tuple(result.upper.tolist()),
        weights=dict(result.weights),
    )
    if hpa is None:
        p = replace(p, note="the HPA is disabled; bursts matter to autoscaled workloads only")
    else:
        p = replace(p, target_cpu=hpa.target_cpu, current_floor=hpa.floor, current_max=hpa.ceiling)
        try:
            cpu = _read(ctx, "cpu", service, env, start, end, settings.step)
            replicas = _read(ctx, "replicas", service, env, start, end, settings.step)
            capacity = _pod_capacity(demand, cpu, replicas)
        except SourceError as e:  # SourceUnavailableError is not one: a source down propagates
            p = replace(p, note=f"cannot size one pod: {e}")
        else:
            if capacity is None:
                p = replace(p, note="cannot size one pod: no samples of demand, cpu and replicas")
            else:
                lag = -(-settings.pod_start // settings.step) + 1
                rises = _step_rises(demand, lag=lag).reshape(len(peaks), -1)
                found = _windows(now, end, result, peaks, rises, capacity, hpa, settings)
                timely = [w.needed_floor for w in found if not w.late]
                p = replace(
                    p,
                    pod_capacity_rps=capacity,
                    windows=tuple(found),
                    needed_floor=max([hpa.floor, *timely]),
                )
    return replace(p, graph=_graph(p, demand, settings.step))


def _hourly_peaks(values: FloatArray, per_hour: int) -> FloatArray:
    """The highest sample of each hour; NaN for hours with fewer than half their samples."""
    grid = values.reshape(-1, per_hour)
    finite = np.isfinite(grid)
    peaks = np.where(finite, grid, -np.inf).max(axis=1)
    return np.where(finite.sum(axis=1) * 2 >= per_hour, peaks, np.nan)


def _step_rises(values: FloatArray, *, lag: int) -> FloatArray:
    """At each sample s, how far demand rose and stayed: the lowest of the `lag` samples
    from s on over the highest of the `lag` samples ending `lag` before s, minus 1.

    With lag = pod_start/step + 1 this is a rise that happens faster than new pods start
    and lasts at least as long, which the pods already running must carry alone. Taking
    the low side after and the high side before keeps one noisy sample from counting.
    NaN where a window has no sample or the level before is not positive.
    """
    out = np.full(len(values), np.nan)
    if len(values) < 3 * lag:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values, lag)
    finite = np.isfinite(windows)
    some = finite.any(axis=1)  # a missing sample narrows a window; an empty one drops out
    low = np.where(some, np.where(finite, windows, np.inf).min(axis=1), np.nan)
    high = np.where(some, np.where(finite, windows, -np.inf).max(axis=1), np.nan)
    at = np.arange(2 * lag - 1, len(values) - lag + 1)
    after, before = low[at], high[at - 2 * lag + 1]
    ok = np.isfinite(after) & np.isfinite(before) & (before > 0)
    out[at[ok]] = after[ok] / before[ok] - 1.0
    return out


def _pod_capacity(demand: FloatArray, cpu: FloatArray, replicas: FloatArray) -> float | None:
    """Demand one pod serves at 100 % CPU: the median of demand / (replicas · cpu/100)."""
    busy = np.isfinite(demand) & np.isfinite(cpu) & np.isfinite(replicas)
    busy &= (cpu > 1.0) & (replicas > 0) & (demand > 0)
    if not busy.any():
        return None
    return float(np.median(demand[busy] / (replicas[busy] * cpu[busy] / 100.0)))


def _windows(
    now: datetime,
    first: datetime,
    result: Forecast,
    peaks: FloatArray,
    rises: FloatArray,
    capacity: float,
    hpa: _Hpa,
    settings: BurstPredictorSettings,
) -> list[BurstWindow]:
    """Burst hours of the forecast starting at `first`, consecutive ones merged."""
    point, upper = result.point, result.upper
    at_target = capacity * hpa.target_cpu / 100.0
    lift = 1.0 + settings.min_lift_pct / 100.0
    last = peaks[-1] if math.isfinite(peaks[-1]) else point[0]
    before = np.concatenate([[last], point[:-1]])
    windows: list[BurstWindow] = []
    for i in range(len(point)):
        # Not capped by max: a max too low for the ordinary traffic is a capacity problem
        # (saturated before the window too), not a burst; the floor would not help it.
        pods = max(hpa.floor, math.ceil(before[i] / at_target - _EPSILON))
        seen, observed, past_lift = _recurrence(rises, peaks, len(peaks) + i, lift - 1.0)
        if seen < max(MIN_WEEKS_SEEN, settings.recurrence * observed):
            continue  # a ramp the HPA follows, or a one-off the history will not repeat
        # Blending smooths a burst that one holiday week lacked; the hour before times the
        # rise the past bursts showed is then the better guess of the peak.
        peak = max(float(point[i]), float(before[i]) * past_lift)
        if peak < before[i] * lift:
            continue  # no rise worth the name over the hour before
        sized = peak * (1.0 + settings.headroom)
        if sized <= pods * capacity:
            continue  # the pods already running carry it while new ones start
        needed = min(math.ceil(sized / at_target - _EPSILON), settings.max_floor)
        start = first + HOUR * i
        previous = windows[-1] if windows else None
        if previous is not None and previous.end == start:
            windows[-1] = replace(
                previous,
                end=start + HOUR,
                peak_rps=max(previous.peak_rps, peak),
                forecast_rps=max(previous.forecast_rps, float(point[i])),
                planned_rps=max(previous.planned_rps, sized),
                upper_rps=max(previous.upper_rps, float(upper[i])),
                needed_floor=max(previous.needed_floor, needed),
                weeks_seen=max(previous.weeks_seen, seen),
                weeks_observed=max(previous.weeks_observed, observed),
            )
            continue
        ready_by = start - settings.pod_start
        windows.append(
            BurstWindow(
                start=start,
                end=start + HOUR,
                peak_rps=peak,
                forecast_rps=float(point[i]),
                past_lift=past_lift,
                planned_rps=sized,
                upper_rps=float(upper[i]),
                before_rps=float(before[i]),
                pods_before=pods,
                capacity_before_rps=pods * capacity,
                needed_floor=needed,
                weeks_seen=seen,
                weeks_observed=observed,
                ready_by=ready_by,
                late=ready_by - settings.lead < now,
            )
        )
    return windows


def _recurrence(
    rises: FloatArray, peaks: FloatArray, hour: int, lift: float
) -> tuple[int, int, float]:
    """At `hour`'s hour of the week in the history: weeks with a rise ≥ lift, weeks
    observed, and the median of peak / peak of the hour before in the weeks with the rise."""
    seen = observed = 0
    ratios: list[float] = []
    for past in range(hour - WEEK_HOURS, -1, -WEEK_HOURS):
        row = rises[past]
        finite = row[np.isfinite(row)]
        if finite.size * 2 < len(row):
            continue
        observed += 1
        if finite.max() >= lift:
            seen += 1
            if past > 0 and peaks[past - 1] > 0:  # NaN compares False
                ratios.append(float(peaks[past] / peaks[past - 1]))
    return seen, observed, float(np.median(ratios)) if ratios else 1.0


def _graph(p: Prediction, demand: FloatArray, step: timedelta) -> Graph:
    """The last three days of demand, the forecast with its upper band, the windows shaded."""
    count = min(len(demand), GRAPH_HISTORY // step)
    first = p.origin - step * count
    history = Line(
        label=f"{p.signal}, every {step.total_seconds() / 60:g} min",
        times=tuple(first + step * i for i in range(count)),
        values=tuple(demand[len(demand) - count :].tolist()),
    )
    middle = tuple(t + HOUR / 2 for t in p.times)  # an hour's peak, drawn mid-hour
    lines = [
        history,
        Line(label="forecast (hourly peak)", times=middle, values=p.point, style="--"),
        Line(label="upper band", times=middle, values=p.upper, style=":"),
    ]
    if p.raises_floor and p.needed_floor is not None and p.pod_capacity_rps and p.target_cpu:
        serves = p.needed_floor * p.pod_capacity_rps * p.target_cpu / 100.0
        lines.append(
            Line(
                label=f"{p.needed_floor} pods at {p.target_cpu:g} % CPU",
                times=(p.times[0], p.times[-1] + HOUR),
                values=(serves, serves),
                style=":",
            )
        )
    return Graph(
        title=f"{p.service}/{p.env}: {p.signal}, next {len(p.times)} h",
        unit="requests/s" if p.signal == "requests" else p.signal,
        lines=tuple(lines),
        spans=tuple(Span(label=f"burst {w.label()}", start=w.start, end=w.end) for w in p.windows),
    )


def _read(
    ctx: AgentContext,
    signal: str,
    service: str,
    env: str,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> FloatArray:
    values = ctx.metrics.series(signal, service, env, start=start, end=end, step=step).values
    wanted = (end - start) // step
    if len(values) != wanted:
        raise SourceError(f"{signal} of {service}/{env}: {len(values)} samples for {wanted} slots")
    return np.asarray(values, dtype=np.float64)


def hpa_knobs(values: Mapping[str, Scalar]) -> _Hpa | None:
    """The HPA's knobs, or None when it is disabled; ValueError when they cannot be read."""
    enabled = values.get("hpa_enabled", False)
    if isinstance(enabled, str):
        enabled = enabled.strip().lower() in ("true", "yes", "on", "1")
    if not enabled:
        return None
    floor, ceiling = _whole(values, "min_replicas"), _whole(values, "max_replicas")
    target = float(_whole(values, "target_cpu"))
    if floor < 1 or ceiling < floor or not 1 <= target <= 1000:
        raise ValueError(f"min {floor}, max {ceiling}, target {target:g} % do not make an HPA")
    return _Hpa(floor=floor, ceiling=ceiling, target_cpu=target)


def _whole(values: Mapping[str, Scalar], knob: str) -> int:
    value = values.get(knob)
    if value is None or isinstance(value, bool):
        raise ValueError(f"{knob} is {'missing' if value is None else value!r}")
    try:
        return int(float(value))
    except ValueError as e:
        raise ValueError(f"{knob} is not a number: {value!r}") from e


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
