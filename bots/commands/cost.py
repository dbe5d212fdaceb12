"""/cost: yesterday's bill by service and tag, its changes, top spenders and budgets."""

from __future__ import annotations

from agents.cost_watcher import CostWatcherSettings, cost_report, usd
from bots.router import Context, Router
from bots.types import Reply, Table


def _pct(value: float | None) -> str:
    return "new" if value is None else f"{value:+.0f} %"


def install(router: Router) -> None:
    @router.command(
        "cost", usage="/cost", summary="yesterday's cost: top spenders, changes, budgets"
    )
    def cost(ctx: Context) -> Reply:
        runner = ctx.services.agents
        watcher = runner.get("CostWatcher")
        assert isinstance(watcher.settings, CostWatcherSettings)
        # A SourceError (no bill configured) is safe to show; the gateway replies with it.
        report = cost_report(runner.context(watcher.name), watcher.settings)
        if not report.has_data:
            return Reply(text=f"{report.source} has no figures for {report.day} yet.")
        dod = {c.group: c for c in report.day_over_day if c.by == f"tag:{report.tag_key}"}
        wow = {c.group: c for c in report.week_over_week if c.by == f"tag:{report.tag_key}"}
        by_tag = Table(
            title=f"{report.day} by {report.tag_key} ({report.source}), total {usd(report.total)}",
            columns=(report.tag_key, "cost", "day/day", "week/week"),
            rows=tuple(
                (
                    group,
                    usd(amount),
                    _pct(dod[group].pct) if group in dod else "-",
                    _pct(wow[group].pct) if group in wow else "-",
                )
                for group, amount in report.by_tag.items()
            ),
        )
        by_service = Table(
            title="by AWS service",
            columns=("service", "cost"),
            rows=tuple((g, usd(a)) for g, a in report.top_by_service),
        )
        tables = [by_tag, by_service]
        if report.budgets:
            tables.append(
                Table(
                    title="Budgets (per day)",
                    columns=("budget", "spent", "limit", "state"),
                    rows=tuple(
                        (b.group, usd(b.spent), usd(b.budget), b.state) for b in report.budgets
                    ),
                )
            )
        top = ", ".join(f"{g} {usd(a)}" for g, a in report.top_by_tag)
        return Reply(text=f"Top spenders: {top}.", tables=tuple(tables))
