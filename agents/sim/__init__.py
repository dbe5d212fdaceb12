"""A simulated cluster with weekly traffic for `opsgate demo`; no real Kubernetes or Prometheus.

SimulationError (a ValueError) is the one exception raised here: an unknown service,
environment or signal, a naive datetime, an invalid WorkloadSpec or an oversized query.
"""

from agents.sim.cluster import SIGNALS, SimulatedCluster
from agents.sim.traffic import EventWindow, TrafficEvent
from agents.sim.workload import DEGRADED, HEALTHY, SimulationError, WorkloadSpec, WorkloadStatus

__all__ = [
    "DEGRADED",
    "HEALTHY",
    "SIGNALS",
    "EventWindow",
    "SimulatedCluster",
    "SimulationError",
    "TrafficEvent",
    "WorkloadSpec",
    "WorkloadStatus",
]
