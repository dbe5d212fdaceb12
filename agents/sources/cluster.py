"""The read-only view of workloads that /status and agents use; the simulation implements it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from agents.sim.workload import WorkloadStatus


class ClusterSource(Protocol):
    @property
    def label(self) -> str: ...

    def status(self, service: str, env: str, *, at: datetime | None = None) -> WorkloadStatus: ...
