"""The simulated HorizontalPodAutoscaler, pod start-up and how pods perform under load.

On a one-minute grid, for each minute t (all CPU as a share of the pods' request):

    needed(t)  = demand(t) * cpu_cost / (request * target / 100)    pods that would run at target
    rec(t)     = D(t-1) if |needed(t) / D(t-1) - 1| <= 10 %          the HPA tolerance
                 else ceil(needed(t)), clamped to [min, max]
    D(t)       = max(rec over the last 5 minutes), clamped           scale-down stabilisation
    ready(t)   = min(D over [t - 3 min, t])                          pods take 3 minutes to start
    cpu%(t)    = demand(t) * cpu_cost / (ready(t) * request) * 100

`needed / D` is the HPA's usage ratio with not-yet-ready pods counted at 0 % CPU, which is
what Kubernetes does when scaling up, so pods that are already starting are not asked for
twice. Scale-up is immediate (the default policy, 100 % or 4 pods per 15 s, never binds within
a minute at these sizes). `ready` follows from removing the newest pods first: a pod exists
and is ready at t exactly when D stayed at or above its position since t - 3 minutes.
With the HPA disabled D(t) = spec.replicas.

cpu% is the offered load, so it exceeds 100 when the pods cannot keep up. Pods saturate at
100 % of their request (limit = request): p95 latency grows as 1 / (1 - load) and shoots up
near 100 %, errors start at 95 % and above 100 % the excess is shed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "POD_START_MINUTES",
    "SCALE_DOWN_WINDOW_MINUTES",
    "TOLERANCE",
    "Replicas",
    "error_ratio",
    "latency_p95_ms",
    "simulate_replicas",
    "steady_replicas",
]

TOLERANCE = 0.1
POD_START_MINUTES = 3
SCALE_DOWN_WINDOW_MINUTES = 5
TIMEOUT_MS = 10_000.0
_BASE_ERROR_RATIO = 0.001
_ERRORS_FROM = 0.95
_ERROR_SLOPE = 0.4  # 2 % errors at exactly 100 % CPU
_LATENCY_QUEUE_WEIGHT = 0.15
_LATENCY_KNEE = 0.98
_LATENCY_OVERLOAD_SLOPE = 10.0
_EPSILON = 1e-9  # so that 3.0000000001 needed pods stays 3, not 4


@dataclass(frozen=True)
class Replicas:
    """Per-minute replica counts: what the Deployment asks for and what is ready."""

    desired: NDArray[np.int64]
    ready: NDArray[np.int64]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def steady_replicas(needed: float, *, hpa: bool, fixed: int, low: int, high: int) -> int:
    """Where the HPA would sit if the demand had been `needed` pods for a long time."""
    if not hpa:
        return fixed
    return _clamp(math.ceil(needed - _EPSILON), low, high)


def simulate_replicas(
    needed: NDArray[np.float64],
    *,
    hpa: NDArray[np.bool_],
    fixed: NDArray[np.int64],
    low: NDArray[np.int64],
    high: NDArray[np.int64],
) -> Replicas:
    """Run the HPA over consecutive minutes, starting from the steady state of the first."""
    needs = needed.tolist()
    enabled = hpa.tolist()
    fixeds = fixed.tolist()
    lows = low.tolist()
    highs = high.tolist()
    current = steady_replicas(needs[0], hpa=enabled[0], fixed=fixeds[0], low=lows[0], high=highs[0])
    initial = current
    recent: deque[int] = deque([current], maxlen=SCALE_DOWN_WINDOW_MINUTES)
    desired: list[int] = []
    # The one loop of the simulation that cannot be vectorised (each minute starts from the
    # last), so it is written for speed: no calls besides max() in the common path.
    for need, on, replicas, lo, hi in zip(needs, enabled, fixeds, lows, highs, strict=True):
        if not on:
            current = replicas
            recent.clear()
            recent.append(current)
        else:
            if current and abs(need / current - 1) <= TOLERANCE:
                rec = current
            else:
                rec = math.ceil(need - _EPSILON)
            recent.append(lo if rec < lo else hi if rec > hi else rec)
            top = max(recent)
            current = lo if top < lo else hi if top > hi else top
        desired.append(current)
    wanted = np.array(desired, dtype=np.int64)
    padded = np.concatenate([np.full(POD_START_MINUTES, initial, dtype=np.int64), wanted])
    windows = np.lib.stride_tricks.sliding_window_view(padded, POD_START_MINUTES + 1)
    return Replicas(desired=wanted, ready=windows.min(axis=1))


def latency_p95_ms(
    load: NDArray[np.float64], *, base_ms: float, noise: NDArray[np.float64]
) -> NDArray[np.float64]:
    """p95 latency for a load given as a fraction of capacity (1.0 = pods at 100 %)."""
    below = np.minimum(load, _LATENCY_KNEE)
    queueing = 1.0 + _LATENCY_QUEUE_WEIGHT * below / (1.0 - below)
    overload = 1.0 + _LATENCY_OVERLOAD_SLOPE * np.maximum(load - _LATENCY_KNEE, 0.0)
    return np.minimum(base_ms * queueing * overload * (1.0 + 0.04 * noise), TIMEOUT_MS)


def error_ratio(load: NDArray[np.float64], *, noise: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of failed requests for a load given as a fraction of capacity."""
    baseline = _BASE_ERROR_RATIO * (1.0 + 0.25 * noise)
    strain = _ERROR_SLOPE * np.maximum(load - _ERRORS_FROM, 0.0)
    shed = np.maximum(1.0 - 1.0 / np.maximum(load, 1.0), 0.0)
    return np.minimum(baseline + strain + shed, 1.0)
