"""An ArgoCD stand-in for the demo: applies the GitOps repo's merged values to the simulation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.sim.cluster import SimulatedCluster
from agents.sim.workload import HEALTHY, SimulationError, WorkloadSpec
from approval_engine.deploy import AppStatus
from approval_engine.errors import BackendError, TargetError
from approval_engine.model import Scalar
from approval_engine.targets import Targets

# (path, ref) → text at that revision
ReadAt = Callable[[str, str], str]


@dataclass
class _Synced:
    revision: str
    spec: WorkloadSpec | None  # None for targets without pods (databases)


def _millicores(value: Scalar) -> int:
    text = str(value).strip()
    if text.endswith("m"):
        return int(float(text[:-1]))
    return int(float(text) * 1000)


def spec_from_knobs(knobs: dict[str, Scalar]) -> WorkloadSpec:
    """Turn the knobs config/targets.yaml names into what the simulation runs."""
    return WorkloadSpec(
        replicas=int(knobs.get("replicas", 1)),
        hpa_enabled=bool(knobs.get("hpa_enabled", False)),
        min_replicas=int(knobs.get("min_replicas", 1)),
        max_replicas=int(knobs.get("max_replicas", knobs.get("min_replicas", 1))),
        target_cpu_percent=int(knobs.get("target_cpu", 70)),
        cpu_request_millicores=_millicores(knobs.get("cpu_request", "250m")),
    )


class SimulatedArgoCD:
    """Syncs an app by reading its knobs at a revision and applying them to the simulated cluster.

    Like ArgoCD with automated sync, `sync_all` brings every app to the base branch's head;
    the real ArgoCD client (a later part) implements the same Deployer protocol.
    """

    label = "ArgoCD stand-in (simulation)"

    def __init__(self, *, cluster: SimulatedCluster, targets: Targets, read_at: ReadAt) -> None:
        self._cluster = cluster
        self._targets = targets
        self._read_at = read_at
        self._synced: dict[str, _Synced] = {}
        self._apps = {
            targets.app(service, env): (service, env)
            for service in targets.services()
            for env in targets.environments(service)
        }

    def apps(self) -> list[str]:
        return list(self._apps)

    def app_for(self, service: str, env: str) -> str:
        return self._targets.app(service, env)

    def sync(self, app: str, *, revision: str) -> None:
        service, env = self._locate(app)
        try:
            knobs = self._targets.read_all(
                service, env, read_file=lambda path: self._read_at(path, revision)
            )
            spec = None
            if self._targets.kind(service) == "workload":
                spec = spec_from_knobs(knobs)
                self._cluster.apply(service, env, spec)
        except (SimulationError, TargetError, ValueError) as e:
            raise BackendError(f"{app}: cannot apply revision {revision[:7]}: {e}") from e
        self._synced[app] = _Synced(revision=revision, spec=spec)

    def sync_all(self, *, revision: str) -> None:
        for app in self._apps:
            self.sync(app, revision=revision)

    def status(self, app: str) -> AppStatus:
        self._locate(app)
        synced = self._synced.get(app)
        if synced is None:
            return AppStatus(app=app, sync="OutOfSync", revision=None, health="Missing")
        # A rollout in the simulation completes at once; load-driven trouble shows in /status.
        return AppStatus(app=app, sync="Synced", revision=synced.revision, health=HEALTHY)

    def _locate(self, app: str) -> tuple[str, str]:
        if app not in self._apps:
            raise BackendError(f"no application {app!r} (known: {', '.join(sorted(self._apps))})")
        return self._apps[app]
