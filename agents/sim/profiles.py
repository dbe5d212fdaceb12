"""Per-service and per-environment constants of the simulation: size, cost and default knobs."""

from __future__ import annotations

from dataclasses import dataclass

from agents.sim.noise import stream_key
from agents.sim.workload import WorkloadSpec

__all__ = [
    "PRODUCTION_ENVS",
    "ServiceProfile",
    "default_spec",
    "environment_scale",
    "is_production",
    "service_profile",
]


@dataclass(frozen=True)
class ServiceProfile:
    """How one service behaves.

    `base_rps` is the production mean over a mid-year weekday. `cpu_millicore_seconds_per_request`
    ties load to CPU: a pod with request R millicores at U % serves R * U / 100 / cost requests
    per second (checkout: 500m at 70 % / 14 = 25 rps).
    """

    base_rps: float
    weekend_factor: float
    cpu_millicore_seconds_per_request: float
    latency_p95_ms: float
    prod_spec: WorkloadSpec


_PROFILES: dict[str, ServiceProfile] = {
    "checkout": ServiceProfile(
        base_rps=120.0,
        weekend_factor=0.6,
        cpu_millicore_seconds_per_request=14.0,
        latency_p95_ms=180.0,
        prod_spec=WorkloadSpec(
            replicas=3,
            hpa_enabled=True,
            min_replicas=3,
            max_replicas=12,
            target_cpu_percent=70,
            cpu_request_millicores=500,
        ),
    ),
    "cart": ServiceProfile(
        base_rps=80.0,
        weekend_factor=0.6,
        cpu_millicore_seconds_per_request=6.0,
        latency_p95_ms=60.0,
        prod_spec=WorkloadSpec(
            replicas=2,
            hpa_enabled=True,
            min_replicas=2,
            max_replicas=10,
            target_cpu_percent=70,
            cpu_request_millicores=250,
        ),
    ),
    "search": ServiceProfile(
        base_rps=200.0,
        weekend_factor=0.85,
        cpu_millicore_seconds_per_request=17.5,
        latency_p95_ms=120.0,
        prod_spec=WorkloadSpec(
            replicas=4,
            hpa_enabled=True,
            min_replicas=4,
            max_replicas=20,
            target_cpu_percent=70,
            cpu_request_millicores=1000,
        ),
    ),
}

PRODUCTION_ENVS = ("prod", "production")
_ENV_SCALE = {
    "prod": 1.0,
    "production": 1.0,
    "staging": 0.1,
    "stage": 0.1,
    "dev": 0.02,
    "development": 0.02,
}
_OTHER_ENV_SCALE = 0.05


def service_profile(service: str) -> ServiceProfile:
    """The profile of a known service, or a plausible one derived from the name for any other."""
    known = _PROFILES.get(service)
    if known is not None:
        return known
    # Seed-independent on purpose: a service keeps its size whatever the demo's seed.
    draw = stream_key(0, "profile", service)
    base = 30.0 + (draw % 121)
    weekend = 0.6 + ((draw >> 8) % 31) / 100
    return ServiceProfile(
        base_rps=base,
        weekend_factor=weekend,
        cpu_millicore_seconds_per_request=10.0,
        latency_p95_ms=100.0,
        prod_spec=WorkloadSpec(
            replicas=2,
            hpa_enabled=True,
            min_replicas=2,
            max_replicas=10,
            target_cpu_percent=70,
            cpu_request_millicores=500,
        ),
    )


def environment_scale(env: str) -> float:
    """Traffic of an environment relative to production (staging is about 10 %)."""
    return _ENV_SCALE.get(env, _OTHER_ENV_SCALE)


def is_production(env: str) -> bool:
    return env in PRODUCTION_ENVS


def default_spec(service: str, env: str) -> WorkloadSpec:
    """What runs before anything was applied: the production knobs, or one small pod elsewhere."""
    prod = service_profile(service).prod_spec
    if is_production(env):
        return prod
    return WorkloadSpec(
        replicas=1,
        hpa_enabled=True,
        min_replicas=1,
        max_replicas=3,
        target_cpu_percent=prod.target_cpu_percent,
        cpu_request_millicores=prod.cpu_request_millicores,
    )
