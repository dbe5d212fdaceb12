"""CostWatcher on fixture bills and metrics, then on the demo's simulated cluster and bill."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from agents.base import Finding
from agents.cost_watcher import CostWatcher, CostWatcherSettings, cost_report
from agents.errors import SourceUnavailableError
from agents.registry import registry
from agents.sim import SimulatedCluster
from agents.sim.cost import EC2, RDS, SimulatedBill
from agents.sim.metrics import SimulatedMetrics, demo_databases
from agents.sources.base import CostRow
from agents.testing import (
    ArrayMetrics,
    DictMemory,
    DownMetrics,
    ListCost,
    StaticTargets,
    make_context,
    run_once,
)
from approval_engine.model import KnobChange

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)  # a Monday: the bill's latest full day is Sunday
DAY = date(2026, 11, 22)
DAY_BEFORE, WEEK_BEFORE = DAY - timedelta(days=1), DAY - timedelta(days=7)
HOUR = timedelta(hours=1)
WORKLOADS = {"checkout": ["staging", "prod"], "cart": ["staging", "prod"]}
DB_TARGETS = StaticTargets(
    envs={**WORKLOADS, "orders-db": ["staging", "prod"]},
    knobs={"orders-db": ["instance_class"]},
    kinds={"orders-db": "database"},
)
DB_KNOBS = {
    ("orders-db", "staging"): {"instance_class": "db.t3.medium"},
    ("orders-db", "prod"): {"instance_class": "db.r6g.large"},
}


def bill(days: Mapping[date, Mapping[str, float]]) -> ListCost:
    """A bill whose tag grouping is `days`, and whose service grouping splits it EC2 / RDS."""
    by_tag = [CostRow(d, g, a) for d, groups in days.items() for g, a in groups.items()]
    by_service = []
    for d, groups in days.items():
        rds = sum(a for g, a in groups.items() if g.endswith("-db"))
        by_service += [CostRow(d, EC2, sum(groups.values()) - rds), CostRow(d, RDS, rds)]
    return ListCost(rows={"service": by_service, "tag:service": by_tag})


STEADY = {"checkout": 100.0, "cart": 40.0, "search": 70.0}
QUIET_WEEK = {WEEK_BEFORE: STEADY, DAY_BEFORE: STEADY, DAY: STEADY}


def connections(**per_env: list[float] | float) -> ArrayMetrics:
    """db_connections of orders-db for the last 7 days, hourly; a number means a flat line."""
    metrics = ArrayMetrics()
    start = NOW.replace(minute=0) - timedelta(days=7)
    for env, values in per_env.items():
        series = np.full(7 * 24, values) if isinstance(values, float) else np.array(values)
        metrics.add("db_connections", "orders-db", env, start=start, step=HOUR, values=series)
    return metrics


def keyed(findings: list[Finding]) -> dict[str, Finding]:
    keys = [f.key for f in findings]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return {f.key: f for f in findings}


def watch(
    *, optimize: bool = False, settings: Mapping[str, Any] | None = None, **context: Any
) -> dict[str, Finding]:
    """One run at NOW, findings by key; no databases and no bill unless given."""
    context.setdefault("metrics", ArrayMetrics())
    context.setdefault("targets", StaticTargets(envs=WORKLOADS))
    return keyed(run_once(CostWatcher, settings=settings, optimize=optimize, now=NOW, **context))


def test_registers_as_a_proposing_hourly_agent() -> None:
    spec = registry.get("CostWatcher")

    assert spec.cls is CostWatcher
    assert spec.proposes
    assert spec.every == timedelta(hours=1)
    assert spec.timeout == timedelta(minutes=2)
    assert spec.settings is CostWatcherSettings


def test_budget_breaches_are_warning_then_critical() -> None:
    cost = bill({**QUIET_WEEK, DAY: {"checkout": 110.0, "cart": 80.0, "search": 70.0}})

    found = watch(
        cost=cost,
        settings={"daily_budget": 300, "budgets": {"checkout": 100, "cart": 50, "search": 90}},
    )

    assert found["budget:checkout"].severity == "warning"  # 10 % over
    assert found["budget:checkout"].title == (
        "checkout cost $110.00 on 2026-11-22, over its $100.00/day budget (+10%)"
    )
    assert found["budget:checkout"].service == "checkout"
    assert found["budget:cart"].severity == "critical"  # 60 % over, beyond the 20 % default
    assert "budget:search" not in found
    assert "budget:total" not in found  # 260 of 300


def test_a_day_over_day_jump_is_reported_and_small_rises_are_not() -> None:
    cost = bill(
        {**QUIET_WEEK, DAY: {"checkout": 100.0, "cart": 44.0, "search": 105.0, "tiny": 3.0}}
    )

    found = watch(cost=cost)

    jump = found["jump:dod:tag:service:search"]
    assert jump.severity == "warning"
    assert jump.title == "search cost rose +50% day over day: $70.00 → $105.00"
    assert "jump:dod:tag:service:cart" not in found  # +10 %, under the 25 % threshold
    assert "jump:dod:tag:service:tiny" not in found  # new, but under min_change_usd
    assert "jump:dod:total:total" not in found  # 210 → 252 is +20 %
    assert found["jump:wow:tag:service:search"].title.startswith("search cost rose +50% week")


def test_a_week_over_week_jump_without_a_day_over_day_one() -> None:
    cost = bill(
        {
            WEEK_BEFORE: STEADY,
            DAY_BEFORE: {**STEADY, "checkout": 140.0},
            DAY: {**STEADY, "checkout": 150.0},
        }
    )

    found = watch(cost=cost)

    assert "jump:dod:tag:service:checkout" not in found  # +7 %
    assert found["jump:wow:tag:service:checkout"].title == (
        "checkout cost rose +50% week over week: $100.00 → $150.00"
    )


def test_the_summary_lists_top_spenders_highest_first() -> None:
    cost = bill({**QUIET_WEEK, DAY: {"cart": 40.0, "checkout": 100.0, "search": 70.0, "x": 1.0}})

    found = watch(cost=cost, settings={"top": 3})
    report = cost_report(
        make_context(now=NOW, metrics=ArrayMetrics(), cost=cost), CostWatcherSettings(top=3)
    )

    summary = found["cost:summary"]
    assert summary.title == "bill for 2026-11-22: $211.00 (day over day +0%, week over week +0%)"
    assert summary.evidence == ("checkout: $100.00", "search: $70.00", "cart: $40.00")
    assert report.top_by_tag == (("checkout", 100.0), ("search", 70.0), ("cart", 40.0))
    assert report.day == DAY
    assert report.total == 211.0
    assert list(report.by_service) == [EC2, RDS]


def test_no_figures_for_yesterday_yet_is_said_not_a_jump() -> None:
    found = watch(cost=bill({WEEK_BEFORE: STEADY, DAY_BEFORE: STEADY}))

    assert list(found) == ["cost:summary"]
    assert found["cost:summary"].title == "fixture bill has no figures for 2026-11-22 yet"


def test_no_cost_source_is_an_info_finding_and_idle_databases_are_still_found() -> None:
    found = watch(targets=DB_TARGETS, knobs=DB_KNOBS, metrics=connections(staging=0.0, prod=42.0))

    assert found["cost:source"].severity == "info"
    assert found["cost:source"].title == "no cost source configured"
    assert "idle:orders-db/staging" in found


def test_an_idle_database_is_proposed_one_class_smaller() -> None:
    metrics = connections(staging=0.0, prod=42.0)

    analyzed = watch(targets=DB_TARGETS, knobs=DB_KNOBS, metrics=metrics, cost=bill(QUIET_WEEK))
    found = watch(
        optimize=True, targets=DB_TARGETS, knobs=DB_KNOBS, metrics=metrics, cost=bill(QUIET_WEEK)
    )

    assert analyzed["idle:orders-db/staging"].change is None
    idle = found["idle:orders-db/staging"]
    assert idle.title == "orders-db/staging has been idle for 7 days"
    assert idle.change is not None
    assert idle.change.kind == "cost"
    assert (idle.change.service, idle.change.env) == ("orders-db", "staging")
    assert idle.change.changes == (KnobChange("instance_class", "db.t3.small"),)
    assert idle.change.requested_by == "agent:CostWatcher"
    assert idle.change.rationale == (
        "orders-db/staging had no db_connections for 7 days; db.t3.medium → db.t3.small "
        "saves about $26.28/month."
    )
    assert "db_connections = 0 at all 168 hourly points over 7 days" in idle.change.evidence
    assert idle.score == pytest.approx(26.28)
    assert "idle:orders-db/prod" not in found


def test_missing_metrics_are_not_idleness() -> None:
    two_days = [np.nan] * (5 * 24) + [0.0] * (2 * 24)

    found = watch(
        optimize=True, targets=DB_TARGETS, knobs=DB_KNOBS, metrics=connections(staging=two_days)
    )

    unsure = found["idle:orders-db/staging"]
    assert unsure.title == "cannot tell whether orders-db/staging is idle"
    assert "only 48 of 168 hourly db_connections points" in unsure.detail.lower()
    assert "missing data is not idleness" in unsure.detail
    assert unsure.change is None
    assert found["idle:orders-db/prod"].change is None  # no series at all for prod


def test_one_connection_in_a_week_is_not_idle() -> None:
    once = [0.0] * (7 * 24)
    once[100] = 1.0

    found = watch(
        optimize=True, targets=DB_TARGETS, knobs=DB_KNOBS, metrics=connections(staging=once)
    )

    assert "idle:orders-db/staging" not in found


def test_no_smaller_class_known_gives_a_finding_without_a_change() -> None:
    knobs = {("orders-db", "staging"): {"instance_class": "db.t3.small"}}

    found = watch(optimize=True, targets=DB_TARGETS, knobs=knobs, metrics=connections(staging=0.0))

    idle = found["idle:orders-db/staging"]
    assert idle.change is None
    assert idle.detail.startswith("No smaller class is known for db.t3.small")


def test_no_further_step_down_until_the_smaller_class_was_idle_long_enough() -> None:
    memory = DictMemory()
    metrics = connections(staging=0.0)
    settings = {"downsize": {"db.t3.medium": "db.t3.small", "db.t3.small": "db.t3.micro"}}
    first = watch(
        optimize=True,
        settings=settings,
        targets=DB_TARGETS,
        knobs=DB_KNOBS,
        metrics=metrics,
        memory=memory,
    )
    applied = {("orders-db", "staging"): {"instance_class": "db.t3.small"}}

    later = keyed(
        run_once(
            CostWatcher,
            optimize=True,
            settings=settings,
            now=NOW + timedelta(hours=3),
            targets=DB_TARGETS,
            knobs=applied,
            metrics=metrics,
            memory=memory,
        )
    )

    assert first["idle:orders-db/staging"].change is not None
    assert later["idle:orders-db/staging"].change is None
    assert "must sit idle for 7 days" in later["idle:orders-db/staging"].detail


def test_a_metrics_source_that_is_down_is_an_error_not_a_crash() -> None:
    with pytest.raises(SourceUnavailableError, match="connection refused"):
        watch(targets=DB_TARGETS, knobs=DB_KNOBS, metrics=DownMetrics(), cost=bill(QUIET_WEEK))


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"daily_budget": -5}, "daily_budget"),
        ({"budgets": {"checkout": -1}}, "budgets.checkout"),
        ({"idle_days": 0}, "idle_days"),
        ({"downsize": {"db.t3.small": "db.t3.small"}}, "leads back to"),
        ({"downsize": {"large": "small"}}, "downsize.large"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CostWatcherSettings.model_validate(settings)

    assert field in str(caught.value)


def test_on_the_demo_simulation_the_idle_staging_database_is_downsized() -> None:
    cluster = SimulatedCluster(
        services=("checkout", "cart"), environments=("staging", "prod"), clock=lambda: NOW
    )
    cost = SimulatedBill(
        cluster, databases={"orders-db": {"staging": "db.t3.medium", "prod": "db.r6g.large"}}
    )
    metrics = SimulatedMetrics(
        cluster, databases=demo_databases(["orders-db"], ["staging", "prod"])
    )

    found = watch(
        optimize=True,
        targets=DB_TARGETS,
        knobs=DB_KNOBS,
        metrics=metrics,
        cost=cost,
        settings={"daily_budget": 400},
    )

    assert [f.key for f in found.values() if f.change is not None] == ["idle:orders-db/staging"]
    change = found["idle:orders-db/staging"].change
    assert change is not None
    assert change.changes == (KnobChange("instance_class", "db.t3.small"),)
    assert "orders-db on the bill for 2026-11-22: $7.13 (all environments)" in (
        found["idle:orders-db/staging"].evidence
    )
    assert found["cost:summary"].detail.startswith("Top by service tag: orders-db $7.13, checkout")
    assert not [k for k in found if k.startswith("budget:")]


@pytest.mark.parametrize("day", range(24, 32))
def test_a_holiday_week_on_the_simulated_bill_raises_no_alarm(day: int) -> None:
    # Christmas and Boxing Day cut traffic, so replicas and EC2 cost dip and come back; the
    # dip is under every threshold and the return to normal is no jump either.
    now = datetime(2026, 12, day, 6, tzinfo=UTC)
    cluster = SimulatedCluster(
        services=("checkout", "cart", "search"),
        environments=("staging", "prod"),
        clock=lambda: now,
    )
    found = keyed(
        run_once(
            CostWatcher,
            now=now,
            metrics=ArrayMetrics(),
            cost=SimulatedBill(cluster),
            targets=StaticTargets(envs=WORKLOADS),
        )
    )
    assert list(found) == ["cost:summary"]
    assert found["cost:summary"].severity == "info"
