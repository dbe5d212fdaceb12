"""What is deployed in the simulated cluster and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEGRADED", "HEALTHY", "SimulationError", "WorkloadSpec", "WorkloadStatus"]

HEALTHY = "Healthy"
DEGRADED = "Degraded"


class SimulationError(ValueError):
    """The simulation was asked something it cannot answer; the message says what to change."""


@dataclass(frozen=True)
class WorkloadSpec:
    """The knobs of one workload, as the Helm values / Terraform on the GitOps main branch set them.

    `replicas` is `replicaCount` and only counts while the HPA is disabled.
    """

    replicas: int
    hpa_enabled: bool
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int
    cpu_request_millicores: int

    def __post_init__(self) -> None:
        problems = []
        if self.replicas < 0:
            problems.append(f"replicas must be >= 0, got {self.replicas}")
        if self.min_replicas < 1:
            problems.append(f"min_replicas must be >= 1, got {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            problems.append(
                f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})"
            )
        if not 1 <= self.target_cpu_percent <= 1000:
            problems.append(f"target_cpu_percent must be 1..1000, got {self.target_cpu_percent}")
        if self.cpu_request_millicores < 1:
            problems.append(
                f"cpu_request_millicores must be >= 1, got {self.cpu_request_millicores}"
            )
        if problems:
            raise SimulationError("invalid WorkloadSpec: " + "; ".join(problems))


@dataclass(frozen=True)
class WorkloadStatus:
    """What `kubectl get deploy,hpa` plus Prometheus would say about a workload at one minute.

    `cpu_percent` is the average CPU of the ready pods as a percentage of their request, the
    number the HPA acts on. It is the *offered* load, so it can exceed 100 when the pods cannot
    keep up; the shortfall shows as latency and errors. `health` is "Degraded" when requests
    fail (error ratio above 1 %) or the workload is saturated with no room left to scale.
    """

    service: str
    env: str
    spec: WorkloadSpec
    replicas: int
    desired_replicas: int
    load_rps: float
    cpu_percent: float
    latency_p95_ms: float
    error_ratio: float
    health: str
