"""A GitHub + ArgoCD world for scenarios: the fakes, a config that points opsgate at them, and
opsgate processes (FakeChat) that can be restarted, or killed at a chosen call.

ArgoCD watches the GitOps repository's main branch: every commit that lands there (a merge
by opsgate or by a person) reaches every app's tracked branch, as ArgoCD's repo poll would.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from approval_engine.argocd import ArgoCDClient
from approval_engine.model import Proposal
from approval_engine.prs.github import GitHubBackend, RetryPolicy
from bots.settings import PROJECT_ROOT
from bots.testing import FakeChat
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.github_api import FakeGitHub, Pull, Repo

REPO = "acme/gitops"
REVIEW_TOKEN = "ghp_fakeOpsgateReviewToken00000000000"
REVIEWER = "opsgate-reviewer"
WEBHOOK_SECRET = "whsec-0123456789abcdef"
APPS = [
    "checkout-staging",
    "checkout-prod",
    "cart-staging",
    "cart-prod",
    "search-staging",
    "search-prod",
    "infra-staging",
    "infra-prod",
]
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday morning, no freeze


class Crash(Exception):  # noqa: N818 - a death, not an error anyone handles
    """The process died: from here on, every call it makes fails."""


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class WatchedGitHub(FakeGitHub):
    """FakeGitHub whose main branch ArgoCD follows."""

    def __init__(self, argocd: FakeArgoCD) -> None:
        self.argocd = argocd
        super().__init__()

    def _set_ref(self, repo: Repo, ref: str, sha: str | None) -> None:
        super()._set_ref(repo, ref, sha)
        if ref == f"heads/{repo.default_branch}" and sha is not None:
            for app in self.argocd.apps:
                self.argocd.push(app, sha)


class Dying:
    """A proxy that dies after `call` (before or after it ran); then every call dies."""

    def __init__(self, inner: Any, *, call: str, when: str = "after") -> None:
        self._inner = inner
        self._call = call
        self._when = when
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def run(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Crash(f"{name} after death")
            if name == self._call and self._when == "before":
                self.dead = True
                raise Crash(f"died before {name}")
            result = attr(*args, **kwargs)
            if name == self._call:
                self.dead = True
                raise Crash(f"died after {name}")
            return result

        return run


def seed_files() -> dict[str, str]:
    """What the demo's sandbox repository is seeded with: helm-charts/ and terraform/."""
    files = {}
    for top in ("helm-charts", "terraform"):
        for path in sorted((PROJECT_ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(PROJECT_ROOT).as_posix()] = path.read_text(encoding="utf-8")
    return files


def write_config(tmp: Path, gh: FakeGitHub, argocd: FakeArgoCD) -> Path:
    config_dir = tmp / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    settings_file = config_dir / "settings.yaml"
    general = yaml.safe_load(settings_file.read_text())
    general["gitops"] = {
        "backend": "github",
        "base_branch": "main",
        "github": {"repo": REPO, "api_base_url": gh.api_url, "merge_method": "squash"},
    }
    general["deploy"] = {
        "kind": "argocd",
        "argocd": {"url": argocd.url, "project": "default", "verify_tls": False},
    }
    settings_file.write_text(yaml.safe_dump(general))
    return config_dir


@dataclass
class World:
    gh: WatchedGitHub
    argocd: FakeArgoCD
    data_dir: Path
    config_dir: Path
    clock: Clock
    chats: list[FakeChat] = field(default_factory=list)

    @property
    def chat(self) -> FakeChat:
        return self.chats[-1]

    def start(self, *, resume: bool = True) -> FakeChat:
        """A new opsgate process on the same data directory (the previous one is left alone:
        a dead process closes nothing)."""
        chat = FakeChat(
            self.data_dir, config_dir=self.config_dir, demo=False, clock=self.clock, resume=resume
        )
        self.chats.append(chat)
        return chat

    def kill(self, *, backend: str | None = None, deployer: str | None = None) -> Dying:
        """Make the current process die at a call of its PR backend or its deployer."""
        engine = self.chat.runtime.engine
        if backend is not None:
            engine.backend = Dying(engine.backend, call=backend)  # type: ignore[assignment]
            return engine.backend  # type: ignore[return-value]
        assert deployer is not None
        engine.deployer = Dying(engine.deployer, call=deployer)  # type: ignore[assignment]
        return engine.deployer  # type: ignore[return-value]

    def proposal(self, proposal_id: str) -> Proposal:
        return self.chat.runtime.engine.get(proposal_id)

    def pull(self, proposal_id: str) -> Pull:
        [pull] = self.gh.pulls_for(REPO, f"opsgate/{proposal_id}")
        return pull

    def repo(self) -> Repo:
        return self.gh.repo(REPO)

    def announced(self) -> list[str]:
        return [a.text for chat in self.chats for a in chat.announcements]

    def kinds(self, proposal_id: str) -> list[str]:
        return [
            a.kind
            for chat in self.chats
            for a in chat.announcements
            if a.proposal_id == proposal_id
        ]

    def ticks(
        self, until: Callable[[], bool], *, most: int = 20, every: timedelta = timedelta(0)
    ) -> None:
        """Tick until `until()`; with `every`, the clock moves that much before each tick."""
        for _ in range(most):
            if until():
                return
            self.clock.advance(every)
            self.chat.runtime.gateway.tick()
        assert until(), "the ticks did not get there"


@pytest.fixture
def gitops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # PyGithub's pacing (a second between writes) and waits between retries would only slow
    # the tests; a failed call is retried at the next tick instead (the backend's own retries
    # have their tests in tests/approval_engine/test_github_backend.py).
    monkeypatch.setattr(
        "bots.gitops_setup.GitHubBackend",
        functools.partial(GitHubBackend, pace=False, retry=RetryPolicy(retries=0)),
    )
    monkeypatch.setattr(
        "bots.gitops_setup.ArgoCDClient", functools.partial(ArgoCDClient, backoff=0.01, retries=1)
    )
    with FakeArgoCD() as argocd, WatchedGitHub(argocd) as gh:
        for app in APPS:
            argocd.add_app(app)
        repo = gh.create_repo(REPO, files=seed_files())
        for app in APPS:  # ArgoCD runs what main holds
            argocd.apps[app].commits = [repo.refs["heads/main"]]
            argocd.apps[app].compared = argocd.apps[app].deployed = repo.refs["heads/main"]
        gh.add_token(REVIEW_TOKEN, REVIEWER)
        monkeypatch.setenv("OPSGATE_GITHUB_TOKEN", gh.token)
        monkeypatch.setenv("OPSGATE_GITHUB_REVIEW_TOKEN", REVIEW_TOKEN)
        monkeypatch.setenv("OPSGATE_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        monkeypatch.setenv("OPSGATE_ARGOCD_TOKEN", argocd.token)
        monkeypatch.setenv("OPSGATE_SCHEDULER", "false")
        built = World(
            gh=gh,
            argocd=argocd,
            data_dir=tmp_path / "data",
            config_dir=write_config(tmp_path, gh, argocd),
            clock=Clock(),
        )
        built.start()
        try:
            yield built
        finally:
            for chat in built.chats:
                with contextlib.suppress(Exception):  # a killed process's may be closed
                    chat.close()
