"""The dashboard panels the demo's simulation can draw: each line mapped to a named signal.

The simulation has no PromQL, so a panel is drawn from the signals its queries stand for
(`request-rate`'s now / last week lines are the `requests` signal now and a week back), and
HPA bounds and targets from the knobs on the base branch. Panels about pods, alerts or opsgate
itself have no simulated counterpart; `lines_for` returns None for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from agents.graphs import Line
from agents.sources.base import FloatArray, MetricsSource
from approval_engine.model import Scalar

__all__ = ["PER_DATABASE", "SIMULATED_PANELS", "SimLine", "lines_for"]

WEEK = timedelta(weeks=1)
# Panels with one line per database of the environment rather than one service's lines.
PER_DATABASE = frozenset({"db-connections"})


@dataclass(frozen=True)
class SimLine:
    """A signal `offset` back in time (divided by itself `over` back, for a ratio), or a knob."""

    legend: str
    signal: str = ""
    offset: timedelta = timedelta(0)
    over: timedelta | None = None
    knob: str = ""  # a flat line at the knob's current value
    style: str = "-"


SIMULATED_PANELS: dict[str, tuple[SimLine, ...]] = {
    "request-rate": (
        SimLine("now", "requests"),
        SimLine("same time last week", "requests", offset=WEEK, style="--"),
        SimLine(
            "last week, 1h ahead (forecast)",
            "requests",
            offset=WEEK - timedelta(hours=1),
            style=":",
        ),
    ),
    "burst-ratio": (SimLine("now / last week", "requests", over=WEEK),),
    "cpu-utilization": (
        SimLine("CPU % of request", "cpu"),
        SimLine("HPA target", knob="target_cpu", style=":"),
    ),
    "replicas": (
        SimLine("ready", "replicas"),
        SimLine("desired", "desired_replicas", style="--"),
        SimLine("min", knob="min_replicas", style=":"),
        SimLine("max", knob="max_replicas", style=":"),
    ),
    "latency-p95": (SimLine("p95", "latency_p95"),),
    "error-ratio": (SimLine("5xx ratio", "error_ratio"),),
    "db-connections": (SimLine("{service}", "db_connections"),),
}


def lines_for(
    slug: str,
    metrics: MetricsSource,
    *,
    services: Sequence[str],
    env: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    knobs: Callable[[str], dict[str, Scalar]],
) -> list[Line] | None:
    """The panel's lines for `services` in `env` (one service, or every database for
    db-connections); None when the simulation cannot draw the panel."""
    mapped = SIMULATED_PANELS.get(slug)
    if mapped is None:
        return None
    lines: list[Line] = []
    for service in services:
        for sim in mapped:
            label = sim.legend.format(service=service)
            if sim.knob:
                value = knobs(service).get(sim.knob)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    flat = (float(value),) * 2
                    lines.append(Line(label, (start, end), flat, style=sim.style))
                continue
            values = _values(metrics, sim.signal, service, env, start, end, step, sim.offset)
            if sim.over is not None:
                before = _values(metrics, sim.signal, service, env, start, end, step, sim.over)
                with np.errstate(divide="ignore", invalid="ignore"):
                    values = np.where(before > 0, values / before, np.nan)
            times = tuple(start + step * i for i in range(len(values)))
            lines.append(
                Line(
                    label,
                    times,
                    tuple(float(v) if math.isfinite(v) else math.nan for v in values),
                    style=sim.style,
                )
            )
    return lines


def _values(
    metrics: MetricsSource,
    signal: str,
    service: str,
    env: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    offset: timedelta,
) -> FloatArray:
    series = metrics.series(signal, service, env, start=start - offset, end=end - offset, step=step)
    return np.asarray(series.values, dtype=np.float64)
