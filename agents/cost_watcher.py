"""CostWatcher: judges yesterday's AWS bill and proposes downsizing databases that sit idle."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np

from agents._cost_report import (
    DEFAULT_DOWNSIZE,
    HOURS_PER_MONTH,
    RDS_HOURLY_USD,
    BudgetStatus,
    Change,
    CostReport,
    CostWatcherSettings,
    latest_complete_day,
    read_report,
)
from agents.base import AgentContext, Finding, ProposingAgent, Severity
from agents.errors import SourceError
from agents.registry import registry
from approval_engine.model import ChangeRequest, KnobChange

__all__ = [
    "DEFAULT_DOWNSIZE",
    "BudgetStatus",
    "Change",
    "CostReport",
    "CostWatcher",
    "CostWatcherSettings",
    "cost_report",
    "usd",
]

NAME = "CostWatcher"
KNOB = "instance_class"
NO_COST_SOURCE = "no cost source configured"


def cost_report(ctx: AgentContext, settings: CostWatcherSettings) -> CostReport:
    """The latest complete day of the bill; raises SourceError when there is no cost source."""
    if ctx.cost is None:
        raise SourceError(f"{NO_COST_SOURCE}: CostWatcher and /cost need the AWS bill")
    return read_report(
        ctx.cost,
        day=latest_complete_day(ctx.now),
        tag_key=settings.tag_key,
        top=settings.top,
        daily_budget=settings.daily_budget,
        budgets=settings.budgets,
        critical_over_pct=settings.critical_over_pct,
    )


@dataclasses.dataclass(frozen=True)
class _Idle:
    service: str
    env: str
    points: int


@registry.agent(name=NAME, settings=CostWatcherSettings, every="1h", timeout="2m")
class CostWatcher(ProposingAgent[CostWatcherSettings]):
    """Watches the AWS bill for budget breaches and jumps; proposes downsizing idle databases."""

    def run(self, ctx: AgentContext, *, propose: bool) -> list[Finding]:
        report = None if ctx.cost is None else cost_report(ctx, self.settings)
        findings = self._bill_findings(ctx, report)
        for service, env in self._databases(ctx):
            checked = self._check_idle(ctx, service, env)
            if isinstance(checked, _Idle):
                findings.append(self._idle_finding(ctx, checked, report, propose=propose))
            elif checked is not None:
                findings.append(checked)
        return findings

    # -- the bill ---------------------------------------------------------------------------

    def _bill_findings(self, ctx: AgentContext, report: CostReport | None) -> list[Finding]:
        if report is None:
            return [
                _finding(
                    "cost:source",
                    "info",
                    NO_COST_SOURCE,
                    "Budgets and cost jumps are not checked until a bill is configured "
                    "(AWS Cost Explorer, or the demo's simulated bill); idle databases still are.",
                )
            ]
        if not report.has_data:
            return [
                _finding(
                    "cost:summary",
                    "info",
                    f"{report.source} has no figures for {report.day} yet",
                    "Cost Explorer can lag by up to a day; the next run looks again.",
                )
            ]
        findings = [self._budget_finding(ctx, report, b) for b in report.budgets if b.state != "ok"]
        s = self.settings
        for label, changes, limit in (
            ("day over day", report.day_over_day, s.day_over_day_pct),
            ("week over week", report.week_over_week, s.week_over_week_pct),
        ):
            findings += [
                self._jump_finding(ctx, report, c, label)
                for c in changes
                if c.delta >= s.min_change_usd and (c.pct is None or c.pct > limit)
            ]
        findings.append(_summary(report))
        return findings

    def _budget_finding(self, ctx: AgentContext, report: CostReport, b: BudgetStatus) -> Finding:
        what = "the whole bill" if b.group == "total" else b.group
        over = f" (+{b.used_pct - 100:.0f}%)" if b.used_pct is not None else ""
        return _finding(
            f"budget:{b.group}",
            "critical" if b.state == "critical" else "warning",
            f"{what} cost {usd(b.spent)} on {report.day}, over its {usd(b.budget)}/day "
            f"budget{over}",
            f"{usd(b.spent - b.budget)} over budget; more than "
            f"{self.settings.critical_over_pct:g}% over is critical (settings.critical_over_pct).",
            service=b.group if b.group in ctx.targets.services() else None,
            evidence=(f"spent {usd(b.spent)}", f"budget {usd(b.budget)}/day"),
            score=b.spent - b.budget,
        )

    def _jump_finding(
        self, ctx: AgentContext, report: CostReport, c: Change, label: str
    ) -> Finding:
        what = "the whole bill" if c.by == "total" else c.group
        rise = "new spend" if c.pct is None else f"+{c.pct:.0f}%"
        key = "dod" if label == "day over day" else "wow"
        return _finding(
            f"jump:{key}:{c.by}:{c.group}",
            "warning",
            f"{what} cost rose {rise} {label}: {usd(c.previous)} → {usd(c.current)}",
            f"{report.day} against {'the day before' if key == 'dod' else 'a week earlier'}, "
            f"grouped by {c.by}.",
            service=c.group if c.by != "service" and c.group in ctx.targets.services() else None,
            evidence=(f"before {usd(c.previous)}", f"{report.day} {usd(c.current)}"),
            score=c.delta,
        )

    # -- idle databases ---------------------------------------------------------------------

    @staticmethod
    def _databases(ctx: AgentContext) -> list[tuple[str, str]]:
        return [
            (name, env)
            for name in ctx.targets.services()
            if ctx.targets.kind(name) == "database"
            for env in ctx.targets.environments(name)
        ]

    def _check_idle(self, ctx: AgentContext, service: str, env: str) -> _Idle | Finding | None:
        """_Idle when every point is 0, a finding when that cannot be told, else None."""
        s = self.settings
        end = _hour(ctx.now)
        try:
            series = ctx.metrics.series(
                s.idle_signal,
                service,
                env,
                start=end - timedelta(days=s.idle_days),
                end=end,
                step=timedelta(hours=1),
            )
        except SourceError as e:
            return _unsure(service, env, f"{ctx.metrics.label} cannot say: {e}")
        observed = series.values[np.isfinite(series.values)]
        if observed.size and observed.max() > 0:
            return None
        if observed.size < len(series) * s.min_coverage_pct / 100:
            return _unsure(
                service,
                env,
                f"Only {observed.size} of {len(series)} hourly {s.idle_signal} points in the "
                f"last {s.idle_days} days were observed, and missing data is not idleness "
                f"(at least {s.min_coverage_pct:g}% are needed).",
            )
        return _Idle(service=service, env=env, points=int(observed.size))

    def _idle_finding(
        self, ctx: AgentContext, idle: _Idle, report: CostReport | None, *, propose: bool
    ) -> Finding:
        s = self.settings
        name, env = idle.service, idle.env
        current = str(ctx.knobs.current_values(name, env).get(KNOB, "")) or None
        smaller = s.downsize.get(current) if current else None
        evidence = [
            f"{s.idle_signal} = 0 at all {idle.points} hourly points over {s.idle_days} days",
            f"{KNOB}: {current or 'unknown'}",
        ]
        saving = _monthly_saving(current, smaller)
        if saving is not None:
            evidence.append(f"about {usd(saving)}/month less at us-east-1 on-demand list prices")
        if report is not None and name in report.by_tag:
            evidence.append(
                f"{name} on the bill for {report.day}: {usd(report.by_tag[name])} "
                "(all environments)"
            )
        title = f"{name}/{env} has been idle for {s.idle_days} days"
        blocked = self._why_not(ctx, name, env, current, smaller)
        detail = blocked or f"Downsizing {current} → {smaller} is worth proposing."
        change = None
        if propose and blocked is None and current and smaller:
            change = ChangeRequest(
                kind="cost",
                service=name,
                env=env,
                changes=(KnobChange(KNOB, smaller),),
                rationale=(
                    f"{name}/{env} had no {s.idle_signal} for {s.idle_days} days; "
                    f"{current} → {smaller}"
                    + (f" saves about {usd(saving)}/month." if saving is not None else ".")
                ),
                requested_by=f"agent:{NAME}",
                evidence=tuple(evidence),
            )
            ctx.memory.put(_memory_key(name, env), {"to": smaller, "at": ctx.now.isoformat()})
        return _finding(
            f"idle:{name}/{env}",
            "info",
            title,
            detail,
            service=name,
            env=env,
            evidence=tuple(evidence),
            score=saving or 0.0,
            change=change,
        )

    def _why_not(
        self, ctx: AgentContext, name: str, env: str, current: str | None, smaller: str | None
    ) -> str | None:
        """Why no downsizing is proposed, or None when one is."""
        if not ctx.targets.has_knob(name, KNOB) or current is None:
            return f"{name} has no {KNOB} knob in config/targets.yaml, so nothing is proposed."
        if smaller is None:
            return (
                f"No smaller class is known for {current}: add one under CostWatcher's "
                "`downsize` setting in config/agents.yaml."
            )
        last = ctx.memory.get(_memory_key(name, env))
        if isinstance(last, dict) and last.get("to") == current:
            since = datetime.fromisoformat(str(last["at"]))
            if ctx.now - since < timedelta(days=self.settings.idle_days):
                return (
                    f"{current} was proposed on {since.date()}; it must sit idle for "
                    f"{self.settings.idle_days} days before a further step down."
                )
        return None


def _summary(report: CostReport) -> Finding:
    tags = ", ".join(f"{g} {usd(a)}" for g, a in report.top_by_tag)
    services = ", ".join(f"{g} {usd(a)}" for g, a in report.top_by_service)
    periods = (("day over day", report.day_over_day), ("week over week", report.week_over_week))
    changes = [f"{label} {_pct(c)}" for label, found in periods for c in found if c.by == "total"]
    return _finding(
        "cost:summary",
        "info",
        f"bill for {report.day}: {usd(report.total)}"
        + (f" ({', '.join(changes)})" if changes else ""),
        f"Top by {report.tag_key} tag: {tags or 'none'}. Top AWS services: {services or 'none'}. "
        f"Source: {report.source}.",
        evidence=tuple(f"{g}: {usd(a)}" for g, a in report.top_by_tag),
    )


def _unsure(service: str, env: str, why: str) -> Finding:
    return _finding(
        f"idle:{service}/{env}",
        "info",
        f"cannot tell whether {service}/{env} is idle",
        why,
        service=service,
        env=env,
    )


def _finding(
    key: str,
    severity: Severity,
    title: str,
    detail: str,
    *,
    service: str | None = None,
    env: str | None = None,
    evidence: tuple[str, ...] = (),
    score: float = 0.0,
    change: ChangeRequest | None = None,
) -> Finding:
    return Finding(
        agent=NAME,
        key=key,
        severity=severity,
        title=title,
        detail=detail,
        service=service,
        env=env,
        evidence=evidence,
        score=score,
        change=change,
    )


def _monthly_saving(current: str | None, smaller: str | None) -> float | None:
    now = RDS_HOURLY_USD.get(current or "")
    then = RDS_HOURLY_USD.get(smaller or "")
    return None if now is None or then is None else (now - then) * HOURS_PER_MONTH


def _memory_key(service: str, env: str) -> str:
    return f"downsized:{service}/{env}"


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def usd(amount: float) -> str:
    """Money as the bill and chat show it: $1,234.50."""
    return f"${amount:,.2f}"


def _pct(change: Change) -> str:
    return "new" if change.pct is None else f"{change.pct:+.0f}%"
