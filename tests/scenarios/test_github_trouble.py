"""GitHub and ArgoCD configured (fakes on loopback): what opsgate does when a pull request
changes outside it, when GitHub refuses or is unavailable, and when ArgoCD does not answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from approval_engine.model import State
from bots.errors import StartupError
from bots.testing import FakeChat
from tests.scenarios._gitops import REPO, World

VALUES = "helm-charts/checkout/values-prod.yaml"


def applied(gitops: World, proposal_id: str) -> Callable[[], bool]:
    return lambda: gitops.proposal(proposal_id).state == State.APPLIED


def approved_twice(gitops: World) -> str:
    assert "Opened scale-1" in gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.chat.say("/approve scale-1", as_="dave")
    return "scale-1"


def each_once(gitops: World, proposal_id: str) -> None:
    repeated = {k: n for k, n in Counter(gitops.kinds(proposal_id)).items() if n > 1}
    assert not repeated, f"announced more than once: {repeated}"


# --- outside opsgate ----------------------------------------------------------------------------


def test_a_pull_request_merged_on_github_is_followed_to_applied(gitops: World) -> None:
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    sha = gitops.gh.merge_pull(REPO, gitops.pull("scale-1").number, by="carol")

    gitops.chat.runtime.engine.follow("opsgate/scale-1")
    gitops.ticks(applied(gitops, "scale-1"))

    assert gitops.proposal("scale-1").merge_sha == sha
    assert gitops.argocd.syncs("checkout-prod")[0]["revision"] == sha
    assert any("merged on GitHub outside opsgate, with 0 of 2" in t for t in gitops.announced())


def test_a_pull_request_closed_on_github_rejects_the_proposal_at_the_next_poll(
    gitops: World,
) -> None:
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.gh.close_pull(REPO, gitops.pull("scale-1").number)
    gitops.chat.runtime.gateway.tick()
    assert gitops.proposal("scale-1").state == State.OPEN  # polled a moment ago

    gitops.clock.advance(gitops.chat.runtime.engine.poll_pulls_every)
    gitops.chat.runtime.gateway.tick()  # no webhook came: the poll finds it

    assert gitops.proposal("scale-1").state == State.REJECTED
    assert any("was closed on GitHub without merging" in t for t in gitops.announced())
    again = gitops.chat.say("/scale checkout 5 prod", as_="alice")  # the knob is free again
    assert "Opened scale-2" in again.text


def test_new_commits_pushed_by_someone_else_void_the_approvals(gitops: World) -> None:
    gitops.chat.say("/scale checkout 6 prod", as_="alice")
    gitops.chat.say("/approve scale-1", as_="bob")
    text = gitops.repo().file(VALUES, "opsgate/scale-1") or ""
    head = gitops.gh.push(
        REPO, "opsgate/scale-1", {VALUES: text.replace("minReplicas: 6", "minReplicas: 7")}
    )

    refused = gitops.chat.say("/approve scale-1", as_="dave")  # opsgate looks before counting

    assert refused.error and "got new commits on GitHub" in refused.text
    proposal = gitops.proposal("scale-1")
    assert proposal.head_sha == head and proposal.current_approvals() == []
    assert [(k.old, k.new) for k in proposal.knobs] == [(3, 7)]
    assert "+  minReplicas: 7" in proposal.diff
    assert any("approvals by bob are void" in t for t in gitops.announced())
    gitops.chat.say("/approve scale-1", as_="dave")
    assert gitops.proposal("scale-1").state == State.OPEN  # 1 of 2 on the new head
    gitops.chat.say("/approve scale-1", as_="bob")
    gitops.ticks(applied(gitops, "scale-1"))
    assert "minReplicas: 7" in (gitops.repo().file(VALUES) or "")


# --- GitHub says no, or not now ---------------------------------------------------------------


def test_an_unmergeable_pull_request_stays_approved_says_why_and_merges_later(
    gitops: World,
) -> None:
    gitops.gh.protect(REPO, "main", contexts=["ci/test"])
    approved_twice(gitops)
    head = gitops.proposal("scale-1").head_sha
    gitops.gh.set_status(REPO, head, "ci/test", "failure")
    merges_tried = len(gitops.gh.calls_to("GET", r"/pulls/1$"))
    gitops.chat.runtime.gateway.tick()
    assert len(gitops.gh.calls_to("GET", r"/pulls/1$")) == merges_tried  # not at every tick
    gitops.clock.advance(gitops.chat.runtime.engine.poll_pulls_every)
    gitops.chat.runtime.gateway.tick()

    proposal = gitops.proposal("scale-1")
    assert proposal.state == State.APPROVED
    assert not gitops.pull("scale-1").merged
    blocked = [t for t in gitops.announced() if "cannot be merged yet" in t]
    assert len(blocked) == 2  # once for the missing check, once when it failed
    assert "required check ci/test has not reported" in blocked[0]
    assert "check ci/test is failure" in blocked[1]
    assert "check ci/test is failure" in gitops.chat.say("/diff scale-1", as_="carol").text

    gitops.gh.set_status(REPO, head, "ci/test", "success")
    gitops.clock.advance(gitops.chat.runtime.engine.poll_pulls_every)
    gitops.ticks(applied(gitops, "scale-1"))
    assert gitops.pull("scale-1").merged
    assert gitops.proposal("scale-1").message == ""


def test_an_approved_proposal_github_will_not_merge_can_be_given_up(gitops: World) -> None:
    gitops.gh.protect(REPO, "main", contexts=["ci/test"])
    approved_twice(gitops)

    said = gitops.chat.say("/reject scale-1 CI is broken for a week", as_="bob")

    assert not said.error, said.text
    assert gitops.proposal("scale-1").state == State.REJECTED
    assert gitops.pull("scale-1").state == "closed" and not gitops.pull("scale-1").merged


@pytest.mark.parametrize("trouble", ["5xx", "429"])
def test_github_unavailable_during_the_merge_leaves_it_approved_until_it_answers(
    gitops: World, trouble: str
) -> None:
    # The approval's own attempt and the first one after it. A 5xx is retried at the next
    # tick; a rate limit's Retry-After is waited out on the engine's clock.
    if trouble == "5xx":
        gitops.gh.fail_next(502, times=2, method="PUT", path="/merge$")
    else:
        gitops.gh.throttle_next(retry_after=1, times=2, method="PUT", path="/merge$")

    approved_twice(gitops)

    assert gitops.proposal("scale-1").state == State.APPROVED
    assert not gitops.pull("scale-1").merged
    wait = timedelta(seconds=1 if trouble == "429" else 0)
    gitops.ticks(applied(gitops, "scale-1"), every=wait)
    assert len([c for c in gitops.repo().log() if "(#1)" in c.message]) == 1
    each_once(gitops, "scale-1")


def test_a_pull_request_github_refuses_to_open_is_a_clear_chat_error(gitops: World) -> None:
    gitops.gh.fail_next(422, method="POST", path="/pulls$", message="Validation Failed")

    said = gitops.chat.say("/scale checkout 6 prod", as_="alice")

    assert said.error
    assert "GitHub answered 422, Validation Failed" in said.text
    assert "Sorry" not in said.text
    assert gitops.proposal("scale-1").state == State.FAILED
    assert gitops.repo().branch("opsgate/scale-1") is None  # nothing left half-done


def test_an_approver_without_a_github_login_is_told_why(gitops: World) -> None:
    users = gitops.config_dir / "users.yaml"
    users.write_text(users.read_text().replace("    github: bob-sre\n", ""))
    gitops.start()
    gitops.chat.say("/scale checkout 6 prod", as_="alice")

    said = gitops.chat.say("/approve scale-1", as_="bob")

    assert said.error and "bob has no GitHub login in users.yaml" in said.text


# --- /status and start-up -----------------------------------------------------------------------


def test_status_says_argocd_is_down_instead_of_failing(gitops: World) -> None:
    gitops.argocd.fail_next(times=10, status=503)

    status = gitops.chat.say("/status", as_="carol")

    assert not status.error
    assert "ArgoCD did not answer" in status.text
    assert "checkout" in status.text


@pytest.mark.parametrize(
    "missing", ["OPSGATE_GITHUB_TOKEN", "OPSGATE_ARGOCD_TOKEN"], ids=["github", "argocd"]
)
def test_a_missing_secret_stops_the_start_naming_it(
    gitops: World, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv(missing)
    with pytest.raises(StartupError, match=missing):
        FakeChat(gitops.data_dir / "other", config_dir=gitops.config_dir, demo=False)
