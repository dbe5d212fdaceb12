"""The bill as CostWatcher and /cost see it: their settings, list prices, one day's report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from agents.base import AgentSettings
from agents.sources.base import CostRow, CostSource

__all__ = [
    "DEFAULT_DOWNSIZE",
    "HOURS_PER_MONTH",
    "RDS_HOURLY_USD",
    "BudgetStatus",
    "Change",
    "CostReport",
    "CostWatcherSettings",
    "latest_complete_day",
    "read_report",
]

# On-demand list prices, us-east-1, PostgreSQL single-AZ, USD per hour (approximate, 2024):
# enough to rank a downsizing and estimate its saving, not to reconcile an invoice.
RDS_HOURLY_USD: Mapping[str, float] = {
    "db.t3.micro": 0.018,
    "db.t3.small": 0.036,
    "db.t3.medium": 0.072,
    "db.t3.large": 0.145,
    "db.t3.xlarge": 0.29,
    "db.t4g.micro": 0.016,
    "db.t4g.small": 0.032,
    "db.t4g.medium": 0.065,
    "db.t4g.large": 0.129,
    "db.t4g.xlarge": 0.258,
    "db.m6g.large": 0.168,
    "db.m6g.xlarge": 0.337,
    "db.r6g.large": 0.225,
    "db.r6g.xlarge": 0.45,
    "db.r6g.2xlarge": 0.899,
}
HOURS_PER_MONTH = 730

# One step down each: the next class an idle database is worth trying, never a leap.
DEFAULT_DOWNSIZE: dict[str, str] = {
    "db.r6g.2xlarge": "db.r6g.xlarge",
    "db.r6g.xlarge": "db.r6g.large",
    "db.r6g.large": "db.t4g.large",
    "db.m6g.xlarge": "db.m6g.large",
    "db.m6g.large": "db.t4g.large",
    "db.t4g.xlarge": "db.t4g.large",
    "db.t4g.large": "db.t4g.medium",
    "db.t4g.medium": "db.t4g.small",
    "db.t3.xlarge": "db.t3.large",
    "db.t3.large": "db.t3.medium",
    "db.t3.medium": "db.t3.small",
}

InstanceClass = Annotated[str, StringConstraints(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")]
TagValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Usd = Annotated[float, Field(ge=0, le=10_000_000)]


class CostWatcherSettings(AgentSettings):
    """Budgets and thresholds in USD per UTC day; idleness over whole hours."""

    tag_key: str = Field(
        "service", min_length=1, max_length=128, description="cost-allocation tag naming a service"
    )
    daily_budget: float | None = Field(
        None, ge=0, le=10_000_000, description="USD/day for the whole bill; unset: none"
    )
    budgets: dict[TagValue, Usd] = Field(
        default_factory=dict, description="USD/day per tag value, e.g. {checkout: 150}"
    )
    critical_over_pct: float = Field(
        20, ge=0, le=1000, description="over budget by more than this % is critical, else warning"
    )
    day_over_day_pct: float = Field(
        25,
        gt=0,
        le=10_000,
        description="alert when a cost rose more than this % since the day before",
    )
    week_over_week_pct: float = Field(
        30, gt=0, le=10_000, description="alert when a cost rose more than this % on a week before"
    )
    min_change_usd: float = Field(
        5, ge=0, le=1_000_000, description="ignore rises smaller than this many USD/day"
    )
    top: int = Field(5, ge=1, le=50, description="how many top spenders the summary lists")
    idle_days: int = Field(7, ge=1, le=90, description="days of no activity before idle")
    idle_signal: str = Field(
        "db_connections", min_length=1, max_length=64, description="signal that is 0 when idle"
    )
    min_coverage_pct: float = Field(
        90, gt=0, le=100, description="% of hourly points observed before calling anything idle"
    )
    downsize: dict[InstanceClass, InstanceClass] = Field(
        default_factory=lambda: dict(DEFAULT_DOWNSIZE),
        description="instance class → the next smaller class to propose for an idle database",
    )

    @model_validator(mode="after")
    def _downsize_steps_down(self) -> CostWatcherSettings:
        for start in self.downsize:
            seen, current = {start}, start
            while current in self.downsize:
                current = self.downsize[current]
                if current in seen:
                    raise ValueError(f"downsize: {start} leads back to {current}; make it a chain")
                seen.add(current)
        return self


BudgetState = Literal["ok", "warning", "critical"]


@dataclass(frozen=True)
class Change:
    """One group's cost on the report's day against an earlier day.

    `by` is "total", "service" (an AWS service) or "tag:<key>" (a tag value).
    """

    by: str
    group: str
    current: float
    previous: float

    @property
    def delta(self) -> float:
        return self.current - self.previous

    @property
    def pct(self) -> float | None:
        """Percent change; None when there was no cost before (new spend)."""
        return None if self.previous <= 0 else 100 * self.delta / self.previous


@dataclass(frozen=True)
class BudgetStatus:
    """A daily budget ("total", or a tag value) against what was spent on the report's day."""

    group: str
    spent: float
    budget: float
    state: BudgetState

    @property
    def used_pct(self) -> float | None:
        return None if self.budget <= 0 else 100 * self.spent / self.budget


@dataclass(frozen=True)
class CostReport:
    """The latest complete UTC day of the bill; what /cost renders and CostWatcher judges.

    `by_service` and `by_tag` are sorted highest first. `day_over_day` compares with the day
    before, `week_over_week` with the same weekday a week earlier; each is empty when the bill
    has no figures for that earlier day, so missing data never reads as a jump.
    """

    day: date
    source: str
    tag_key: str
    unit: str
    total: float
    by_service: Mapping[str, float]
    by_tag: Mapping[str, float]
    day_over_day: tuple[Change, ...]
    week_over_week: tuple[Change, ...]
    top_by_tag: tuple[tuple[str, float], ...]
    top_by_service: tuple[tuple[str, float], ...]
    budgets: tuple[BudgetStatus, ...]

    @property
    def has_data(self) -> bool:
        return bool(self.by_service or self.by_tag)


def latest_complete_day(now: datetime) -> date:
    """Yesterday in UTC: Cost Explorer's days are UTC, and today's figures are still growing."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(UTC).date() - timedelta(days=1)


def read_report(
    cost: CostSource,
    *,
    day: date,
    tag_key: str,
    top: int,
    daily_budget: float | None,
    budgets: Mapping[str, float],
    critical_over_pct: float,
) -> CostReport:
    """Two reads of the bill (by service, by tag) covering the day and the week before it."""
    start, end = day - timedelta(days=7), day + timedelta(days=1)
    service_rows = cost.daily_costs(start=start, end=end, group_by="service")
    tag_rows = cost.daily_costs(start=start, end=end, group_by=f"tag:{tag_key}")
    services = _by_day(service_rows)
    tags = _by_day(tag_rows)
    today_services = services.get(day, {})
    today_tags = tags.get(day, {})
    total = sum(today_services.values()) if today_services else sum(today_tags.values())
    ranked_services, ranked_tags = _ranked(today_services), _ranked(today_tags)

    def changes(before: date) -> tuple[Change, ...]:
        if before not in services and before not in tags:
            return ()
        found = [Change("total", "total", total, _total(services, tags, before))]
        found += _changes("service", today_services, services.get(before))
        found += _changes(f"tag:{tag_key}", today_tags, tags.get(before))
        return tuple(sorted(found, key=lambda c: (-c.delta, c.by, c.group)))

    status = []
    if daily_budget is not None:
        status.append(_budget("total", total, daily_budget, critical_over_pct))
    status += [_budget(g, today_tags.get(g, 0.0), b, critical_over_pct) for g, b in budgets.items()]
    return CostReport(
        day=day,
        source=cost.label,
        tag_key=tag_key,
        unit=next((r.unit for r in (*service_rows, *tag_rows)), "USD"),
        total=total,
        by_service=ranked_services,
        by_tag=ranked_tags,
        day_over_day=changes(day - timedelta(days=1)) if today_services or today_tags else (),
        week_over_week=changes(day - timedelta(days=7)) if today_services or today_tags else (),
        top_by_tag=tuple(ranked_tags.items())[:top],
        top_by_service=tuple(ranked_services.items())[:top],
        budgets=tuple(status),
    )


def _by_day(rows: Iterable[CostRow]) -> dict[date, dict[str, float]]:
    days: dict[date, dict[str, float]] = {}
    for row in rows:
        groups = days.setdefault(row.day, {})
        groups[row.group] = groups.get(row.group, 0.0) + row.amount
    return days


def _total(
    services: Mapping[date, Mapping[str, float]],
    tags: Mapping[date, Mapping[str, float]],
    day: date,
) -> float:
    return sum((services.get(day) or tags.get(day) or {}).values())


def _changes(by: str, now: Mapping[str, float], before: Mapping[str, float] | None) -> list[Change]:
    if before is None:
        return []
    return [Change(by, g, now.get(g, 0.0), before.get(g, 0.0)) for g in {*now, *before}]


def _ranked(groups: Mapping[str, float]) -> dict[str, float]:
    return dict(sorted(groups.items(), key=lambda item: (-item[1], item[0])))


def _budget(group: str, spent: float, budget: float, critical_over_pct: float) -> BudgetStatus:
    state: BudgetState = "ok"
    if spent > budget:
        state = "critical" if spent > budget * (1 + critical_over_pct / 100) else "warning"
    return BudgetStatus(group=group, spent=spent, budget=budget, state=state)
