"""The simulated HPA: tolerance, clamps, scale-down stabilisation and pod start delay."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from agents.sim.autoscaler import (
    POD_START_MINUTES,
    SCALE_DOWN_WINDOW_MINUTES,
    Replicas,
    error_ratio,
    latency_p95_ms,
    simulate_replicas,
)


def run(needed: list[float], *, low: int = 1, high: int = 20) -> Replicas:
    n = len(needed)
    return simulate_replicas(
        np.array(needed, dtype=np.float64),
        hpa=np.ones(n, dtype=np.bool_),
        fixed=np.full(n, 1, dtype=np.int64),
        low=np.full(n, low, dtype=np.int64),
        high=np.full(n, high, dtype=np.int64),
    )


def as_list(values: NDArray[np.int64]) -> list[int]:
    return [int(v) for v in values]


def test_new_pods_are_ready_after_the_start_delay() -> None:
    result = run([4.0] * 3 + [8.0] * 8)
    assert as_list(result.desired) == [4] * 3 + [8] * 8
    assert as_list(result.ready) == [4] * (3 + POD_START_MINUTES) + [8] * (8 - POD_START_MINUTES)


def test_changes_within_the_ten_percent_tolerance_do_nothing() -> None:
    result = run([4.0, 4.3, 3.7, 4.35, 3.65])
    assert as_list(result.desired) == [4] * 5


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    result = run([8.0] * 3 + [3.0] * 10)
    down_at = 3 + SCALE_DOWN_WINDOW_MINUTES - 1
    assert as_list(result.desired) == [8] * down_at + [3] * (13 - down_at)
    assert as_list(result.ready) == as_list(result.desired)  # removing pods is immediate


def test_recommendations_are_clamped_to_min_and_max() -> None:
    result = run([0.5, 0.5, 30.0, 30.0], low=2, high=10)
    assert as_list(result.desired) == [2, 2, 10, 10]


def test_without_the_hpa_the_fixed_replica_count_rules() -> None:
    result = simulate_replicas(
        np.array([50.0, 50.0, 50.0, 50.0, 50.0]),
        hpa=np.zeros(5, dtype=np.bool_),
        fixed=np.array([2, 2, 5, 5, 5], dtype=np.int64),
        low=np.full(5, 1, dtype=np.int64),
        high=np.full(5, 3, dtype=np.int64),
    )
    assert as_list(result.desired) == [2, 2, 5, 5, 5]
    assert as_list(result.ready) == [2, 2, 2, 2, 2]


def test_latency_and_errors_stay_low_at_target_and_blow_up_past_saturation() -> None:
    load = np.array([0.3, 0.7, 0.97, 1.0, 1.5])
    calm = np.zeros(5)
    latency = latency_p95_ms(load, base_ms=100.0, noise=calm)
    errors = error_ratio(load, noise=calm)
    assert list(latency) == sorted(latency)
    assert latency[1] < 150
    assert latency[4] > 1000
    assert errors[1] < 0.002
    assert 0.01 < errors[3] < errors[4]
