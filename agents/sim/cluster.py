"""A simulated cluster that `opsgate demo` watches instead of Kubernetes and Prometheus.

Nothing here talks to a real cluster. Every number is a pure function of (seed, service, env,
minute) and of the specs applied so far, so a series asked for in any order, in pieces, or
after a restart, repeats exactly. The wall clock is read only through the injected `clock`.

Replica counts depend on the recent past (the HPA's tolerance and stabilisation window, pods
starting). To stay a pure function of time the minutes are cut into fixed four-hour blocks;
each block is simulated from the steady state 30 minutes before it starts, far longer than
the HPA remembers (5 minutes) or pods take to start (3 minutes). Blocks are cached.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.sim.autoscaler import error_ratio, latency_p95_ms, simulate_replicas
from agents.sim.clock import to_micros, to_minute, utc_now
from agents.sim.noise import normal, stream_key
from agents.sim.profiles import default_spec, service_profile
from agents.sim.traffic import EventWindow, TrafficEvent, TrafficModel
from agents.sim.workload import DEGRADED, HEALTHY, SimulationError, WorkloadSpec, WorkloadStatus

__all__ = ["MAX_POINTS", "SIGNALS", "SimulatedCluster"]

SIGNALS = ("requests", "cpu", "replicas", "desired_replicas", "latency_p95", "error_ratio")
MAX_POINTS = 200_000
BLOCK_MINUTES = 240
WARMUP_MINUTES = 30
_CACHE_BLOCKS = 2048  # about 24 MB; two weeks of six workloads is ~500 blocks
_MICROS_PER_MINUTE = 60_000_000
_DEGRADED_ERROR_RATIO = 0.01
_SATURATED_CPU_PERCENT = 100.0

_Timeline = tuple[tuple[int, WorkloadSpec], ...]


@dataclass(frozen=True)
class _Block:
    """The signals of one block's minutes, keyed like SIGNALS."""

    signals: dict[str, NDArray[np.float64]]


class SimulatedCluster:
    """A simulated cluster: deployments with HPAs serving scripted traffic, not a real one.

    `apply()` deploys a spec from the current minute on (the simulation's resolution is one
    minute); before the first `apply()` of a workload its first applied spec, or else a
    default, is taken to have always been in place, so weeks of history exist from the start.
    """

    label: ClassVar[str] = "simulated cluster"

    def __init__(
        self,
        *,
        services: Sequence[str],
        environments: Sequence[str],
        seed: int = 7,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not services or not environments:
            raise SimulationError("a simulated cluster needs at least one service and one env")
        self.services: tuple[str, ...] = tuple(dict.fromkeys(services))
        self.environments: tuple[str, ...] = tuple(dict.fromkeys(environments))
        self.seed = seed
        self._clock = clock
        self._traffic = TrafficModel(seed=seed)
        self._lock = threading.Lock()
        self._timelines: dict[tuple[str, str], _Timeline] = {}
        self._generations: dict[tuple[str, str], int] = {}
        self._blocks: OrderedDict[tuple[str, str, int, int], _Block] = OrderedDict()

    def apply(self, service: str, env: str, spec: WorkloadSpec) -> None:
        """Deploy `spec`; it is in force from the start of the current minute.

        A second spec applied in the minute of the first keeps the first as the past: the
        first reaches back into history, and a change right after start-up has a "before".
        """
        self._check(service, env)
        minute = to_minute(self._clock(), what="clock()")
        with self._lock:
            timeline = self._timelines.get((service, env), ())
            entries = [e for e in timeline if e[0] != minute]
            if timeline and timeline[0][0] == minute and timeline[0][1] != spec:
                entries.insert(0, (minute - 1, timeline[0][1]))
            bisect.insort(entries, (minute, spec), key=lambda e: e[0])
            self._timelines[(service, env)] = tuple(entries)
            self._generations[(service, env)] = self._generations.get((service, env), 0) + 1
            for key in [k for k in self._blocks if k[:2] == (service, env)]:
                del self._blocks[key]

    def spec(self, service: str, env: str) -> WorkloadSpec | None:
        """The spec applied last, or None if nothing was applied to this workload yet."""
        self._check(service, env)
        with self._lock:
            timeline = self._timelines.get((service, env), ())
        return timeline[-1][1] if timeline else None

    def status(self, service: str, env: str, *, at: datetime | None = None) -> WorkloadStatus:
        """The workload during the minute of `at` (default: now, by the injected clock)."""
        self._check(service, env)
        minute = to_minute(self._clock() if at is None else at, what="at")
        values = {s: float(self._values(s, service, env, np.array([minute]))[0]) for s in SIGNALS}
        spec = self._spec_at(service, env, minute)
        replicas = round(values["replicas"])
        errors = values["error_ratio"]
        ceiling = spec.max_replicas if spec.hpa_enabled else spec.replicas
        saturated = values["cpu"] >= _SATURATED_CPU_PERCENT and replicas >= ceiling
        degraded = errors > _DEGRADED_ERROR_RATIO or saturated
        return WorkloadStatus(
            service=service,
            env=env,
            spec=spec,
            replicas=replicas,
            desired_replicas=round(values["desired_replicas"]),
            load_rps=values["requests"],
            cpu_percent=values["cpu"],
            latency_p95_ms=values["latency_p95"],
            error_ratio=errors,
            health=DEGRADED if degraded else HEALTHY,
        )

    def demand(self, service: str, env: str, at: datetime) -> float:
        """Requests per second during the minute of `at`."""
        self._check(service, env)
        minute = to_minute(at, what="at")
        return float(self._values("requests", service, env, np.array([minute]))[0])

    def series(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> list[tuple[datetime, float]]:
        """Samples at start, start + step, … before `end`, each the value of its minute.

        Signals: "requests" (rps), "cpu" (% of request, average per ready pod), "replicas"
        (ready), "desired_replicas", "latency_p95" (ms), "error_ratio" (0..1).
        """
        if signal not in SIGNALS:
            raise SimulationError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")
        self._check(service, env)
        first = to_micros(start, what="start")
        stop = to_micros(end, what="end")
        step_us = step // timedelta(microseconds=1)
        if step_us <= 0:
            raise SimulationError(f"step must be positive, got {step}")
        count = max(0, -(-(stop - first) // step_us))
        if count > MAX_POINTS:
            raise SimulationError(
                f"{count} points asked for, at most {MAX_POINTS}: use a larger step or a "
                "shorter range"
            )
        micros = first + step_us * np.arange(count, dtype=np.int64)
        values = self._values(signal, service, env, micros // _MICROS_PER_MINUTE)
        origin = start.astimezone(UTC)
        return [(origin + step * i, value) for i, value in enumerate(values.tolist())]

    def events(self) -> list[TrafficEvent]:
        """The scripted bursts and holidays that shape this cluster's traffic."""
        return self._traffic.events(self.services)

    def windows(
        self, service: str, env: str, *, start: datetime, end: datetime
    ) -> list[EventWindow]:
        """The occurrences of `events()` for one workload that overlap [start, end)."""
        self._check(service, env)
        return self._traffic.windows(
            service,
            env,
            start_minute=to_minute(start, what="start"),
            end_minute=to_minute(end - timedelta(microseconds=1), what="end") + 1,
        )

    def pod_capacity_rps(self, service: str, env: str, *, at: datetime | None = None) -> float:
        """Requests per second one ready pod serves at the HPA's target CPU, under the spec
        in force at `at`; what an agent divides a forecast by to size a replica floor."""
        self._check(service, env)
        spec = self._spec_at(service, env, to_minute(self._clock() if at is None else at))
        cost = service_profile(service).cpu_millicore_seconds_per_request
        return spec.cpu_request_millicores * spec.target_cpu_percent / 100 / cost

    def _check(self, service: str, env: str) -> None:
        if service not in self.services:
            raise SimulationError(
                f"unknown service {service!r}; the simulated cluster runs "
                f"{', '.join(self.services)}"
            )
        if env not in self.environments:
            raise SimulationError(
                f"unknown environment {env!r}; the simulated cluster has "
                f"{', '.join(self.environments)}"
            )

    def _spec_at(self, service: str, env: str, minute: int) -> WorkloadSpec:
        with self._lock:
            timeline = self._timelines.get((service, env), ())
        return _specs_for(service, env, timeline, np.array([minute]))[0]

    def _values(
        self, signal: str, service: str, env: str, minutes: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        if minutes.size == 0:
            return np.zeros(0, dtype=np.float64)
        blocks = minutes // BLOCK_MINUTES
        wanted, which = np.unique(blocks, return_inverse=True)
        table = np.stack([self._block(service, env, k).signals[signal] for k in wanted.tolist()])
        return np.asarray(table[which, minutes - blocks * BLOCK_MINUTES], dtype=np.float64)

    def _block(self, service: str, env: str, index: int) -> _Block:
        with self._lock:
            generation = self._generations.get((service, env), 0)
            timeline = self._timelines.get((service, env), ())
            key = (service, env, generation, index)
            cached = self._blocks.get(key)
            if cached is not None:
                self._blocks.move_to_end(key)
                return cached
        # Computed outside the lock: a duplicate computation is harmless, the result is the same.
        block = self._compute(service, env, timeline, index)
        with self._lock:
            if self._generations.get((service, env), 0) == generation:
                self._blocks[key] = block
                while len(self._blocks) > _CACHE_BLOCKS:
                    self._blocks.popitem(last=False)
        return block

    def _compute(self, service: str, env: str, timeline: _Timeline, index: int) -> _Block:
        minutes = np.arange(
            index * BLOCK_MINUTES - WARMUP_MINUTES, (index + 1) * BLOCK_MINUTES, dtype=np.int64
        )
        specs = _specs_for(service, env, timeline, minutes)
        request = np.array([s.cpu_request_millicores for s in specs], dtype=np.float64)
        target = np.array([s.target_cpu_percent for s in specs], dtype=np.float64)
        profile = service_profile(service)
        demand = self._traffic.demand(service, env, minutes)
        used = demand * profile.cpu_millicore_seconds_per_request  # millicores
        replicas = simulate_replicas(
            used / (request * target / 100),
            hpa=np.array([s.hpa_enabled for s in specs], dtype=np.bool_),
            fixed=np.array([s.replicas for s in specs], dtype=np.int64),
            low=np.array([s.min_replicas for s in specs], dtype=np.int64),
            high=np.array([s.max_replicas for s in specs], dtype=np.int64),
        )
        capacity = replicas.ready * request
        # No ready pod: every request fails, and there is no pod whose CPU could be measured.
        load = np.divide(used, capacity, out=np.full_like(used, math.inf), where=capacity > 0)
        cpu = np.where(capacity > 0, load * 100.0, 0.0)
        latency_noise = normal(stream_key(self.seed, "latency", service, env), minutes)
        error_noise = normal(stream_key(self.seed, "errors", service, env), minutes)
        signals = {
            "requests": demand,
            "cpu": cpu,
            "replicas": replicas.ready.astype(np.float64),
            "desired_replicas": replicas.desired.astype(np.float64),
            "latency_p95": latency_p95_ms(
                load, base_ms=profile.latency_p95_ms, noise=latency_noise
            ),
            "error_ratio": error_ratio(load, noise=error_noise),
        }
        return _Block(signals={k: v[WARMUP_MINUTES:].copy() for k, v in signals.items()})


def _specs_for(
    service: str, env: str, timeline: _Timeline, minutes: NDArray[np.int64]
) -> list[WorkloadSpec]:
    """The spec in force at each minute; the first applied one reaches back before it."""
    if not timeline:
        return [default_spec(service, env)] * len(minutes)
    starts = np.array([m for m, _ in timeline], dtype=np.int64)
    positions = np.maximum(np.searchsorted(starts, minutes, side="right") - 1, 0)
    return [timeline[p][1] for p in positions.tolist()]
