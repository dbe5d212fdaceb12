"""A simulated AWS bill for `opsgate demo`, priced from the simulated cluster; not a real one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import ClassVar

from agents._cost_report import RDS_HOURLY_USD
from agents.errors import SourceError
from agents.sim.cluster import SimulatedCluster
from agents.sim.workload import SimulationError
from agents.sources.base import CostRow

__all__ = ["EC2", "RDS", "S3", "TAG_KEY", "UNTAGGED", "SimulatedBill"]

EC2 = "Amazon Elastic Compute Cloud - Compute"
RDS = "Amazon Relational Database Service"
S3 = "Amazon Simple Storage Service"
TAG_KEY = "service"  # the cost-allocation tag the simulated resources carry
UNTAGGED = "(untagged)"  # what Cost Explorer calls cost without the tag: here, the S3 buckets
MAX_DAYS = 92


class SimulatedBill:
    """Daily cost computed from the simulated cluster, grouped like Cost Explorer's.

    EC2: each workload's ready replicas, sampled hourly and averaged over the day, times
    `pod_hourly_usd`, summed over environments. RDS: each database's instance class (name →
    env → class) at list price, all day. S3: `s3_daily_usd`, untagged. Every figure is a pure
    function of the cluster's seed and specs, so the same day always costs the same.
    """

    label: ClassVar[str] = "simulated bill"

    def __init__(
        self,
        cluster: SimulatedCluster,
        *,
        databases: Mapping[str, Mapping[str, str]] | None = None,
        pod_hourly_usd: float = 0.05,
        s3_daily_usd: float = 4.0,
    ) -> None:
        unknown = sorted(
            {c for envs in (databases or {}).values() for c in envs.values()} - set(RDS_HOURLY_USD)
        )
        if unknown:
            raise SimulationError(
                f"no simulated price for {', '.join(unknown)}; known classes: "
                f"{', '.join(RDS_HOURLY_USD)}"
            )
        if pod_hourly_usd < 0 or s3_daily_usd < 0:
            raise SimulationError("prices must be >= 0")
        self._cluster = cluster
        self._databases = {name: dict(envs) for name, envs in (databases or {}).items()}
        self._pod_hourly_usd = pod_hourly_usd
        self._s3_daily_usd = s3_daily_usd

    def daily_costs(self, *, start: date, end: date, group_by: str) -> list[CostRow]:
        if group_by == "service":
            tagged = False
        elif group_by.startswith("tag:") and group_by[4:]:
            tagged = True
        else:
            raise SourceError(
                f"cannot group the bill by {group_by!r}: use 'service' or 'tag:<key>'"
            )
        days = (end - start).days
        if days > MAX_DAYS:
            raise SourceError(f"{days} days asked for, at most {MAX_DAYS} at a time")
        rows = []
        for offset in range(max(0, days)):
            day = start + timedelta(days=offset)
            groups: dict[str, float] = {}
            for service, tag, amount in self._charges(day):
                if tagged:
                    key = tag if group_by == f"tag:{TAG_KEY}" and tag else UNTAGGED
                else:
                    key = service
                groups[key] = groups.get(key, 0.0) + amount
            rows += [CostRow(day=day, group=g, amount=round(a, 4)) for g, a in groups.items()]
        return rows

    def _charges(self, day: date) -> Iterator[tuple[str, str | None, float]]:
        """(AWS service, `service` tag value, USD) for each resource billed on `day`."""
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        for service in self._cluster.services:
            for env in self._cluster.environments:
                replicas = [
                    value
                    for _, value in self._cluster.series(
                        "replicas",
                        service,
                        env,
                        start=midnight,
                        end=midnight + timedelta(days=1),
                        step=timedelta(hours=1),
                    )
                ]
                pod_hours = 24 * sum(replicas) / len(replicas)
                yield EC2, service, pod_hours * self._pod_hourly_usd
        for name, envs in self._databases.items():
            for instance_class in envs.values():
                yield RDS, name, 24 * RDS_HOURLY_USD[instance_class]
        yield S3, None, self._s3_daily_usd
