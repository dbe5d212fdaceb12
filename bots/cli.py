"""The `opsgate` command line: demo, chat, config check, audit."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from agents.errors import AgentError
from approval_engine import audit
from approval_engine.errors import ApprovalError, ConfigError
from approval_engine.store import Store
from bots.app import build_runtime
from bots.commands.agents import run_reply
from bots.config import ConfigBundle, load_config
from bots.console import ConsoleAdapter, ConsoleNotifier
from bots.errors import BotError
from bots.render import render_text
from bots.settings import PROJECT_ROOT, RuntimeSettings

app = typer.Typer(
    help="opsgate: ChatOps for infrastructure changes that go through review.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Check the YAML configuration.", no_args_is_help=True)
audit_app = typer.Typer(help="Read and verify the hash-chained audit log.", no_args_is_help=True)
app.add_typer(config_app, name="config")
agents_app = typer.Typer(help="The analyzer agents: list them, run one now.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(agents_app, name="agents")
alerts_app = typer.Typer(help="Alerts received from Alertmanager.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="state directory (env OPSGATE_DATA_DIR; default ./opsgate-data)"
    ),
]
ConfigDir = Annotated[
    Path | None,
    typer.Option("--config", help="config directory (env OPSGATE_CONFIG_DIR; default ./config)"),
]


def _settings(data_dir: Path | None, config_dir: Path | None) -> RuntimeSettings:
    given: dict[str, Path] = {}
    if data_dir is not None:
        given["data_dir"] = data_dir
    if config_dir is not None:
        given["config_dir"] = config_dir
    return RuntimeSettings(**given)  # type: ignore[arg-type]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"opsgate: {message}", err=True)
    return typer.Exit(code=2)


def _load(settings: RuntimeSettings) -> ConfigBundle:
    try:
        return load_config(settings.config_dir, repo_root=PROJECT_ROOT)
    except ConfigError as e:
        typer.echo(f"opsgate: the configuration has {len(e.problems)} problem(s):", err=True)
        for problem in e.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(code=2) from e


def _converse(settings: RuntimeSettings, *, user: str | None, demo: bool, reset: bool) -> None:
    config = _load(settings)
    speaker = user or config.general.demo.default_user
    if config.users.people.get(speaker) is None:
        raise _fail(f"no person {speaker!r} in users.yaml ({', '.join(config.users.people)})")
    interactive = sys.stdin.isatty()
    notifier = ConsoleNotifier(sys.stdout)
    try:
        runtime = build_runtime(settings, config, notifier=notifier, demo=demo, reset=reset)
    except (BotError, ApprovalError, AgentError) as e:
        raise _fail(str(e)) from e
    adapter = ConsoleAdapter(
        stdin=sys.stdin.buffer,
        stdout=sys.stdout,
        user=speaker,
        interactive=interactive,
        graphs_dir=settings.data_dir / "graphs",
        speaker=lambda: runtime.services.speakers.get("console", f"console:{speaker}").split(
            ":", 1
        )[1],
    )
    if demo:
        typer.echo(
            f"opsgate demo: data in {settings.data_dir} (GitOps repo, SQLite); "
            f"workloads are a {runtime.cluster.label}. You are {speaker}; /help lists commands, "
            "/as <name> switches person" + (", /quit leaves." if interactive else "."),
            err=True,
        )
    runtime.gateway.tick()  # resume whatever a previous run left in flight
    if settings.scheduler:
        runtime.start_scheduler()
    try:
        adapter.start(lambda event: runtime.gateway.dispatch(event, adapter.send))
    except KeyboardInterrupt:
        pass
    finally:
        runtime.gateway.tick()
        runtime.close()


@app.command()
def demo(
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
    reset: Annotated[bool, typer.Option("--reset", help="delete the data directory first")] = False,
    user: Annotated[str | None, typer.Option("--user", help="who speaks first")] = None,
) -> None:
    """Everything embedded: sandbox GitOps repo, SQLite, a simulated cluster, console chat."""
    _converse(_settings(data_dir, config_dir), user=user, demo=True, reset=reset)


@app.command()
def chat(
    user: Annotated[str, typer.Option("--user", help="the person you are (users.yaml)")],
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
) -> None:
    """The console adapter as one person, on the same data directory as the demo."""
    _converse(_settings(data_dir, config_dir), user=user, demo=False, reset=False)


@app.command("serve")
def serve_command(
    config_dir: ConfigDir = None,
    data_dir: DataDir = None,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on; 0.0.0.0 for every interface")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port")] = 8080,
) -> None:
    """The web app (/healthz, /readyz, /metrics, chat webhooks), the scheduler, the tick loop.

    Slack and Telegram start when settings.yaml enables them; proposal cards and news go to
    their changes channels. The GitOps repository is the data directory's sandbox, or GitHub
    (gitops.backend: github, which also serves /github/webhook); ArgoCD applies merges when
    deploy.kind is argocd.
    """
    from bots.alerts_setup import connect_alerts
    from bots.chat_setup import connect_chat  # fastapi and uvicorn load only for this command
    from bots.github_webhook import connect_github
    from bots.serve import serve

    settings = _settings(data_dir, config_dir)
    config = _load(settings)
    logging.getLogger().setLevel(logging.INFO)  # start-up, shutdown and the access log
    try:
        runtime = build_runtime(settings, config, notifier=None, demo=False)
    except (BotError, ApprovalError, AgentError) as e:
        raise _fail(str(e)) from e
    try:
        chat = connect_chat(settings, config, runtime)
        alerts = connect_alerts(settings, config, runtime, surfaces=chat.surfaces)
        github = (
            [connect_github(settings, config, runtime)]
            if config.general.gitops.backend == "github"
            else []
        )
    except BotError as e:
        runtime.close()
        raise _fail(str(e)) from e
    serve(
        runtime,
        host=host,
        port=port,
        start_scheduler=settings.scheduler,
        routers=[*chat.routers, *alerts.routers, *github],
        adapters=chat.readiness,
    )


@config_app.command("check")
def config_check(config_dir: ConfigDir = None) -> None:
    """Validate every file of config/; each problem names file, key and reason."""
    settings = _settings(None, config_dir)
    _load(settings)
    typer.echo(f"{settings.config_dir}: configuration is valid")


def _store(settings: RuntimeSettings) -> Store:
    if settings.store_url is None and not (settings.data_dir / "opsgate.db").exists():
        raise _fail(f"no opsgate database in {settings.data_dir} (use --data-dir)")
    return Store(settings.database_url())


@audit_app.command("verify")
def audit_verify(data_dir: DataDir = None) -> None:
    """Exit 0 when the chain is intact; otherwise name the first bad row and exit 1."""
    store = _store(_settings(data_dir, None))
    result = audit.verify(store)
    if result.ok:
        typer.echo(f"audit log intact: {result.rows} rows")
        return
    typer.echo(f"audit log BROKEN at row {result.first_bad}: {result.reason}", err=True)
    raise typer.Exit(code=1)


@audit_app.command("tail")
def audit_tail(
    data_dir: DataDir = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="how many rows")] = 20,
) -> None:
    """The latest audit rows, oldest first."""
    store = _store(_settings(data_dir, None))
    for entry in audit.tail(store, limit=lines):
        detail = ", ".join(f"{k}={v}" for k, v in entry.detail.items())
        typer.echo(
            f"{entry.id:>5}  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:<12} "
            f"{entry.action:<10} {entry.subject:<12} {detail}"
        )


@agents_app.command("list")
def agents_list(config_dir: ConfigDir = None) -> None:
    """Every registered agent: enabled or not, schedule, timeout, what it does."""
    config = _load(_settings(None, config_dir))
    for agent in config.configured_agents:
        typer.echo(
            f"{agent.name:<18} {'enabled ' if agent.enabled else 'disabled'} "
            f"{agent.schedule():<16} timeout {agent.timeout.total_seconds():>4.0f}s  "
            f"{'proposes' if agent.spec.proposes else 'analyzes'}  {agent.spec.summary}"
        )


@agents_app.command("run")
def agents_run(
    name: Annotated[str, typer.Argument(help="agent name, as `opsgate agents list` shows it")],
    optimize: Annotated[
        bool, typer.Option("--optimize", help="also hand its change requests to the engine")
    ] = False,
    data_dir: DataDir = None,
    config_dir: ConfigDir = None,
) -> None:
    """Run one agent now on the data directory's sources and print its findings."""
    settings = _settings(data_dir, config_dir)
    config = _load(settings)
    try:
        runtime = build_runtime(settings, config, notifier=ConsoleNotifier(sys.stdout), demo=True)
    except (BotError, ApprovalError, AgentError) as e:
        raise _fail(str(e)) from e
    try:
        try:
            agent = runtime.agents.get(name)
        except AgentError as e:
            raise _fail(str(e)) from e
        if optimize and not agent.spec.proposes:
            raise _fail(f"{agent.name} only analyzes; it never proposes changes")
        result = runtime.agents.run(
            agent.name, mode="optimize" if optimize else "analyze", trigger="cli"
        )
        typer.echo(render_text(run_reply(result)))
        runtime.gateway.tick()
    finally:
        runtime.close()
    if result.outcome != "ok":
        raise typer.Exit(code=1)


@alerts_app.command("list")
def alerts_list(
    data_dir: DataDir = None,
    status: Annotated[
        str | None, typer.Option("--status", help="firing or resolved; default both")
    ] = None,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="how many, newest first")] = 50,
) -> None:
    """Alerts opsgate received and stored, newest first, with where each was told."""
    from bots.alert_store import AlertStore

    if status not in (None, "firing", "resolved"):
        raise _fail(f"--status is firing or resolved, not {status!r}")
    db = _store(_settings(data_dir, None))
    store = AlertStore(db.engine)
    try:
        found = store.alerts(status=status, limit=limit)
        told = store.deliveries([a.id for a in found])
    finally:
        store.close()
        db.close()
    for alert in found:
        labels = alert.labels
        where = "/".join(labels[k] for k in ("service", "env") if labels.get(k)) or "-"
        notices = ", ".join(f"{d} {state}" for d, state in told.get(alert.id, [])) or "no route"
        typer.echo(
            f"{alert.received_at:%Y-%m-%d %H:%M:%S}  {alert.status:<8} "
            f"{labels.get('alertname', '?'):<24} {where:<20} {labels.get('severity', '-'):<7} "
            f"{alert.fingerprint}  group {alert.group_id}  {notices}"
        )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
