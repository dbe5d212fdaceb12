"""Run one agent on fixture data: in-memory sources, knobs and memory, no database, no servers.

metrics = ArrayMetrics()
metrics.add("requests", "checkout", "prod", start=t0, step=timedelta(minutes=5), values=v)
findings = run_once(BurstPredictor, metrics=metrics, knobs={("checkout", "prod"): {...}},
                    now=t0 + timedelta(days=21))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import Agent, AgentContext, Finding
from agents.errors import SourceError, SourceUnavailableError
from agents.registry import registry as default_registry
from agents.sources.base import CostRow, CostSource, Series, grid_size
from approval_engine.model import Scalar

__all__ = [
    "ArrayMetrics",
    "DictMemory",
    "DownMetrics",
    "ListCost",
    "StaticKnobs",
    "StaticTargets",
    "make_context",
    "run_once",
]


@dataclass
class _Stored:
    start: datetime
    step: timedelta
    values: npt.NDArray[np.float64]


class ArrayMetrics:
    """A MetricsSource over arrays given up front; answers any range by resampling to `step`."""

    label = "fixture metrics"

    def __init__(self) -> None:
        self._data: dict[tuple[str, str, str], _Stored] = {}

    def add(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        step: timedelta,
        values: npt.ArrayLike,
    ) -> None:
        self._data[(signal, service, env)] = _Stored(
            start=start, step=step, values=np.asarray(values, dtype=np.float64)
        )

    def signals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(signal for signal, _, _ in self._data))

    def series(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        if signal not in self.signals():
            raise SourceError(f"unknown signal {signal!r}")
        count = grid_size(start, end, step)
        values = np.full(count, np.nan)
        stored = self._data.get((signal, service, env))
        if stored is not None:
            for i in range(count):
                # The sample in force at that instant, as Prometheus's lookback would give it.
                index = (start + step * i - stored.start) // stored.step
                if 0 <= index < len(stored.values):
                    values[i] = stored.values[index]
        return Series(
            signal=signal, service=service, env=env, start=start, step=step, values=values
        )


class DownMetrics:
    """A MetricsSource whose backend is down: every read raises SourceUnavailableError."""

    label = "fixture metrics (down)"

    def signals(self) -> tuple[str, ...]:
        return ("requests",)

    def series(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        raise SourceUnavailableError("fixture metrics", "connection refused")


@dataclass
class ListCost:
    """A CostSource over fixed rows: `rows[group_by]` lists the rows of that grouping."""

    rows: dict[str, list[CostRow]] = field(default_factory=dict)
    label: str = "fixture bill"

    def daily_costs(self, *, start: date, end: date, group_by: str) -> list[CostRow]:
        return [r for r in self.rows.get(group_by, []) if start <= r.day < end]


@dataclass
class StaticKnobs:
    values: Mapping[tuple[str, str], Mapping[str, Scalar]] = field(default_factory=dict)

    def current_values(self, service: str, env: str) -> dict[str, Scalar]:
        return dict(self.values.get((service, env), {}))


@dataclass
class StaticTargets:
    """services → environments, and the knobs each service has."""

    envs: Mapping[str, Sequence[str]]
    knobs: Mapping[str, Iterable[str]] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)  # default "workload"

    def services(self) -> list[str]:
        return list(self.envs)

    def environments(self, service: str) -> list[str]:
        return list(self.envs[service])

    def has_knob(self, service: str, knob: str) -> bool:
        return knob in set(self.knobs.get(service, ()))

    def kind(self, service: str) -> str:
        return self.kinds.get(service, "workload")


@dataclass
class DictMemory:
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def make_context(
    *,
    now: datetime,
    metrics: Any,
    knobs: Mapping[tuple[str, str], Mapping[str, Scalar]] | None = None,
    targets: StaticTargets | None = None,
    memory: DictMemory | None = None,
    cost: CostSource | None = None,
    workloads: Sequence[str] | None = None,
) -> AgentContext:
    knobs = knobs or {}
    if targets is None:
        envs: dict[str, list[str]] = {}
        for service, env in knobs:
            envs.setdefault(service, []).append(env)
        targets = StaticTargets(
            envs=envs,
            knobs={s: [k for (s2, _), v in knobs.items() if s2 == s for k in v] for s in envs},
        )
    return AgentContext(
        now=now,
        metrics=metrics,
        targets=targets,
        knobs=StaticKnobs(knobs),
        memory=memory if memory is not None else DictMemory(),
        cost=cost,
        workloads=tuple(workloads if workloads is not None else targets.services()),
    )


def run_once(
    agent: type[Agent[Any]] | str,
    *,
    settings: Mapping[str, Any] | None = None,
    optimize: bool = False,
    **context: Any,
) -> list[Finding]:
    """Build the agent with `settings` (validated by its model) and run it once."""
    spec = default_registry.get(agent if isinstance(agent, str) else agent.name)
    instance = spec.build(spec.settings.model_validate(dict(settings or {})))
    ctx = make_context(**context)
    return instance.optimize(ctx) if optimize else instance.analyze(ctx)
