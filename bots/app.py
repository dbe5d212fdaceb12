"""The composition root: build the engine, the simulation and the gateway from config."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agents.runner import AgentRunner, Sources
from agents.scheduler import AgentScheduler
from agents.sim.argocd import SimulatedArgoCD
from agents.sim.cluster import SimulatedCluster
from agents.sim.cost import SimulatedBill
from agents.sim.metrics import SimulatedMetrics, demo_databases
from agents.sources.aws_cost import AwsCostSource
from agents.sources.base import CostSource, MetricsSource
from agents.sources.prometheus import PrometheusSource
from agents.store import AgentDB
from approval_engine.deploy import Deployer
from approval_engine.engine import Engine, utc_now
from approval_engine.notify import Notifier
from approval_engine.prs.base import PRBackend
from approval_engine.prs.local_git import LocalGitBackend
from approval_engine.rbac import Directory
from approval_engine.store import Store
from approval_engine.targets import Targets
from bots.agent_bridge import announce_run, submitter
from bots.alert_enrich import AlertEnricher
from bots.alertmanager_api import AlertmanagerClient
from bots.chat_store import ChatStore
from bots.commands import install_all
from bots.config import ConfigBundle
from bots.errors import StartupError
from bots.gateway import Gateway
from bots.gitops_setup import (
    MirroredDeployer,
    argocd_client,
    github_backend,
    github_logins,
    policy_for,
)
from bots.router import Router
from bots.services import Services
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.slo_meter import MetricsMeter

REPO_DIR = "gitops.git"
DB_FILE = "opsgate.db"


@dataclass
class Runtime:
    config: ConfigBundle
    store: Store
    backend: PRBackend  # the sandbox LocalGitBackend, or GitHub (gitops.backend)
    cluster: SimulatedCluster
    deployer: Deployer  # the simulation's stand-in, or ArgoCD (deploy.kind)
    engine: Engine
    services: Services
    gateway: Gateway
    agents: AgentRunner
    chat: ChatStore
    scheduler: AgentScheduler | None = None

    def start_scheduler(self) -> None:
        """Run the enabled agents on their schedules, in background threads."""
        if self.scheduler is None:
            self.scheduler = AgentScheduler(
                self.agents,
                engine=self.store.engine,
                on_result=lambda result: announce_run(self.gateway, result),
                clock=self.agents.clock,
            )
            self.services.scheduler = self.scheduler
            self.scheduler.start()

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        self.agents.close()
        if self.services.alertmanager is not None:
            self.services.alertmanager.close()
        if isinstance(self.deployer, MirroredDeployer):
            self.deployer.close()
        self.store.close()


def prepare_data_dir(
    settings: RuntimeSettings, config: ConfigBundle, *, reset: bool, source: Path = PROJECT_ROOT
) -> LocalGitBackend:
    """The sandbox GitOps repo: seeded once from the checkout, then continued; --reset restarts."""
    data_dir = settings.data_dir
    if reset and data_dir.exists():
        if not (data_dir / REPO_DIR).exists() and any(data_dir.iterdir()):
            raise StartupError(
                f"{data_dir} does not look like an opsgate data directory; not deleting it"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    repo = data_dir / REPO_DIR
    if repo.exists():
        return LocalGitBackend(repo, base_branch=config.general.gitops.base_branch)
    if (data_dir / DB_FILE).exists():
        raise StartupError(
            f"{data_dir} has a database but no GitOps repository; start over with --reset"
        )
    missing = [p for p in config.general.gitops.seed_paths if not (source / p).is_dir()]
    if missing:
        raise StartupError(
            f"cannot seed the GitOps repository: {', '.join(missing)} not in {source}"
        )
    return LocalGitBackend.create(
        repo,
        source=source,
        include=config.general.gitops.seed_paths,
        base_branch=config.general.gitops.base_branch,
    )


def _sources(
    settings: RuntimeSettings,
    config: ConfigBundle,
    *,
    cluster: SimulatedCluster,
    targets: Targets,
    engine: Engine,
) -> tuple[MetricsSource, CostSource | None]:
    """What agents read: the simulation by default, Prometheus and AWS when configured."""
    chosen = config.general.sources
    databases = [s for s in targets.services() if targets.kind(s) == "database"]
    metrics: MetricsSource
    if chosen.metrics == "prometheus":
        token = settings.prometheus_token
        metrics = PrometheusSource(
            url=chosen.prometheus.url,
            signals=targets.signals(),
            timeout=chosen.prometheus.timeout,
            verify_tls=chosen.prometheus.verify_tls,
            headers={"Authorization": f"Bearer {token.get_secret_value()}"} if token else None,
        )
    else:
        metrics = SimulatedMetrics(
            cluster, databases=demo_databases(databases, targets.all_environments())
        )
    cost: CostSource | None = None
    if chosen.cost == "aws":
        cost = AwsCostSource(
            region=chosen.aws_cost.region,
            endpoint_url=chosen.aws_cost.endpoint_url,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
        )
    elif chosen.cost == "simulation":
        cost = SimulatedBill(
            cluster,
            databases={
                name: {
                    env: str(engine.current_values(name, env).get("instance_class"))
                    for env in targets.environments(name)
                }
                for name in databases
            },
        )
    return metrics, cost


def build_runtime(
    settings: RuntimeSettings,
    config: ConfigBundle,
    *,
    notifier: Notifier | None,
    demo: bool,
    reset: bool = False,
    clock: Callable[[], datetime] = utc_now,
) -> Runtime:
    backend: PRBackend
    if config.general.gitops.backend == "github":
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # the SQLite store, chat files
        backend = github_backend(settings, config)
    else:
        backend = prepare_data_dir(settings, config, reset=reset)
    store = Store(settings.database_url())
    targets = Targets(config.targets)
    cluster = SimulatedCluster(
        services=targets.workloads(), environments=targets.all_environments(), clock=clock
    )
    simulation = SimulatedArgoCD(
        cluster=cluster,
        targets=targets,
        read_at=lambda path, ref: backend.read_file(path, ref=ref),
    )
    # Like ArgoCD's automated sync: what the base branch holds is what runs.
    simulation.sync_all(revision=backend.base_head())
    deployer: Deployer = simulation
    if config.general.deploy.kind == "argocd":
        argocd = argocd_client(settings, config, targets)
        deployer = MirroredDeployer(argocd, simulation=simulation)
    engine = Engine(
        store=store,
        backend=backend,
        deployer=deployer,
        targets=targets,
        policy=policy_for(config),
        clock=clock,
        github_logins=github_logins(config),
        poll_pulls_every=config.general.gitops.github.poll_every,
    )
    lock = threading.RLock()
    metrics, bill = _sources(settings, config, cluster=cluster, targets=targets, engine=engine)
    # After each apply the engine compares SLO signals before and after, from the same source.
    engine.verifier.watch_with(
        MetricsMeter(metrics), window=config.general.demo.verify_window if demo else None
    )
    agents = AgentRunner(
        agents=config.configured_agents,
        db=AgentDB(store.engine),
        sources=Sources(
            metrics=metrics,
            targets=targets,
            knobs=engine,
            workloads=tuple(targets.workloads()),
            cost=bill,
        ),
        defaults=config.agents.defaults,
        submit=submitter(engine, lock),
        clock=clock,
    )
    router = install_all(Router())
    command_channels = {
        _canonical(router, name): frozenset(places)
        for name, places in config.general.chat.command_channels.items()
    }
    services = Services(
        engine=engine,
        directory=Directory(config.users),
        targets=targets,
        cluster=cluster,
        deployer=deployer,
        default_env=config.general.default_env,
        agents=agents,
        demo=demo,
        lock=lock,
        command_channels=command_channels,
        alertmanager=_alertmanager(settings, config),
        enricher=AlertEnricher(
            prometheus=metrics if isinstance(metrics, PrometheusSource) else None,
            engine=engine,
            clock=clock,
        ),
    )
    gateway = Gateway(router=router, services=services, notifier=notifier)
    return Runtime(
        config=config,
        store=store,
        backend=backend,
        cluster=cluster,
        deployer=deployer,
        engine=engine,
        services=services,
        gateway=gateway,
        agents=agents,
        chat=ChatStore(store.engine),
    )


def _alertmanager(settings: RuntimeSettings, config: ConfigBundle) -> AlertmanagerClient:
    alerts = config.general.alerts
    return AlertmanagerClient(
        base_url=alerts.alertmanager_url,
        token=settings.alertmanager_api_token,
        auth=alerts.alertmanager_auth,
        timeout=alerts.alertmanager_timeout,
        verify_tls=alerts.alertmanager_verify_tls,
    )


def _canonical(router: Router, name: str) -> str:
    command = router.get(name)
    if command is None:  # load_config reports these; a hand-built config may still have one
        raise StartupError(f"settings.yaml: chat.command_channels.{name}: no such command")
    return command.name
