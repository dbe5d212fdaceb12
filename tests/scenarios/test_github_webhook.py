"""POST /github/webhook under uvicorn: signed deliveries make opsgate look at the pull request
at once; unsigned or forged ones are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from approval_engine.model import State
from bots.config import load_config
from bots.errors import StartupError
from bots.github_webhook import connect_github, signature
from bots.settings import PROJECT_ROOT, RuntimeSettings
from tests.bots.test_web import Served, serving, wait_for
from tests.scenarios._gitops import REPO, WEBHOOK_SECRET, World


@dataclass
class Hooked:
    gitops: World
    served: Served

    def deliver(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        secret: str | None = WEBHOOK_SECRET,
        tamper: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        headers = {"X-GitHub-Event": event, "Content-Type": "application/json"}
        if secret is not None:
            headers["X-Hub-Signature-256"] = signature(secret.encode(), body)
        if tamper:
            body = body.replace(b"closed", b"opened")
        response = self.served.client.post("/github/webhook", content=body, headers=headers)
        return response.status_code, response.json()

    def pull_event(self, action: str, proposal_id: str = "scale-1") -> tuple[int, dict[str, Any]]:
        pull = self.gitops.pull(proposal_id)
        payload = {
            "action": action,
            "number": pull.number,
            "pull_request": {
                "number": pull.number,
                "state": pull.state,
                "merged": pull.merged,
                "head": {"ref": pull.head, "sha": pull.head_sha},
            },
            "repository": {"full_name": REPO},
        }
        return self.deliver("pull_request", payload)


@pytest.fixture
def hooked(gitops: World) -> Iterator[Hooked]:
    settings = RuntimeSettings(data_dir=gitops.data_dir, config_dir=gitops.config_dir)
    config = load_config(gitops.config_dir, repo_root=PROJECT_ROOT)
    router = connect_github(settings, config, gitops.chat.runtime)
    # A slow tick: what moves the proposal here is the webhook (and what it triggers).
    with serving(gitops.chat.runtime, tick_every=30, routers=[router]) as served:
        yield Hooked(gitops, served)


def test_a_ping_with_the_right_signature_is_answered(hooked: Hooked) -> None:
    assert hooked.deliver("ping", {"zen": "Keep it logically awesome."}) == (200, {"ok": "pong"})


@pytest.mark.parametrize("how", ["missing", "wrong secret", "body changed"])
def test_a_delivery_without_a_valid_signature_is_refused(hooked: Hooked, how: str) -> None:
    hooked.gitops.chat.say("/scale checkout 6 prod", as_="alice")
    hooked.gitops.gh.close_pull(REPO, hooked.gitops.pull("scale-1").number)
    payload = {
        "action": "closed",
        "pull_request": {"head": {"ref": "opsgate/scale-1"}},
        "repository": {"full_name": REPO},
    }

    if how == "missing":
        answer = hooked.deliver("pull_request", payload, secret=None)
    elif how == "wrong secret":
        answer = hooked.deliver("pull_request", payload, secret="not-the-secret")
    else:
        answer = hooked.deliver("pull_request", payload, tamper=True)

    assert answer == (401, {"error": "bad signature"})
    assert hooked.gitops.proposal("scale-1").state == State.OPEN


def test_events_of_other_repositories_and_kinds_are_acknowledged_and_ignored(
    hooked: Hooked,
) -> None:
    other = {"action": "closed", "repository": {"full_name": "acme/other"}, "pull_request": {}}
    assert hooked.deliver("pull_request", other) == (202, {"ignored": "pull_request"})
    assert hooked.deliver("push", {"ref": "refs/heads/main"}) == (202, {"ignored": "push"})


def test_a_merge_on_github_is_followed_to_applied_when_the_webhook_says_so(
    hooked: Hooked,
) -> None:
    gitops = hooked.gitops
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    sha = gitops.gh.merge_pull(REPO, gitops.pull("scale-1").number, by="carol")

    status, body = hooked.pull_event("closed")

    assert status == 200 and body["proposal"] == "scale-1"
    assert gitops.proposal("scale-1").merge_sha == sha
    assert gitops.argocd.syncs("checkout-prod")[0]["revision"] == sha
    assert any("merged on GitHub outside opsgate" in t for t in gitops.announced())
    # Delivered twice (GitHub redelivers): nothing happens twice.
    assert hooked.pull_event("closed")[0] == 200
    assert len(gitops.argocd.syncs("checkout-prod")) == 1


def test_a_pull_request_closed_without_merging_rejects_the_proposal(hooked: Hooked) -> None:
    gitops = hooked.gitops
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.gh.close_pull(REPO, gitops.pull("scale-1").number)

    status, body = hooked.pull_event("closed")

    assert (status, body["state"]) == (200, "rejected")
    wait_for(
        lambda: any("closed on GitHub without merging" in t for t in gitops.announced()),
        what="the rejection in chat",
    )


def test_new_commits_announced_by_the_webhook_void_the_approvals(hooked: Hooked) -> None:
    gitops = hooked.gitops
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    head = gitops.gh.push(REPO, "opsgate/scale-1", {"README.md": "someone else's line\n"})

    status, body = hooked.pull_event("synchronize")

    assert (status, body["state"]) == (200, "open")
    proposal = gitops.proposal("scale-1")
    assert proposal.head_sha == head and proposal.current_approvals() == []
    assert any("approvals by bob are void" in t for t in gitops.announced())


def test_serving_github_without_the_webhook_secret_stops_the_start(
    gitops: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPSGATE_GITHUB_WEBHOOK_SECRET")
    settings = RuntimeSettings(data_dir=gitops.data_dir, config_dir=gitops.config_dir)
    config = load_config(gitops.config_dir, repo_root=PROJECT_ROOT)
    with pytest.raises(StartupError, match="OPSGATE_GITHUB_WEBHOOK_SECRET"):
        connect_github(settings, config, gitops.chat.runtime)
