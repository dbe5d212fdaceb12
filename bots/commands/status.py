"""/status: services per environment, open proposals, agents."""

from __future__ import annotations

from approval_engine.deploy import AppStatus, Deployer, StatusBoard
from approval_engine.errors import BackendError
from bots.commands.agents import ago
from bots.errors import CommandError
from bots.router import Context, Router
from bots.types import Reply, Table


def _cell(status: AppStatus, *, health: bool) -> str:
    revision = (status.revision or "-")[:7]
    return f"{status.sync} {revision}" + (f" {status.health}" if health else "")


def _deployed(deployer: Deployer, apps: list[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Each app's sync and revision, and its health when ArgoCD reports it. A deployer that
    does not answer leaves the cells as `?` and says why, rather than failing /status."""
    try:
        if isinstance(deployer, StatusBoard):
            found = deployer.statuses(apps)
            return {
                app: _cell(found[app], health=True) if app in found else "no such app"
                for app in apps
            }, ()
        return {app: _cell(deployer.status(app), health=False) for app in apps}, ()
    except BackendError as e:
        label = getattr(deployer, "label", "the deployer")
        return dict.fromkeys(apps, "?"), (f"{label} did not answer: {e}",)


def install(router: Router) -> None:
    @router.command(
        "status",
        usage="/status [service]",
        summary="services per environment, open proposals and agents",
    )
    def status(ctx: Context) -> Reply:
        services = ctx.services
        wanted = ctx.args[0] if ctx.args else None
        names = services.targets.workloads()
        if wanted is not None:
            if services.targets.kind(wanted) != "workload":  # also a clear error for a typo
                raise CommandError(f"{wanted} is a {services.targets.kind(wanted)}, not a workload")
            names = [wanted]
        tables = []
        apps = [
            services.targets.app(name, env)
            for env in services.targets.all_environments()
            for name in names
            if env in services.targets.environments(name)
        ]
        deployed, trouble = _deployed(services.deployer, apps)
        for env in services.targets.all_environments():
            rows = []
            for name in names:
                if env not in services.targets.environments(name):
                    continue
                s = services.cluster.status(name, env)
                hpa = (
                    f"{s.spec.min_replicas}-{s.spec.max_replicas} @{s.spec.target_cpu_percent}%"
                    if s.spec.hpa_enabled
                    else "off"
                )
                rows.append(
                    (
                        name,
                        str(s.replicas),
                        hpa,
                        f"{s.load_rps:.0f} rps",
                        f"{s.cpu_percent:.0f}%",
                        f"{s.latency_p95_ms:.0f} ms",
                        s.health,
                        deployed[services.targets.app(name, env)],
                    )
                )
            if rows:
                tables.append(
                    Table(
                        title=f"{env} ({services.cluster.label})",
                        columns=(
                            "service",
                            "replicas",
                            "HPA",
                            "load",
                            "CPU",
                            "p95",
                            "health",
                            "argocd" if isinstance(services.deployer, StatusBoard) else "sync",
                        ),
                        rows=tuple(rows),
                    )
                )
        proposals = services.engine.proposals(active_only=True)
        if proposals:
            tables.append(
                Table(
                    title="Open proposals",
                    columns=("id", "state", "change", "approvals"),
                    rows=tuple(
                        (
                            p.id,
                            p.state.value,
                            p.title.split(": ", 1)[-1],
                            f"{len(p.current_approvals())} of {p.quorum}",
                        )
                        for p in proposals
                    ),
                )
            )
        tables.append(_agents_table(ctx))
        footer = trouble + (() if proposals else ("No open proposals.",))
        return Reply(tables=tuple(tables), footer=footer)


def _agents_table(ctx: Context) -> Table:
    runner = ctx.services.agents
    now = runner.clock()
    counts: dict[str, int] = {}
    for row in runner.findings():
        counts[row.agent] = counts.get(row.agent, 0) + 1
    rows = []
    for agent in runner.agents():
        last = runner.last_run(agent.name)
        rows.append(
            (
                agent.name,
                agent.schedule() if agent.enabled else "disabled",
                f"{ago(last.started_at, now)}: {last.outcome}" if last else "never",
                str(counts.get(agent.name, 0)),
            )
        )
    return Table(
        title="Agents", columns=("agent", "schedule", "last run", "findings"), rows=tuple(rows)
    )
