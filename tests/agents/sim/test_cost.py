"""The simulated bill: Cost Explorer's groupings, priced from the simulated cluster."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from agents.errors import SourceError
from agents.sim import SimulatedCluster, SimulationError, WorkloadSpec
from agents.sim.cost import EC2, RDS, S3, SimulatedBill
from agents.sources.base import CostRow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday
SUNDAY, MONDAY = date(2026, 11, 22), date(2026, 11, 23)
ORDERS_DB = {"orders-db": {"staging": "db.t3.medium", "prod": "db.r6g.large"}}


def cluster(*, seed: int = 7) -> SimulatedCluster:
    return SimulatedCluster(
        services=("checkout", "cart", "search"),
        environments=("staging", "prod"),
        seed=seed,
        clock=lambda: NOW,
    )


def totals(rows: list[CostRow]) -> dict[date, dict[str, float]]:
    days: dict[date, dict[str, float]] = defaultdict(dict)
    for row in rows:
        assert row.group not in days[row.day], f"{row.group} twice on {row.day}"
        days[row.day][row.group] = row.amount
    return dict(days)


def test_groups_by_aws_service_name() -> None:
    bill = SimulatedBill(cluster(), databases=ORDERS_DB)

    days = totals(
        bill.daily_costs(start=SUNDAY, end=MONDAY + timedelta(days=1), group_by="service")
    )

    assert sorted(days) == [SUNDAY, MONDAY]
    for groups in days.values():
        assert set(groups) == {EC2, RDS, S3}
        assert groups[RDS] == pytest.approx(24 * (0.072 + 0.225))  # t3.medium + r6g.large
        assert groups[S3] == 4.0
        assert groups[EC2] > 0


def test_groups_by_service_tag_and_agrees_with_the_service_grouping() -> None:
    bill = SimulatedBill(cluster(), databases=ORDERS_DB)

    by_tag = totals(bill.daily_costs(start=SUNDAY, end=MONDAY, group_by="tag:service"))[SUNDAY]
    by_service = totals(bill.daily_costs(start=SUNDAY, end=MONDAY, group_by="service"))[SUNDAY]

    assert set(by_tag) == {"checkout", "cart", "search", "orders-db", "(untagged)"}
    assert by_tag["(untagged)"] == by_service[S3]
    assert by_tag["orders-db"] == by_service[RDS]
    assert sum(by_tag.values()) == pytest.approx(sum(by_service.values()))
    # search runs the most and largest pods in the simulation, cart the fewest.
    assert by_tag["search"] > by_tag["checkout"] > by_tag["cart"]


def test_an_unknown_tag_key_is_all_untagged() -> None:
    rows = SimulatedBill(cluster()).daily_costs(start=SUNDAY, end=MONDAY, group_by="tag:team")

    assert [r.group for r in rows] == ["(untagged)"]


def test_is_deterministic_and_labelled_as_a_simulation() -> None:
    first = SimulatedBill(cluster(seed=3), databases=ORDERS_DB)
    second = SimulatedBill(cluster(seed=3), databases=ORDERS_DB)
    start = SUNDAY - timedelta(days=7)

    assert first.daily_costs(start=start, end=MONDAY, group_by="tag:service") == (
        second.daily_costs(start=start, end=MONDAY, group_by="tag:service")
    )
    assert "simulated" in first.label


def test_more_replicas_cost_more() -> None:
    bigger = cluster()
    bigger.apply(
        "checkout",
        "prod",
        WorkloadSpec(
            replicas=10,
            hpa_enabled=True,
            min_replicas=10,
            max_replicas=20,
            target_cpu_percent=70,
            cpu_request_millicores=500,
        ),
    )

    def sunday(bill: SimulatedBill) -> dict[str, float]:
        return totals(bill.daily_costs(start=SUNDAY, end=MONDAY, group_by="tag:service"))[SUNDAY]

    default, scaled = sunday(SimulatedBill(cluster())), sunday(SimulatedBill(bigger))

    assert scaled["checkout"] >= 24 * 10 * 0.05 > default["checkout"]
    assert scaled["cart"] == default["cart"]


def test_bad_questions_are_source_errors() -> None:
    bill = SimulatedBill(cluster())

    with pytest.raises(SourceError, match="use 'service' or 'tag:<key>'"):
        bill.daily_costs(start=SUNDAY, end=MONDAY, group_by="region")
    with pytest.raises(SourceError, match="at most 92"):
        bill.daily_costs(start=SUNDAY - timedelta(days=365), end=MONDAY, group_by="service")
    assert bill.daily_costs(start=MONDAY, end=SUNDAY, group_by="service") == []


def test_an_unpriced_instance_class_is_refused_up_front() -> None:
    with pytest.raises(SimulationError, match=r"no simulated price for db\.x9\.huge"):
        SimulatedBill(cluster(), databases={"orders-db": {"prod": "db.x9.huge"}})
