"""The GitOps half of the composition root: GitHub or the sandbox repo, ArgoCD or the simulation."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import SecretStr

from agents.sim.argocd import SimulatedArgoCD
from approval_engine.argocd import ArgoCDClient
from approval_engine.config import PolicyConfig
from approval_engine.deploy import AppStatus
from approval_engine.errors import BackendError, TemporaryBackendError
from approval_engine.prs.github import GitHubBackend
from approval_engine.targets import Targets
from bots.config import ConfigBundle
from bots.errors import StartupError
from bots.settings import RuntimeSettings

__all__ = ["MirroredDeployer", "argocd_client", "github_backend", "github_logins", "policy_for"]

log = logging.getLogger(__name__)


def _secret(value: SecretStr | None, *, env: str, needed_for: str) -> SecretStr:
    if value is None or not value.get_secret_value().strip():
        raise StartupError(f"{needed_for} in settings.yaml but {env} is not set")
    return value


def github_backend(settings: RuntimeSettings, config: ConfigBundle) -> GitHubBackend:
    """The GitHub backend, with the repository and its base branch checked before serving."""
    gitops = config.general.gitops
    github = gitops.github
    assert github.repo is not None  # GitOpsSettings requires it for backend github
    token = _secret(
        settings.github_token,
        env="OPSGATE_GITHUB_TOKEN",
        needed_for="gitops.backend is github",
    )
    review = settings.github_review_token
    try:
        backend = GitHubBackend(
            repo=github.repo,
            token=token,
            base_branch=gitops.base_branch,
            api_base_url=github.api_base_url,
            merge_method=github.merge_method,
            review_token=review if review is not None and review.get_secret_value() else None,
        )
        backend.check()
    except BackendError as e:
        raise StartupError(f"GitHub ({github.repo} at {github.api_base_url}): {e}") from e
    return backend


def argocd_client(
    settings: RuntimeSettings, config: ConfigBundle, targets: Targets
) -> ArgoCDClient:
    """The ArgoCD client; a refused token stops the start, an unreachable server only warns."""
    argocd = config.general.deploy.argocd
    assert argocd.url is not None  # DeploySettings requires it for kind argocd
    token = _secret(
        settings.argocd_token, env="OPSGATE_ARGOCD_TOKEN", needed_for="deploy.kind is argocd"
    )
    client = ArgoCDClient(
        base_url=argocd.url,
        token=token,
        project=argocd.project,
        verify_tls=argocd.verify_tls,
        timeout=argocd.timeout,
    )
    apps = {targets.app(s, e) for s in targets.services() for e in targets.environments(s)}
    try:
        known = set(client.apps())
    except TemporaryBackendError as e:
        log.warning("ArgoCD is not answering at start; syncs wait for it: %s", e)
        return client
    except BackendError as e:
        client.close()
        raise StartupError(f"ArgoCD at {argocd.url}: {e}") from e
    missing = sorted(apps - known)
    if missing:
        log.warning(
            "ArgoCD has no application (or the token may not read it) for: %s; "
            "check argocd_app in targets.yaml",
            ", ".join(missing),
        )
    return client


def github_logins(config: ConfigBundle) -> dict[str, str]:
    """Person → GitHub login, from users.yaml, for the reviews that record chat approvals."""
    return {name: p.github for name, p in config.users.people.items() if p.github}


def policy_for(config: ConfigBundle) -> PolicyConfig:
    """policy.yaml, with deploy.argocd.sync_timeout in place of its sync_timeout when set."""
    deploy = config.general.deploy
    if deploy.kind != "argocd" or deploy.argocd.sync_timeout is None:
        return config.policy
    return config.policy.model_copy(update={"sync_timeout": deploy.argocd.sync_timeout})


class MirroredDeployer:
    """ArgoCD deploys and answers for status; the demo's simulation follows each sync, so the
    simulated cluster behind /status and the agents runs what was merged too."""

    def __init__(self, primary: ArgoCDClient, *, simulation: SimulatedArgoCD) -> None:
        self.primary = primary
        self.simulation = simulation
        self.label = primary.label

    def sync(self, app: str, *, revision: str) -> None:
        self.primary.sync(app, revision=revision)
        try:
            self.simulation.sync(app, revision=revision)
        except BackendError as e:
            log.warning("the simulation did not follow %s to %s: %s", app, revision[:7], e)

    def status(self, app: str) -> AppStatus:
        return self.primary.status(app)

    def statuses(self, apps: Iterable[str]) -> dict[str, AppStatus]:
        return self.primary.statuses(apps)

    def close(self) -> None:
        self.primary.close()
