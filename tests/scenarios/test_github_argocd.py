"""GitHub and ArgoCD configured (fakes on loopback, the real PyGithub and httpx clients):
chat → pull request → reviews → merge → ArgoCD sync → applied, and a restart between each
step resumes without a second pull request, merge, sync or message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from approval_engine.model import State
from tests.fakes.argocd_api import HEALTHY, PROGRESSING
from tests.scenarios._gitops import REPO, REVIEWER, Crash, World

VALUES = "helm-charts/checkout/values-prod.yaml"


def applied(gitops: World, proposal_id: str) -> Callable[[], bool]:
    return lambda: gitops.proposal(proposal_id).state == State.APPLIED


def each_once(gitops: World, proposal_id: str) -> None:
    repeated = {k: n for k, n in Counter(gitops.kinds(proposal_id)).items() if n > 1}
    assert not repeated, f"announced more than once: {repeated}"


# --- the whole way ----------------------------------------------------------------------------


def test_a_scale_in_chat_becomes_a_reviewed_merged_synced_and_healthy_change(
    gitops: World, golden: Callable[[str, str], None]
) -> None:
    opened = gitops.chat.say("/scale checkout 6 prod", as_="alice")

    assert not opened.error, opened.text
    pull = gitops.pull("scale-1")
    assert pull.title == "scale: checkout/prod autoscaling.minReplicas 3 → 6 (scale-1)"
    golden("github/pr-body-scale.md", pull.body or "")
    assert pull.labels == ["opsgate", "manual", "risk:medium"]
    assert gitops.repo().file(VALUES, "opsgate/scale-1").count("minReplicas: 6") == 1
    assert any(f"/{REPO}/pull/{pull.number}" in a.text for a in opened.announcements)

    first = gitops.chat.say("/approve scale-1", as_="bob")
    assert "1 of 2 approvals" in first.text
    assert [(r.user, r.state) for r in gitops.pull("scale-1").reviews] == [(REVIEWER, "APPROVED")]
    assert "@bob-sre" in gitops.pull("scale-1").reviews[0].body
    assert not gitops.pull("scale-1").merged

    second = gitops.chat.say("/approve scale-1", as_="dave")

    pull = gitops.pull("scale-1")
    assert [r.state for r in pull.reviews] == ["APPROVED", "APPROVED"]
    assert "@dave-platform" in pull.reviews[1].body
    assert pull.merged and pull.merge_commit_sha is not None
    main = gitops.repo().log()[0]
    assert main.sha == pull.merge_commit_sha
    assert main.message.startswith("scale: checkout/prod autoscaling.minReplicas 3 → 6")
    assert "minReplicas: 6" in (gitops.repo().file(VALUES) or "")
    [sync] = gitops.argocd.syncs("checkout-prod")
    assert sync["revision"] == pull.merge_commit_sha
    assert "merged as" in second and "syncing checkout-prod" in second

    seen = []
    for _ in range(6):
        app = gitops.argocd.apps["checkout-prod"]
        seen.append((gitops.proposal("scale-1").state, app.health))
        if seen[-1][0] == State.APPLIED:
            break
        gitops.chat.runtime.gateway.tick()
    assert (State.SYNCING, PROGRESSING) in seen
    assert seen[-1] == (State.APPLIED, HEALTHY)
    assert gitops.argocd.apps["checkout-prod"].deployed == pull.merge_commit_sha
    assert gitops.kinds("scale-1") == [
        "opened",
        "approval",
        "approved",
        "merged",
        "syncing",
        "applied",
    ]
    # The simulated cluster followed the sync, so /status's numbers show the new floor.
    status = gitops.chat.say("/status checkout", as_="carol").text
    assert "6-12 @70%" in status
    assert f"Synced {pull.merge_commit_sha[:7]} Healthy" in status


def test_a_repeated_wish_updates_the_one_pull_request_and_comments_what_changed(
    gitops: World,
) -> None:
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")

    again = gitops.chat.say("/scale checkout 8 prod", as_="alice")

    assert "Updated scale-1 instead of opening another" in again.text
    [pull] = gitops.gh.pulls_for(REPO, "opsgate/scale-1")
    assert len(gitops.repo().pulls) == 1
    assert "minReplicas: 8" in (gitops.repo().file(VALUES, "opsgate/scale-1") or "")
    assert "| `3` | `8` |" in (pull.body or "")
    [comment] = pull.comments
    assert "`autoscaling.minReplicas`: `6` → `8`" in comment.body
    assert "Approvals by bob are void" in comment.body
    assert "approvals by bob are void" in again
    assert gitops.proposal("scale-1").current_approvals() == []


# --- restarts -----------------------------------------------------------------------------------


def test_a_restart_between_branch_and_pull_request_opens_the_pull_request_once(
    gitops: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = gitops.chat.runtime.engine.backend

    def die(*args: object, **kwargs: object) -> None:
        raise Crash("died between the branch and the pull request")

    monkeypatch.setattr(backend, "_create_pull", die)
    said = gitops.chat.say("/scale checkout 6 prod", as_="alice")
    assert said.error  # the process died mid-command
    assert gitops.repo().branch("opsgate/scale-1") is not None
    assert gitops.gh.pulls_for(REPO, "opsgate/scale-1") == []

    gitops.start()

    pull = gitops.pull("scale-1")  # exactly one
    assert gitops.proposal("scale-1").head_sha == pull.head_sha
    assert len([c for c in gitops.repo().log("opsgate/scale-1") if "scale-1" in c.message]) == 1
    assert pull.labels == ["opsgate", "manual", "risk:medium"]
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.chat.say("/approve scale-1", as_="dave")
    gitops.ticks(applied(gitops, "scale-1"))
    each_once(gitops, "scale-1")


@pytest.mark.parametrize(
    ("kill", "dies_at"),
    [
        ({"backend": "open"}, State.OPEN),  # branch and PR written, head not stored
        ({"backend": "review"}, State.OPEN),  # the approval stored, its review not
        ({"backend": "merge"}, State.APPROVED),  # merged on GitHub, not in the store
        ({"deployer": "sync"}, State.MERGED),  # sync asked of ArgoCD, not stored
    ],
    ids=["open", "approve", "merge", "sync"],
)
def test_a_restart_after_each_step_resumes_without_a_second_pr_merge_sync_or_message(
    gitops: World, kill: dict[str, str], dies_at: State
) -> None:
    dying = gitops.kill(**kill)
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.chat.say("/approve scale-1", as_="dave")
    assert dying.dead
    assert gitops.proposal("scale-1").state == dies_at

    gitops.start()
    for name in ("bob", "dave"):  # what the dead process could not take in, said again
        gitops.chat.say("/approve scale-1", as_=name)
    gitops.ticks(applied(gitops, "scale-1"))

    [pull] = gitops.gh.pulls_for(REPO, "opsgate/scale-1")
    assert pull.merged
    assert sorted(r.body.split()[4] for r in pull.reviews) == ["@bob-sre", "@dave-platform"]
    merges = [c for c in gitops.repo().log() if "(#1)" in c.message]
    assert len(merges) == 1
    assert len(gitops.argocd.syncs("checkout-prod")) == 1
    each_once(gitops, "scale-1")
    assert "applied" in gitops.kinds("scale-1")
