"""The simulated cluster seen as a MetricsSource, so every agent runs in `opsgate demo`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from agents.errors import SourceError
from agents.sim.cluster import SIGNALS, SimulatedCluster
from agents.sim.workload import SimulationError
from agents.sources.base import Series, grid_size

__all__ = ["SimulatedMetrics"]

DB_SIGNALS = ("db_connections",)


class SimulatedMetrics:
    """Workload signals from the simulation; `db_connections` for the simulated databases.

    `databases` maps a database target to its connections per environment: the demo's
    staging database sits idle (0 connections) so CostWatcher has something to find.
    """

    def __init__(
        self,
        cluster: SimulatedCluster,
        *,
        databases: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self._cluster = cluster
        self._databases = {k: dict(v) for k, v in (databases or {}).items()}

    @property
    def label(self) -> str:
        return self._cluster.label

    def signals(self) -> tuple[str, ...]:
        return SIGNALS + DB_SIGNALS

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
        if signal in DB_SIGNALS:
            return self._database(signal, service, env, start=start, end=end, step=step)
        try:
            points = self._cluster.series(signal, service, env, start=start, end=end, step=step)
        except SimulationError as e:
            raise SourceError(str(e)) from e
        values = np.array([v for _, v in points], dtype=np.float64)
        return Series(
            signal=signal, service=service, env=env, start=start, step=step, values=values
        )

    def _database(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        level = self._databases.get(service, {}).get(env)
        if level is None:
            raise SourceError(f"{service}/{env} is not a simulated database")
        if step <= timedelta(0):
            raise SourceError(f"step must be positive, got {step}")
        count = grid_size(start, end, step)
        return Series(
            signal=signal,
            service=service,
            env=env,
            start=start,
            step=step,
            values=np.full(count, float(level)),
        )


def demo_databases(
    names: Sequence[str], environments: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Idle in every non-production environment, busy in production."""
    return {
        name: {env: (0.0 if env not in ("prod", "production") else 42.0) for env in environments}
        for name in names
    }
