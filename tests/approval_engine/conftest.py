"""Fixtures for the engine tests: a seeded bare git repo (copied, not re-seeded, per test),
SQLite, the real config, and `boot()` to start an opsgate process on them, again and again."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents.sim.argocd import SimulatedArgoCD
from agents.sim.cluster import SimulatedCluster
from approval_engine.config import PolicyConfig, TargetsConfig, load_model
from approval_engine.deploy import Deployer
from approval_engine.engine import Engine
from approval_engine.prs.base import PRBackend
from approval_engine.prs.local_git import LocalGitBackend
from approval_engine.store import Store
from approval_engine.targets import Targets
from tests.approval_engine._support import (
    CONFIG_DIR,
    REPO_ROOT,
    Boot,
    Clock,
    Node,
    Recorder,
    git,
)


@pytest.fixture(scope="session")
def seeded_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded once per session like `opsgate demo` does; tests get copies."""
    path = tmp_path_factory.mktemp("seed") / "repo.git"
    LocalGitBackend.create(path, source=REPO_ROOT, include=["helm-charts", "terraform"])
    # One pack file instead of a hundred loose objects: far cheaper to copy for every test.
    git(path, "repack", "-a", "-d", "-q")
    git(path, "prune-packed")
    return path


@pytest.fixture
def repo_path(seeded_repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "repo.git"
    shutil.copytree(seeded_repo, path, ignore=shutil.ignore_patterns("*.sample"))
    return path


@pytest.fixture(scope="session")
def targets() -> Targets:
    return Targets(load_model(CONFIG_DIR / "targets.yaml", TargetsConfig))


@pytest.fixture(scope="session")
def policy_config() -> PolicyConfig:
    return load_model(CONFIG_DIR / "policy.yaml", PolicyConfig)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def boot(
    repo_path: Path,
    tmp_path: Path,
    clock: Clock,
    targets: Targets,
    policy_config: PolicyConfig,
) -> Iterator[Boot]:
    """Start an opsgate process on this test's repo and database; call again to restart.

    Wired like bots.app.build_runtime, including its start-up `sync_all`: the ArgoCD
    stand-in keeps nothing across a restart, so like ArgoCD's automated sync it first
    brings every app to what the base branch holds.
    """
    nodes: list[Node] = []

    def start(
        *,
        backend: Callable[[LocalGitBackend], PRBackend] | None = None,
        deployer: Callable[[SimulatedArgoCD], Deployer] | None = None,
        policy: PolicyConfig | None = None,
        engine_cls: type[Engine] = Engine,
    ) -> Node:
        git = LocalGitBackend(repo_path)
        store = Store(f"sqlite:///{tmp_path / 'opsgate.db'}")
        cluster = SimulatedCluster(
            services=targets.services(), environments=targets.all_environments(), clock=clock
        )
        argocd = SimulatedArgoCD(
            cluster=cluster,
            targets=targets,
            read_at=lambda path, ref: git.read_file(path, ref=ref),
        )
        argocd.sync_all(revision=git.base_head())
        engine = engine_cls(
            store=store,
            backend=backend(git) if backend else git,
            deployer=deployer(argocd) if deployer else argocd,
            targets=targets,
            policy=policy or policy_config,
            clock=clock,
        )
        node = Node(engine=engine, store=store, git=git, cluster=cluster, argocd=argocd)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.close()


@pytest.fixture
def node(boot: Boot) -> Node:
    """One opsgate process with the real local git backend and the ArgoCD stand-in."""
    return boot()


@pytest.fixture
def engine(node: Node) -> Engine:
    return node.engine


@pytest.fixture
def chat() -> Recorder:
    return Recorder()
