"""One real Prometheus for the sources tests, backfilled from the simulated cluster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from agents.sim.cluster import SimulatedCluster
from tests.prometheus_server import Gap, SimulatedPrometheus, simulated_prometheus

END = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday, midnight UTC
WEEKS = timedelta(weeks=3, hours=1)  # the hour fills the [5m] windows at the start of 3 weeks
DAY = timedelta(days=1, hours=1)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedPrometheus]:
    """Three weeks of checkout and search in prod, a day of the rest and of orders-db;
    cart/prod missed its scrapes for an hour, 6 hours before the end."""
    cluster = SimulatedCluster(
        services=["checkout", "cart", "search"], environments=["staging", "prod"]
    )
    history = {(service, env): DAY for service in cluster.services for env in cluster.environments}
    history |= {("checkout", "prod"): WEEKS, ("search", "prod"): WEEKS}
    history |= {("orders-db", "staging"): DAY, ("orders-db", "prod"): DAY}
    with simulated_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        cluster,
        end=END,
        history=history,
        databases={"orders-db": {"staging": 0.0, "prod": 42.0}},
        gaps=[Gap("cart", "prod", END - timedelta(hours=6), END - timedelta(hours=5))],
    ) as running:
        yield running
