"""The simulated cluster as the demo and the agents use it, on a fixed clock."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agents.sim import (
    DEGRADED,
    HEALTHY,
    SIGNALS,
    SimulatedCluster,
    SimulationError,
    WorkloadSpec,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday, after the marketing burst
SERVICES = ("checkout", "cart", "search")
ENVIRONMENTS = ("prod", "staging")
CHECKOUT = WorkloadSpec(
    replicas=3,
    hpa_enabled=True,
    min_replicas=3,
    max_replicas=12,
    target_cpu_percent=70,
    cpu_request_millicores=500,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def cluster(*, clock: Clock | None = None, seed: int = 7) -> SimulatedCluster:
    return SimulatedCluster(
        services=SERVICES, environments=ENVIRONMENTS, seed=seed, clock=clock or Clock(NOW)
    )


def two_weeks(sim: SimulatedCluster, signal: str, service: str = "checkout") -> list[float]:
    points = sim.series(
        signal,
        service,
        "prod",
        start=NOW - timedelta(days=14),
        end=NOW,
        step=timedelta(minutes=5),
    )
    return [value for _, value in points]


def test_it_says_it_is_a_simulation() -> None:
    assert SimulatedCluster.label == "simulated cluster"
    assert "simulat" in (SimulatedCluster.__doc__ or "").lower()


def test_numbers_repeat_across_calls_and_new_clusters() -> None:
    first = cluster()
    again = {signal: two_weeks(first, signal) for signal in SIGNALS}
    assert again == {signal: two_weeks(first, signal) for signal in SIGNALS}
    restarted = cluster()
    assert again == {signal: two_weeks(restarted, signal) for signal in SIGNALS}
    assert two_weeks(cluster(seed=8), "requests") != again["requests"]


def test_a_range_asked_in_pieces_and_in_any_order_matches_the_whole() -> None:
    step = timedelta(minutes=1)
    start = NOW - timedelta(hours=9, minutes=7)
    whole = cluster().series("replicas", "checkout", "prod", start=start, end=NOW, step=step)
    sim = cluster()
    cut = start + timedelta(hours=5, minutes=3)
    later = sim.series("replicas", "checkout", "prod", start=cut, end=NOW, step=step)
    earlier = sim.series("replicas", "checkout", "prod", start=start, end=cut, step=step)
    assert earlier + later == whole
    status = sim.status("checkout", "prod", at=start + timedelta(hours=2, seconds=30))
    assert status.replicas == whole[120][1]


def test_series_has_one_point_per_step_and_is_fast() -> None:
    sim = cluster()
    for signal in SIGNALS:
        began = time.perf_counter()
        points = sim.series(
            signal,
            "search",
            "prod",
            start=NOW - timedelta(days=14),
            end=NOW,
            step=timedelta(minutes=5),
        )
        assert time.perf_counter() - began < 1.5
        assert len(points) == 4032
    assert points[0][0] == NOW - timedelta(days=14)
    assert points[-1][0] == NOW - timedelta(minutes=5)


def test_other_time_zones_mean_the_same_instant() -> None:
    sim = cluster()
    in_paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert sim.status("cart", "prod", at=in_paris) == sim.status("cart", "prod", at=NOW)
    assert sim.demand("cart", "prod", in_paris) == sim.demand("cart", "prod", NOW)


def test_status_defaults_to_the_clock() -> None:
    sim = cluster()
    assert sim.status("search", "staging") == sim.status("search", "staging", at=NOW)


def test_the_daily_and_weekly_pattern_shows_in_the_cluster() -> None:
    sim = cluster()
    tuesday = NOW - timedelta(days=6, hours=12)
    sunday = NOW - timedelta(days=1, hours=12)
    night = sim.status("checkout", "prod", at=tuesday + timedelta(hours=3))
    evening = sim.status("checkout", "prod", at=tuesday + timedelta(hours=19))
    weekend_evening = sim.status("checkout", "prod", at=sunday + timedelta(hours=19))
    assert evening.load_rps > 3 * night.load_rps
    assert evening.replicas > night.replicas == 3
    assert weekend_evening.load_rps < 0.75 * evening.load_rps


def test_replicas_stay_between_min_and_max() -> None:
    sim = cluster()
    for service in SERVICES:
        replicas = two_weeks(sim, "replicas", service)
        spec = sim.status(service, "prod").spec
        assert min(replicas) == spec.min_replicas
        assert max(replicas) <= spec.max_replicas
    sim.apply("checkout", "prod", dataclasses.replace(CHECKOUT, max_replicas=5))
    assert max(two_weeks(sim, "replicas")) == 5


def test_the_monday_burst_outruns_the_hpa_for_the_first_minutes() -> None:
    sim = cluster()
    ten = NOW.replace(hour=10)
    before = sim.status("checkout", "prod", at=ten - timedelta(minutes=10))
    first_minutes = [
        sim.status("checkout", "prod", at=ten + timedelta(minutes=m)) for m in range(1, 4)
    ]
    settled = sim.status("checkout", "prod", at=ten + timedelta(minutes=20))
    assert before.cpu_percent < 80
    assert all(s.cpu_percent > 85 for s in first_minutes)
    assert all(s.replicas < s.desired_replicas for s in first_minutes[:2])
    assert settled.cpu_percent < 80
    assert settled.replicas > before.replicas
    assert settled.load_rps > 1.3 * before.load_rps


def test_a_higher_floor_raises_replicas_once_the_pods_have_started() -> None:
    clock = Clock(NOW.replace(hour=2))
    sim = cluster(clock=clock)
    assert sim.spec("checkout", "prod") is None
    sim.apply("checkout", "prod", CHECKOUT)
    clock.now = NOW.replace(hour=3)  # a quiet night: the HPA sits at its floor
    assert sim.status("checkout", "prod").replicas == 3
    sim.apply("checkout", "prod", dataclasses.replace(CHECKOUT, min_replicas=8))
    assert sim.spec("checkout", "prod") == dataclasses.replace(CHECKOUT, min_replicas=8)
    now = sim.status("checkout", "prod")
    assert (now.replicas, now.desired_replicas) == (3, 8)
    later = sim.status("checkout", "prod", at=clock.now + timedelta(minutes=3))
    assert later.replicas == 8
    assert later.cpu_percent < now.cpu_percent / 2


def test_the_first_applied_spec_reaches_back_into_history() -> None:
    sim = cluster(clock=Clock(NOW.replace(hour=3)))
    sim.apply("checkout", "prod", dataclasses.replace(CHECKOUT, min_replicas=8))
    assert sim.status("checkout", "prod", at=NOW - timedelta(days=13)).replicas == 8


def test_a_later_apply_leaves_the_past_alone() -> None:
    clock = Clock(NOW.replace(hour=3))
    sim = cluster(clock=clock)
    sim.apply("checkout", "prod", CHECKOUT)
    clock.now += timedelta(hours=1)
    sim.apply("checkout", "prod", dataclasses.replace(CHECKOUT, min_replicas=6))
    assert sim.status("checkout", "prod", at=clock.now - timedelta(minutes=30)).replicas == 3
    assert sim.status("checkout", "prod", at=clock.now + timedelta(minutes=5)).replicas == 6


def test_without_the_hpa_the_spec_replicas_run_whatever_the_load() -> None:
    sim = cluster()
    sim.apply("cart", "prod", dataclasses.replace(CHECKOUT, hpa_enabled=False, replicas=5))
    assert set(two_weeks(sim, "replicas", "cart")) == {5}


def test_saturation_at_max_replicas_is_degraded() -> None:
    sim = cluster(clock=Clock(NOW.replace(hour=3)))
    assert sim.status("checkout", "prod", at=NOW.replace(hour=19)).health == HEALTHY
    sim.apply("checkout", "prod", dataclasses.replace(CHECKOUT, min_replicas=1, max_replicas=2))
    peak = sim.status("checkout", "prod", at=NOW.replace(hour=19))
    assert peak.replicas == 2
    assert peak.cpu_percent > 100
    assert peak.error_ratio > 0.01
    assert peak.latency_p95_ms > 1000
    assert peak.health == DEGRADED


def test_unknown_names_and_bad_input_raise_simulation_errors() -> None:
    sim = cluster()
    with pytest.raises(SimulationError, match="unknown service 'payments'"):
        sim.status("payments", "prod")
    with pytest.raises(SimulationError, match="unknown environment 'qa'"):
        sim.demand("checkout", "qa", NOW)
    with pytest.raises(SimulationError, match="unknown signal"):
        sim.series("memory", "checkout", "prod", start=NOW, end=NOW, step=timedelta(minutes=1))
    with pytest.raises(SimulationError, match="step must be positive"):
        sim.series("cpu", "checkout", "prod", start=NOW, end=NOW, step=timedelta(0))
    with pytest.raises(SimulationError, match="timezone-aware"):
        sim.status("checkout", "prod", at=datetime(2026, 11, 23, 12, 0))
    with pytest.raises(SimulationError, match="max_replicas"):
        dataclasses.replace(CHECKOUT, max_replicas=2)
    assert issubclass(SimulationError, ValueError)


def test_events_describe_the_scripted_traffic() -> None:
    sim = cluster()
    kinds = {event.name: event.kind for event in sim.events()}
    assert kinds["checkout-monday-marketing"] == "burst"
    assert kinds["search-flash"] == "flash"
    assert kinds["christmas"] == "holiday"
    windows = sim.windows("checkout", "prod", start=NOW - timedelta(days=1), end=NOW)
    assert [(w.name, w.start.hour, w.end.hour) for w in windows] == [
        ("checkout-monday-marketing", 10, 11)
    ]


def test_a_change_in_the_minute_of_the_first_apply_keeps_the_first_as_the_past() -> None:
    clock = Clock(NOW.replace(hour=3))
    sim = cluster(clock=clock)
    sim.apply("checkout", "prod", CHECKOUT)
    sim.apply("checkout", "prod", dataclasses.replace(CHECKOUT, min_replicas=6))
    assert sim.spec("checkout", "prod") == dataclasses.replace(CHECKOUT, min_replicas=6)
    assert sim.status("checkout", "prod", at=clock.now - timedelta(minutes=30)).replicas == 3
    assert sim.status("checkout", "prod", at=clock.now + timedelta(minutes=5)).replicas == 6
