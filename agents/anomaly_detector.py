"""AnomalyDetector: page once when a watched signal leaves its recent behaviour, close when calm.

Every run re-scores the `lookback` of each series (workload × environment × signal) with a
fresh streaming detector (agents.analysis.anomaly, the parameter set benchmarked on NAB) and
judges only the rows that arrived since the previous run, never older than `clear_after`.
A row scoring at least `threshold` opens an anomaly or extends the open one; an anomaly
whose last such row is `clear_after` old is over. The agent's memory holds the open
anomalies (`anomaly:<service>/<env>/<signal>`, also the finding's key, so the notifier
pages once per anomaly) and the newest row judged (`judged:…`).

Re-scoring instead of keeping detector state between runs: the runner builds a new agent
for every run, and a run costs about 0.3 s per series at the defaults (3168 rows), far
below the 2-minute timeout for a few dozen series.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import (
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from agents.analysis.anomaly import AnomalyDetector as StreamingDetector
from agents.analysis.anomaly import AnomalyParams
from agents.base import Agent, AgentContext, AgentSettings, Finding
from agents.errors import SourceError
from agents.graphs import Graph, Line, Span
from agents.registry import registry
from agents.sources.base import Series
from approval_engine.config import Duration, format_duration

__all__ = [
    "DETECTOR_PARAMS",
    "NAB_STANDARD_THRESHOLD",
    "Anomaly",
    "AnomalyDetector",
    "AnomalyDetectorSettings",
    "Tracked",
    "current_anomalies",
    "score_series",
    "track",
]

FloatArray = npt.NDArray[np.float64]

DETECTOR_PARAMS = AnomalyParams()
"""The detector's one parameter set: the defaults, which benchmarks/nab.py scores on NAB."""

NAB_STANDARD_THRESHOLD = 0.117045
"""θ that benchmarks/nab_score.py picks for NAB's standard profile on nab-dev with
DETECTOR_PARAMS (normalised score 73.48). The sweep's exact value is 0.11704506…; no NAB
score lies between the two, so both detect the same rows."""

# Fewer rows leave the detector judging against a day or two; more are wasted work, since
# no row older than memory + baseline_rows + refractory (5200) moves the newest score.
MIN_ROWS = 4 * DETECTOR_PARAMS.warmup
MAX_ROWS = 10_000
ANOMALY_PREFIX = "anomaly:"
JUDGED_PREFIX = "judged:"
GRAPH_SPAN = timedelta(days=1)
_DAY = timedelta(days=1)
USUAL_DAYS = 7
_USUAL_HALF_WIDTH = timedelta(minutes=30)
_MIN_USUAL_SAMPLES = 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How each known signal is shown: unit, and the factor from the stored value to it.
_UNITS: dict[str, tuple[str, float]] = {
    "requests": ("req/s", 1.0),
    "latency_p95": ("ms", 1.0),
    "error_ratio": ("%", 100.0),
    "cpu": ("% of request", 1.0),
    "replicas": ("pods", 1.0),
    "desired_replicas": ("pods", 1.0),
    "db_connections": ("connections", 1.0),
}

SignalName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
SeriesId = tuple[str, str, str]  # service, env, signal


class AnomalyDetectorSettings(AgentSettings):
    signals: tuple[SignalName, ...] = Field(
        default=("requests", "latency_p95", "error_ratio"),
        min_length=1,
        description="signals watched for every workload and environment",
    )
    step: Duration = Field(
        default=timedelta(minutes=5),
        ge=timedelta(minutes=1),
        le=timedelta(hours=1),
        description="sampling step; the detector counts rows, and was benchmarked on 5m data",
    )
    lookback: Duration = Field(
        # 11 days at 5m is 3168 rows: the detector's 3000-row memory full after its 150-row
        # warm-up, so the rows judged are scored against all the history it can hold.
        default=timedelta(days=11),
        description=f"history re-scored each run, {MIN_ROWS} to {MAX_ROWS} steps long",
    )
    threshold: float = Field(
        default=NAB_STANDARD_THRESHOLD,
        gt=0.0,
        le=1.0,
        description=(
            "a row scoring at least this is anomalous; the default is the θ of NAB's "
            "standard profile (benchmarks/nab_score.py); its low-FP profile picks 0.236"
        ),
    )
    clear_after: Duration = Field(
        default=timedelta(hours=1),
        description="an anomaly is over after this long without a score above the threshold",
    )

    @field_validator("signals")
    @classmethod
    def _distinct(cls, signals: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(signals)) != len(signals):
            raise ValueError("lists a signal twice")
        return signals

    @field_validator("lookback")
    @classmethod
    def _rows(cls, lookback: timedelta, info: ValidationInfo) -> timedelta:
        step = info.data.get("step")
        if step is not None and not MIN_ROWS <= lookback // step <= MAX_ROWS:
            raise ValueError(
                f"must hold {MIN_ROWS} to {MAX_ROWS} steps of {step}, "
                f"not {lookback // step} (the detector scores its first "
                f"{DETECTOR_PARAMS.warmup} rows 0)"
            )
        return lookback

    @field_validator("clear_after")
    @classmethod
    def _clear_within(cls, clear_after: timedelta, info: ValidationInfo) -> timedelta:
        step, lookback = info.data.get("step"), info.data.get("lookback")
        if step is not None and clear_after < step:
            raise ValueError(f"must be at least one step ({step})")
        if lookback is not None and clear_after >= lookback:
            raise ValueError(f"must be shorter than the lookback ({lookback})")
        return clear_after


@dataclass(frozen=True, kw_only=True)
class Anomaly:
    """One open anomaly of one signal, as the agent's memory keeps it between runs."""

    service: str
    env: str
    signal: str
    started: datetime  # the first row that scored at least the threshold
    last_seen: datetime  # the latest such row
    peak_score: float
    peak_at: datetime
    peak_value: float
    latest_value: float | None  # the newest row when it was last judged, if observed
    usual: tuple[float, float] | None  # 5th-95th percentile before it started
    usual_basis: str  # what `usual` was taken over, for the reader

    @property
    def key(self) -> str:
        return anomaly_key((self.service, self.env, self.signal))

    def describe(self) -> str:
        """What happened, in a sentence or three: the finding's detail and /anomaly's line."""
        peak = _show(self.signal, self.peak_value)
        text = (
            f"{self.signal} of {self.service}/{self.env} has been anomalous since "
            f"{_at(self.started)}. It reached {peak} at {_at(self.peak_at)}"
        )
        if self.usual is None:
            text += "; there is too little history for a usual range."
        else:
            low, high = self.usual
            where = (
                "above" if self.peak_value > high else "below" if self.peak_value < low else "in"
            )
            text += (
                f", {where} its usual {_show(self.signal, low, unit=False)}–"
                f"{_show(self.signal, high)} ({self.usual_basis})."
            )
        latest = "missing" if self.latest_value is None else _show(self.signal, self.latest_value)
        return f"{text} Latest value: {latest}."

    def to_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = _RECORD.dump_python(self, mode="json")
        return stored

    @classmethod
    def from_json(cls, data: Any) -> Anomaly | None:
        """The record as stored, or None when it is not one (an older layout, say)."""
        try:
            return _RECORD.validate_python(data)
        except ValidationError:
            return None


_RECORD = TypeAdapter(Anomaly)


@dataclass(frozen=True)
class Tracked:
    """What `track` made of the judged rows: anomalies that ended, and the one still open."""

    ended: tuple[Anomaly, ...]
    open: Anomaly | None


def anomaly_key(series: SeriesId) -> str:
    service, env, signal = series
    return f"{ANOMALY_PREFIX}{service}/{env}/{signal}"


def score_series(series: Series) -> FloatArray:
    """Anomaly scores of every row, by one fresh detector reading the series in order."""
    detector = StreamingDetector(DETECTOR_PARAMS)
    first = (series.start - _origin(series.start)).total_seconds()
    step = series.step.total_seconds()
    return np.array(
        [detector.update(first + i * step, v) for i, v in enumerate(series.values.tolist())],
        dtype=np.float64,
    )


def track(
    anomaly: Anomaly | None,
    series: Series,
    scores: FloatArray,
    *,
    since: datetime,
    now: datetime,
    settings: AnomalyDetectorSettings,
) -> Tracked:
    """Judge the rows after `since`: open, extend and close anomalies in time order.

    Missing rows never count. The anomaly still open at `now` has its latest value set.
    """
    values = series.values
    first = max(0, (since - series.start) // series.step + 1)
    alarmed = (scores[first:] >= settings.threshold) & np.isfinite(values[first:])
    ended: list[Anomaly] = []
    for i in (np.flatnonzero(alarmed) + first).tolist():
        at = series.start + series.step * i
        if anomaly is not None and at - anomaly.last_seen >= settings.clear_after:
            ended.append(anomaly)
            anomaly = None
        if anomaly is None:
            anomaly = _opened(series, i, float(scores[i]))
        elif scores[i] > anomaly.peak_score:
            anomaly = replace(
                anomaly,
                last_seen=at,
                peak_score=float(scores[i]),
                peak_at=at,
                peak_value=float(values[i]),
            )
        else:
            anomaly = replace(anomaly, last_seen=at)
    if anomaly is not None:
        latest = float(values[-1]) if len(values) else math.nan
        anomaly = replace(anomaly, latest_value=latest if math.isfinite(latest) else None)
        if now - anomaly.last_seen >= settings.clear_after:
            ended.append(anomaly)
            anomaly = None
    return Tracked(ended=tuple(ended), open=anomaly)


def current_anomalies(ctx: AgentContext, settings: AnomalyDetectorSettings) -> list[Anomaly]:
    """The open anomalies as the latest run left them in memory, newest first (/anomaly).

    One whose last high score is `clear_after` old at `ctx.now` is over, even if no run has
    said so yet (the agent may be degraded).
    """
    found = []
    for key in ctx.memory.keys(ANOMALY_PREFIX):
        anomaly = Anomaly.from_json(ctx.memory.get(key))
        if anomaly is not None and ctx.now - anomaly.last_seen < settings.clear_after:
            found.append(anomaly)
    return sorted(found, key=lambda a: (a.started, a.key), reverse=True)


@registry.agent(name="AnomalyDetector", settings=AnomalyDetectorSettings, every="5m", timeout="2m")
class AnomalyDetector(Agent[AnomalyDetectorSettings]):
    """Finds signals behaving unlike their recent past; one finding per anomaly while it lasts."""

    proposes = False

    def analyze(self, ctx: AgentContext) -> list[Finding]:
        s = self.settings
        end = _grid_end(ctx.now, s.step)
        start = end - s.step * (s.lookback // s.step)
        # Every read first: a source that is down fails the run before memory changes.
        read = {
            sid: _read(ctx, sid, start=start, end=end, step=s.step)
            for sid in _watched(ctx, s.signals)
        }
        for sid, series in read.items():
            self._judge(ctx, sid, series)
        for key in ctx.memory.keys(ANOMALY_PREFIX):
            over = Anomaly.from_json(ctx.memory.get(key))
            if over is None or ctx.now - over.last_seen >= s.clear_after:
                ctx.memory.delete(key)
        return [
            self._finding(a, read[(a.service, a.env, a.signal)], ctx.now)
            for a in current_anomalies(ctx, s)
            if (a.service, a.env, a.signal) in read
        ]

    def _judge(self, ctx: AgentContext, sid: SeriesId, series: Series) -> None:
        s = self.settings
        key = anomaly_key(sid)
        judged_key = JUDGED_PREFIX + key.removeprefix(ANOMALY_PREFIX)
        since = ctx.now - s.clear_after
        judged = _time(ctx.memory.get(judged_key))
        if judged is not None:
            since = max(since, judged)
        was_open = Anomaly.from_json(ctx.memory.get(key))
        tracked = track(
            was_open, series, score_series(series), since=since, now=ctx.now, settings=s
        )
        if tracked.open is None:
            ctx.memory.delete(key)
        else:
            ctx.memory.put(key, tracked.open.to_json())
        if len(series):
            ctx.memory.put(judged_key, (series.end - series.step).isoformat())

    def _finding(self, anomaly: Anomaly, series: Series, now: datetime) -> Finding:
        s = self.settings
        return Finding(
            agent=self.name,
            key=anomaly.key,
            severity="warning",
            title=f"Anomaly in {anomaly.signal} of {anomaly.service}/{anomaly.env}",
            detail=anomaly.describe(),
            service=anomaly.service,
            env=anomaly.env,
            evidence=(
                f"peak anomaly score {anomaly.peak_score:.2f} at {_at(anomaly.peak_at)} "
                f"(threshold {s.threshold:g})",
                f"last score above the threshold at {_at(anomaly.last_seen)}; "
                f"over after {format_duration(s.clear_after)} without one",
            ),
            score=anomaly.peak_score,
            graph=_graph(anomaly, series, now),
        )


def _watched(ctx: AgentContext, signals: tuple[str, ...]) -> Iterator[SeriesId]:
    for service in ctx.workloads:
        for env in ctx.targets.environments(service):
            for signal in signals:
                yield service, env, signal


def _read(
    ctx: AgentContext, sid: SeriesId, *, start: datetime, end: datetime, step: timedelta
) -> Series:
    service, env, signal = sid
    try:
        series = ctx.metrics.series(signal, service, env, start=start, end=end, step=step)
    except SourceError as e:
        raise SourceError(
            f"AnomalyDetector cannot read {signal} of {service}/{env}: {e} "
            "(check its `signals` setting)"
        ) from e
    expected = (end - start) // step
    if len(series) != expected or series.start != start or series.step != step:
        raise SourceError(
            f"{ctx.metrics.label} answered {len(series)} samples from {series.start} "
            f"for {signal} of {service}/{env}; asked for {expected} from {start}"
        )
    return series


def _opened(series: Series, i: int, score: float) -> Anomaly:
    at = series.start + series.step * i
    value = float(series.values[i])
    usual, basis = _usual_range(series, i)
    return Anomaly(
        service=series.service,
        env=series.env,
        signal=series.signal,
        started=at,
        last_seen=at,
        peak_score=score,
        peak_at=at,
        peak_value=value,
        latest_value=value,
        usual=usual,
        usual_basis=basis,
    )


def _usual_range(series: Series, i: int) -> tuple[tuple[float, float] | None, str]:
    """5th-95th percentile of the same time of day (±30 min) on the days before row i.

    Falls back to every row before i when too few of those were observed.
    """
    before = series.values[:i]
    ago = (i - np.arange(i)) * series.step.total_seconds()
    day = _DAY.total_seconds()
    phase = np.minimum(ago % day, day - ago % day)
    same_time = (
        (phase <= _USUAL_HALF_WIDTH.total_seconds())
        & (ago >= day / 2)
        & (ago <= USUAL_DAYS * day + _USUAL_HALF_WIDTH.total_seconds())
        & np.isfinite(before)
    )
    if same_time.sum() >= _MIN_USUAL_SAMPLES:
        chosen, basis = before[same_time], f"that time of day over the previous {USUAL_DAYS} days"
    else:
        chosen = before[np.isfinite(before)]
        basis = f"the {series.step * i / _DAY:.1f} days before"
        if len(chosen) < _MIN_USUAL_SAMPLES:
            return None, "no history"
    low, high = np.percentile(chosen, [5.0, 95.0])
    return (float(low), float(high)), basis


def _graph(anomaly: Anomaly, series: Series, now: datetime) -> Graph:
    """The signal over the last day, the anomaly shaded from its start to now."""
    unit, scale = _UNITS.get(anomaly.signal, ("", 1.0))
    first = max(0, -(-(now - GRAPH_SPAN - series.start) // series.step))
    times = tuple(series.start + series.step * i for i in range(first, len(series)))
    values = tuple(float(v) * scale for v in series.values[first:].tolist())
    return Graph(
        title=f"{anomaly.signal} of {anomaly.service}/{anomaly.env}",
        unit=unit,
        lines=(Line(label=anomaly.signal, times=times, values=values),),
        spans=(Span(label="anomaly", start=anomaly.started, end=now),),
    )


def _grid_end(now: datetime, step: timedelta) -> datetime:
    """The end of a grid aligned to the epoch whose last row is the newest at or before now."""
    origin = _origin(now)
    return origin + step * ((now - origin) // step + 1)


def _origin(t: datetime) -> datetime:
    """The epoch, naive when `t` is (wall-clock times are taken as UTC)."""
    return _EPOCH if t.tzinfo is not None else _EPOCH.replace(tzinfo=None)


def _at(t: datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _show(signal: str, value: float, *, unit: bool = True) -> str:
    name, scale = _UNITS.get(signal, ("", 1.0))
    v = value * scale
    if abs(v) >= 100:
        text = f"{v:,.0f}"
    elif abs(v) >= 10:
        text = f"{v:.1f}"
    elif abs(v) >= 0.01 or v == 0:
        text = f"{v:.2f}"
    else:
        text = f"{v:.2g}"
    return f"{text} {name}" if unit and name else text


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
