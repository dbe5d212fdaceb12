"""BurstPredictor on the simulated cluster (the demo's own knobs) and on fixture series."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from agents.base import Finding
from agents.burst_predictor import BurstPredictor, BurstPredictorSettings, Prediction, predict
from agents.errors import SourceUnavailableError
from agents.registry import registry
from agents.sim import SimulatedCluster
from agents.sim.argocd import spec_from_knobs
from agents.sim.metrics import SimulatedMetrics
from agents.testing import ArrayMetrics, DownMetrics, make_context, run_once
from approval_engine.config import TargetsConfig, load_model
from approval_engine.model import KnobChange, Scalar
from approval_engine.targets import Targets

ROOT = Path(__file__).resolve().parents[2]
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # the Monday 10:00 burst is 22 h away
MONDAY_BURST = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
HOUR = timedelta(hours=1)
Knobs = dict[tuple[str, str], dict[str, Scalar]]


def demo_knobs() -> Knobs:
    """Every workload's knobs as the GitOps repo the demo seeds holds them."""
    targets = Targets(load_model(ROOT / "config" / "targets.yaml", TargetsConfig))
    return {
        (service, env): targets.read_all(
            service, env, read_file=lambda path: (ROOT / path).read_text(encoding="utf-8")
        )
        for service in targets.workloads()
        for env in targets.environments(service)
    }


def demo_cluster(now: datetime, knobs: Knobs) -> SimulatedCluster:
    """The simulation with the knobs applied, as the demo's ArgoCD stand-in syncs them."""
    cluster = SimulatedCluster(
        services=sorted({s for s, _ in knobs}),
        environments=sorted({e for _, e in knobs}),
        clock=lambda: now,
    )
    for (service, env), values in knobs.items():
        cluster.apply(service, env, spec_from_knobs(values))
    return cluster


def run_demo(now: datetime, *, optimize: bool = True) -> list[Finding]:
    knobs = demo_knobs()
    metrics = SimulatedMetrics(demo_cluster(now, knobs))
    return run_once(BurstPredictor, optimize=optimize, now=now, metrics=metrics, knobs=knobs)


@pytest.fixture(scope="module")
def sunday() -> list[Finding]:
    return run_demo(SUNDAY)


def test_proposes_raising_checkout_prod_floor_before_the_monday_burst(
    sunday: list[Finding],
) -> None:
    assert [(f.service, f.env) for f in sunday] == [("checkout", "prod")]
    [finding] = sunday
    change = finding.change
    assert change is not None
    assert finding.key == "burst:checkout/prod"
    assert finding.severity == "warning"
    assert change.kind == "burst"
    assert change.requested_by == "agent:BurstPredictor"
    assert change.rationale.startswith("Traffic spike expected Mon 10–11 UTC, +")
    assert change.rationale.endswith(f"minReplicas 3 → {change.changes[0].value}")
    floor = change.changes[0]
    assert floor.knob == "min_replicas"
    assert isinstance(floor.value, int) and 8 <= floor.value <= 12
    assert change.changes == (floor,)  # maxReplicas 12 already allows it
    assert change.confidence == 1.0  # the last four Mondays all had the burst
    assert any("2026-11-23T10:00Z to 2026-11-23T11:00Z" in e for e in change.evidence)
    assert any("35.7 rps at 100 % CPU" in e for e in change.evidence)
    graph = finding.graph
    assert graph is not None and not graph.is_empty()
    assert [(s.start, s.end) for s in graph.spans] == [(MONDAY_BURST, MONDAY_BURST + HOUR)]
    history = graph.lines[0]
    assert history.times[-1] - history.times[0] >= timedelta(days=3) - STEP


def test_analyze_sees_the_same_window_without_proposing() -> None:
    [finding] = run_demo(SUNDAY, optimize=False)
    assert finding.change is None
    assert finding.title.startswith("checkout/prod: Traffic spike expected Mon 10–11 UTC")


def test_the_proposed_floor_removes_the_saturation_the_current_floor_suffers(
    sunday: list[Finding],
) -> None:
    [finding] = sunday
    assert finding.change is not None
    floor = finding.change.changes[0].value
    knobs = demo_knobs()
    current = demo_cluster(SUNDAY, knobs)
    raised = demo_cluster(SUNDAY, knobs)
    spec = spec_from_knobs(knobs[("checkout", "prod")])
    assert isinstance(floor, int)
    raised.apply("checkout", "prod", dataclasses.replace(spec, min_replicas=floor))

    def burst(cluster: SimulatedCluster, signal: str) -> float:
        points = cluster.series(
            signal,
            "checkout",
            "prod",
            start=MONDAY_BURST - timedelta(minutes=5),
            end=MONDAY_BURST + timedelta(minutes=20),
            step=timedelta(minutes=1),
        )
        return max(v for _, v in points)

    assert burst(current, "cpu") >= 100  # saturated while the HPA's new pods start
    assert burst(current, "latency_p95") > 1000
    assert burst(raised, "cpu") < 80
    assert burst(raised, "latency_p95") < 300  # 180 ms at rest


def test_no_proposal_when_the_horizon_holds_no_burst() -> None:
    tuesday = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert run_demo(tuesday) == []


def test_predict_gives_chat_the_same_numbers(sunday: list[Finding]) -> None:
    knobs = demo_knobs()
    ctx = make_context(
        now=SUNDAY + timedelta(minutes=7),
        metrics=SimulatedMetrics(demo_cluster(SUNDAY, knobs)),
        knobs=knobs,
    )
    p = predict(ctx, BurstPredictorSettings(), "checkout", "prod")
    assert p.origin == SUNDAY and len(p.times) == len(p.point) == len(p.upper) == 48
    assert p.times[0] == SUNDAY and p.times[-1] == SUNDAY + 47 * HOUR
    assert all(u >= v for u, v in zip(p.upper, p.point, strict=True))
    assert p.pod_capacity_rps == pytest.approx(500 / 14)  # 500m a pod, 14 m·s a request
    assert (p.current_floor, p.current_max, p.target_cpu) == (3, 12, 70)
    [window] = p.windows
    assert (window.start, window.end, window.late) == (MONDAY_BURST, MONDAY_BURST + HOUR, False)
    assert window.weeks_seen == window.weeks_observed == 4
    change = sunday[0].change
    assert change is not None and p.needed_floor == change.changes[0].value
    assert p.graph is not None and p.graph == sunday[0].graph


def test_staging_has_no_burst_and_keeps_its_floor() -> None:
    knobs = demo_knobs()
    ctx = make_context(
        now=SUNDAY, metrics=SimulatedMetrics(demo_cluster(SUNDAY, knobs)), knobs=knobs
    )
    p = predict(ctx, BurstPredictorSettings(), "checkout", "staging")
    assert p.note == "" and p.windows == ()
    assert p.needed_floor == p.current_floor == 2
    assert not p.raises_floor


def test_a_holiday_week_in_the_history_makes_no_spurious_burst() -> None:
    # Christmas and Boxing Day 2025 were a Thursday and a Friday.
    after = datetime(2025, 12, 26, 12, 0, tzinfo=UTC)  # horizon Fri 12:00 - Sun 12:00
    assert run_demo(after) == []
    sunday = datetime(2025, 12, 28, 12, 0, tzinfo=UTC)
    knobs = demo_knobs()
    cluster = demo_cluster(sunday, knobs)
    ctx = make_context(now=sunday, metrics=SimulatedMetrics(cluster), knobs=knobs)
    p = predict(ctx, BurstPredictorSettings(), "checkout", "prod")
    assert [w.label() for w in p.windows] == ["Mon 10–11 UTC"]
    actual = hourly_peaks(cluster, p)
    point = np.array(p.point)
    assert float(np.mean(np.abs(point - actual))) < 0.12 * float(np.mean(actual))
    burst = p.times.index(p.windows[0].start)
    assert 0.8 < point[burst] / actual[burst] < 1.1


def test_a_holiday_monday_in_the_history_does_not_hide_the_next_burst() -> None:
    # Memorial Day 2027 is Monday 31 May: no newsletter, so no burst, that week.
    now = datetime(2027, 6, 6, 12, 0, tzinfo=UTC)
    knobs = demo_knobs()
    cluster = demo_cluster(now, knobs)
    findings = run_once(
        BurstPredictor, optimize=True, now=now, metrics=SimulatedMetrics(cluster), knobs=knobs
    )
    [finding] = findings
    assert finding.change is not None and finding.change.confidence == 0.75  # 3 of 4 weeks
    floor = finding.change.changes[0].value
    burst = datetime(2027, 6, 7, 10, 0, tzinfo=UTC)
    points = cluster.series(
        "requests", "checkout", "prod", start=burst, end=burst + HOUR, step=timedelta(minutes=1)
    )
    one_pod = 500 / 14  # the simulation's checkout: 500m a pod, 14 millicore-seconds a request
    assert isinstance(floor, int) and floor * one_pod * 0.9 > max(v for _, v in points)


def hourly_peaks(cluster: SimulatedCluster, p: Prediction) -> npt.NDArray[np.float64]:
    points = cluster.series(
        "requests", p.service, p.env, start=p.times[0], end=p.times[-1] + HOUR, step=STEP
    )
    peaks: npt.NDArray[np.float64] = np.array([v for _, v in points]).reshape(len(p.times), -1)
    return np.asarray(peaks.max(axis=1), dtype=np.float64)


# --- fixture series -----------------------------------------------------------------------

POD_RPS = 20.0  # one pod at 100 % CPU
KNOBS: dict[str, Scalar] = {
    "hpa_enabled": True,
    "min_replicas": 2,
    "max_replicas": 20,
    "target_cpu": 70,
}


def traffic(
    end: datetime,
    *,
    days: float = 28,
    burst: float = 0.5,
    shift: tuple[datetime, float] | None = None,
    seed: int = 0,
) -> tuple[datetime, npt.NDArray[np.float64]]:
    """5-minute demand before `end`: a daily shape, quieter weekends, a burst every Monday
    10:00-11:00 UTC of +`burst`, optionally a level shift by a factor from a given time."""
    start = end - timedelta(days=days)
    t = np.array([start + STEP * i for i in range(int(timedelta(days=days) / STEP))])
    hours = np.array([x.hour + x.minute / 60 for x in t])
    weekday = np.array([x.weekday() for x in t])
    rps = 100.0 * (1.0 + 0.5 * np.sin((hours - 9.0) / 24 * 2 * np.pi))
    rps *= np.where(weekday >= 5, 0.6, 1.0)
    rps *= 1.0 + burst * ((weekday == 0) & (hours >= 10) & (hours < 11))
    if shift is not None:
        rps *= np.where(t >= shift[0], shift[1], 1.0)
    rps *= 1.0 + 0.03 * np.random.default_rng(seed).standard_normal(len(t))
    return start, rps


def fixture_metrics(start: datetime, rps: npt.NDArray[np.float64]) -> ArrayMetrics:
    """Demand plus the cpu and replicas an HPA at 70 % would report for it."""
    replicas = np.maximum(np.ceil(np.nan_to_num(rps) / (POD_RPS * 0.7)), 2)
    metrics = ArrayMetrics()
    metrics.add("requests", "shop", "prod", start=start, step=STEP, values=rps)
    metrics.add("replicas", "shop", "prod", start=start, step=STEP, values=replicas)
    metrics.add(
        "cpu", "shop", "prod", start=start, step=STEP, values=rps / replicas / POD_RPS * 100
    )
    return metrics


def run_fixture(
    now: datetime,
    metrics: object,
    *,
    knobs: Mapping[str, Scalar] = KNOBS,
    settings: Mapping[str, object] | None = None,
) -> list[Finding]:
    return run_once(
        BurstPredictor,
        optimize=True,
        settings=settings,
        now=now,
        metrics=metrics,
        knobs={("shop", "prod"): dict(knobs)},
    )


def test_a_burst_in_fixture_series_is_sized_from_their_pod_capacity() -> None:
    metrics = fixture_metrics(*traffic(SUNDAY))
    [finding] = run_fixture(SUNDAY, metrics)
    ctx = make_context(now=SUNDAY, metrics=metrics, knobs={("shop", "prod"): KNOBS})
    p = predict(ctx, BurstPredictorSettings(), "shop", "prod")
    [window] = p.windows
    assert window.label() == "Mon 10–11 UTC"
    assert p.pod_capacity_rps == pytest.approx(POD_RPS)
    assert 186 < window.peak_rps < 205  # 1.5 × 124 rps at 10:55, and the noise of a peak
    assert window.planned_rps == pytest.approx(window.peak_rps * 1.1)  # 10 % headroom
    floor = math.ceil(window.planned_rps / (POD_RPS * 0.7))  # at the 70 % target
    assert finding.change is not None
    assert finding.change.changes == (KnobChange("min_replicas", floor),)
    assert p.needed_floor == floor
    assert finding.change.rationale.endswith(f"minReplicas 2 → {floor}")


def test_max_replicas_is_raised_when_it_is_below_the_floor_needed() -> None:
    knobs = {**KNOBS, "max_replicas": 12}
    [finding] = run_fixture(SUNDAY, fixture_metrics(*traffic(SUNDAY)), knobs=knobs)
    assert finding.change is not None
    [floor, ceiling] = finding.change.changes
    assert (floor.knob, ceiling.knob) == ("min_replicas", "max_replicas")
    assert isinstance(floor.value, int) and floor.value > 12
    assert ceiling.value == floor.value
    assert finding.change.rationale.endswith(f"maxReplicas 12 → {floor.value}")


def test_no_proposal_when_the_floor_already_absorbs_the_burst() -> None:
    assert (
        run_fixture(SUNDAY, fixture_metrics(*traffic(SUNDAY)), knobs={**KNOBS, "min_replicas": 12})
        == []
    )


def test_no_proposal_without_an_hpa() -> None:
    knobs = {**KNOBS, "hpa_enabled": False, "replicas": 4}
    assert run_fixture(SUNDAY, fixture_metrics(*traffic(SUNDAY)), knobs=knobs) == []


def test_a_window_too_close_for_review_is_reported_not_proposed() -> None:
    now = MONDAY_BURST - timedelta(minutes=40)
    [finding] = run_fixture(now, fixture_metrics(*traffic(now)))
    assert finding.change is None
    assert finding.severity == "critical"
    assert "too late" in finding.title


def test_a_sudden_level_shift_is_followed_not_taken_for_a_burst() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday: no Monday in the horizon
    shift = (now - timedelta(days=5, hours=3), 1.8)
    start, rps = traffic(now, shift=shift)
    metrics = fixture_metrics(start, rps)
    assert run_fixture(now, metrics) == []
    ctx = make_context(now=now, metrics=metrics, knobs={("shop", "prod"): KNOBS})
    p = predict(ctx, BurstPredictorSettings(), "shop", "prod")
    _, after = traffic(now + timedelta(days=2), days=2, shift=shift, seed=1)
    expected = after.reshape(-1, 12).max(axis=1)
    assert abs(float(np.mean(p.point)) / float(np.mean(expected)) - 1) < 0.15


def test_missing_points_are_tolerated() -> None:
    start, rps = traffic(SUNDAY)
    rng = np.random.default_rng(3)
    rps[rng.choice(len(rps), len(rps) // 10, replace=False)] = math.nan
    rps[2000:2072] = math.nan  # a six-hour scrape outage
    rps[-3:] = math.nan  # and the newest samples
    [finding] = run_fixture(SUNDAY, fixture_metrics(start, rps))
    assert finding.change is not None
    assert "Mon 10–11 UTC" in finding.change.rationale


def test_a_flat_series_gives_no_proposal() -> None:
    start = SUNDAY - timedelta(days=28)
    assert run_fixture(SUNDAY, fixture_metrics(start, np.full(28 * 288, 80.0))) == []


def test_less_than_two_weeks_of_history_says_so_and_proposes_nothing() -> None:
    [finding] = run_fixture(SUNDAY, fixture_metrics(*traffic(SUNDAY, days=10)))
    assert finding.severity == "info"
    assert finding.change is None
    assert "10.0 days" in finding.title and "14" in finding.title


def test_a_source_that_is_down_raises() -> None:
    with pytest.raises(SourceUnavailableError):
        run_fixture(SUNDAY, DownMetrics())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("horizon", "8d"),
        ("horizon", "90m"),
        ("history", "7d"),
        ("step", "7m"),
        ("headroom", -0.1),
        ("min_lift_pct", 0),
        ("pod_start", "soon"),
    ],
)
def test_settings_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        BurstPredictorSettings.model_validate({field: value})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_durations_read_like_the_config_writes_them() -> None:
    s = BurstPredictorSettings.model_validate({"horizon": "72h", "history": "28d", "lead": "2h"})
    assert (s.horizon, s.history, s.lead) == (
        timedelta(hours=72),
        timedelta(days=28),
        timedelta(hours=2),
    )


def test_registered_to_propose_every_fifteen_minutes() -> None:
    spec = registry.get("BurstPredictor")
    assert spec.proposes
    assert (spec.every, spec.timeout) == (timedelta(minutes=15), timedelta(minutes=2))
