"""/agent and /analysis: the analyzer agents, their runs and their current opportunities."""

from __future__ import annotations

from datetime import datetime

from agents.base import SEVERITY_RANK, Finding
from agents.graphs import render_png
from agents.runner import RunResult
from agents.store import FindingRow
from bots.errors import CommandError, UsageError
from bots.router import Context, Router
from bots.types import Button, Reply, Table

USAGE = "/agent status | /agent <name> analyze | /agent <name> optimize"


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "in " + ago(now, when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _status(ctx: Context) -> Reply:
    runner = ctx.services.agents
    scheduler = ctx.services.scheduler
    now = runner.clock()
    rows = []
    for agent in runner.agents():
        last = runner.last_run(agent.name)
        if not agent.enabled:
            upcoming = "disabled"
        elif scheduler is None:
            upcoming = "scheduler off"
        else:
            at = scheduler.next_run(agent.name)
            upcoming = f"{at:%H:%M} UTC" if at else "-"
        rows.append(
            (
                agent.name,
                "yes" if agent.enabled else "no",
                agent.schedule(),
                ago(last.started_at, now) if last else "never",
                (last.outcome + (f": {last.message}" if last.message else "")) if last else "-",
                upcoming,
            )
        )
    return Reply(
        tables=(
            Table(
                title="Agents",
                columns=("agent", "enabled", "schedule", "last run", "outcome", "next run"),
                rows=tuple(rows),
            ),
        ),
        footer=("/agent <name> analyze runs one now; optimize also proposes changes.",),
    )


def finding_lines(findings: list[Finding]) -> list[str]:
    ordered = sorted(findings, key=lambda f: (-SEVERITY_RANK[f.severity], -f.score))
    lines = []
    for f in ordered:
        lines.append(f"• {f.severity}: {f.title}")
        if f.detail:
            lines.append(f"  {f.detail}")
    return lines


def run_reply(result: RunResult) -> Reply:
    head = f"{result.agent} {result.mode}: {result.outcome}"
    if result.outcome != "ok":
        return Reply(text=f"{head}. {result.message}", error=result.outcome == "failed")
    lines = [f"{head}, {len(result.findings)} finding(s)."]
    lines += finding_lines(result.findings)
    buttons = []
    for finding, submitted in result.submitted:
        pid = submitted.proposal_id
        note = f" ({submitted.message})" if submitted.message else ""
        lines.append(
            f"→ {finding.change.describe() if finding.change else ''}: "
            f"{submitted.outcome}{' ' + pid if pid else ''}{note}"
        )
        if pid and submitted.outcome in ("opened", "updated", "unchanged"):
            buttons += [
                Button("Approve", f"/approve {pid}", style="primary"),
                Button("Diff", f"/diff {pid}"),
            ]
    graph = next((f.graph for f in result.findings if f.graph is not None), None)
    return Reply(
        text="\n".join(lines),
        buttons=tuple(buttons),
        image_png=render_png(graph) if graph is not None and not graph.is_empty() else None,
    )


def _opportunities(rows: list[FindingRow]) -> Reply:
    if not rows:
        return Reply(text="No current findings. Agents report here after their runs.")
    ranked = sorted(rows, key=lambda r: (r.change is None, -SEVERITY_RANK[r.severity], -r.score))
    table = Table(
        title="Current findings, opportunities first",
        columns=("agent", "severity", "finding", "proposal"),
        rows=tuple(
            (
                r.agent,
                r.severity,
                r.title,
                r.proposal_id or ("-" if r.change is None else "pending"),
            )
            for r in ranked
        ),
    )
    return Reply(tables=(table,))


def install(router: Router) -> None:
    @router.command("agent", usage=USAGE, summary="agents: status, or run one now")
    def agent(ctx: Context) -> Reply:
        if not ctx.args or ctx.args == ["status"]:
            return _status(ctx)
        if len(ctx.args) != 2 or ctx.args[1] not in ("analyze", "optimize"):
            raise UsageError(f"Usage: {USAGE}")
        name, mode = ctx.args
        runner = ctx.services.agents
        configured = runner.get(name)
        if mode == "optimize" and not ctx.actor.has("operator"):
            reason = (
                "/agent … optimize may open proposals and needs the operator role; "
                f"you are a {ctx.actor.top_role}"
            )
            ctx.services.engine.audit_denial(
                actor=ctx.actor.name,
                action="agent optimize",
                subject=configured.name,
                reason=reason,
            )
            raise CommandError(f"Not allowed: {reason}.")
        if mode == "optimize" and not configured.spec.proposes:
            raise CommandError(f"{configured.name} only analyzes; it never proposes changes.")
        result = runner.run(
            configured.name,
            mode="optimize" if mode == "optimize" else "analyze",
            trigger=f"chat:{ctx.actor.name}",
        )
        return run_reply(result)

    @router.command("analysis", summary="every agent's current findings, ranked")
    def analysis(ctx: Context) -> Reply:
        return _opportunities(ctx.services.agents.findings())
