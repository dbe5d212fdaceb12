"""A base branch that moves under an open or approved proposal (local git): the proposal is
rendered again on the new base when its files changed there, its approvals stand when the
change is the same and are void (and chat is told) when it is not, and a restart in the
middle finishes the re-render once."""

from __future__ import annotations

import pytest

from approval_engine import audit
from approval_engine.model import Proposal, State
from approval_engine.prs.base import PRBackend
from approval_engine.prs.local_git import LocalGitBackend
from tests.approval_engine._support import (
    ALICE,
    BOB,
    DAVE,
    Boot,
    Clock,
    Crash,
    CrashingBackend,
    Node,
    Recorder,
    UnreachableMergeBackend,
    git,
    merge_commits,
    wish,
)

PROD = "helm-charts/checkout/values-prod.yaml"
STAGING = "helm-charts/checkout/values-staging.yaml"


def land_outside(node: Node, path: str, old: str, new: str) -> str:
    """Someone merges an edit of `path` into main behind opsgate's back; returns main's head."""
    text = node.git.read_file(path)
    assert old in text
    pull = node.git.open(
        proposal_id="outside-1",
        branch="someone/edit",
        base_sha=node.git.base_head(),
        files={path: text.replace(old, new, 1)},
        title="an edit",
        body="",
    )
    return node.git.merge(
        proposal_id="outside-1", branch="someone/edit", head_sha=pull.head_sha, title="an edit"
    )


def floor_of_six(node: Node) -> Proposal:
    """checkout/prod minReplicas 3 → 6, approved by bob (1 of 2)."""
    outcome = node.engine.propose(wish("checkout", "prod", ("min_replicas", 6)), actor=ALICE)
    assert outcome.proposal is not None
    node.engine.approve(outcome.proposal.id, actor=BOB)
    return node.engine.get(outcome.proposal.id)


def poll(node: Node, clock: Clock) -> Proposal:
    clock.advance(node.engine.poll_pulls_every)
    node.engine.reconcile()
    [proposal] = node.engine.proposals(active_only=False)
    return proposal


def rebases(node: Node) -> list[dict[str, object]]:
    return [e.detail for e in audit.tail(node.engine.store, limit=100) if e.action == "rebased"]


def parents(node: Node, commit: str) -> list[str]:
    return git(node.git.path, "rev-list", "--parents", "-n", "1", commit).split()[1:]


def approvers(proposal: Proposal) -> list[str]:
    return [a.approver for a in proposal.current_approvals()]


# --- what moved on the base -----------------------------------------------------------------


def test_a_base_that_moved_in_another_file_leaves_the_proposal_and_its_approvals_alone(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    before = floor_of_six(node)
    land_outside(node, STAGING, "maxReplicas: 6", "maxReplicas: 8")

    after = poll(node, clock)

    assert (after.head_sha, after.base_sha, after.diff) == (
        before.head_sha,
        before.base_sha,
        before.diff,
    )
    assert approvers(after) == ["bob"]
    assert rebases(node) == []
    node.engine.approve(after.id, actor=DAVE)
    assert node.engine.get(after.id).state == State.APPLIED
    node.engine.deliver(chat)
    assert "updated" not in chat.kinds()


def test_a_neighbouring_line_changed_on_the_base_is_rendered_again_and_the_approvals_stand(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    # The change approvers approved is the lines it removes and adds: a moved neighbour
    # changes only the diff's context, so bob's approval carries over to the new head.
    before = floor_of_six(node)
    main = land_outside(node, PROD, "maxReplicas: 12", "maxReplicas: 14")

    after = poll(node, clock)

    assert after.state == State.OPEN
    assert after.base_sha == main and after.head_sha != before.head_sha
    assert parents(node, after.head_sha) == [before.head_sha, main]  # the base merged in
    assert node.git.branch_head(after.branch) == after.head_sha
    assert "-  minReplicas: 3  # one pod per availability zone\n" in after.diff
    assert " maxReplicas: 14\n" in after.diff
    assert approvers(after) == ["bob"]
    [rebased] = rebases(node)
    assert rebased["same_change"] is True and rebased["kept"] == ["bob"]
    node.engine.deliver(chat)
    assert chat.kinds() == ["opened", "approval"]  # nothing to say

    node.engine.approve(after.id, actor=DAVE)

    assert node.engine.get(after.id).state == State.APPLIED
    values = node.git.read_file(PROD)
    assert "minReplicas: 6" in values and "maxReplicas: 14" in values


def test_the_knobs_value_changed_on_the_base_voids_the_approvals_and_chat_hears_what_changed(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    floor_of_six(node)
    land_outside(node, PROD, "minReplicas: 3", "minReplicas: 4")

    after = poll(node, clock)

    assert [(k.old, k.new) for k in after.knobs] == [(4, 6)]
    assert after.title == "scale: checkout/prod autoscaling.minReplicas 4 → 6"
    assert "-  minReplicas: 4" in after.diff
    assert approvers(after) == []
    [rebased] = rebases(node)
    assert rebased["same_change"] is False and rebased["voided"] == ["bob"]
    node.engine.deliver(chat)
    assert chat.sent[-1].text == (
        "scale-1 was re-rendered on the new base: autoscaling.minReplicas is 4 on the base "
        "now, not 3 (the proposal still sets 6); approvals by bob are void. "
        "Read /diff scale-1 before approving."
    )

    node.engine.approve(after.id, actor=BOB)
    node.engine.approve(after.id, actor=DAVE)
    assert node.engine.get(after.id).state == State.APPLIED
    assert "minReplicas: 6" in node.git.read_file(PROD)


def test_an_approved_proposal_whose_change_moved_on_the_base_is_open_again(
    boot: Boot, chat: Recorder
) -> None:
    # Checked right before every merge, whatever the poll's pace.
    node = boot(backend=UnreachableMergeBackend)
    backend = node.engine.backend
    assert isinstance(backend, UnreachableMergeBackend)
    proposal = node.engine.propose(wish("checkout", "staging", ("min_replicas", 4)), actor=ALICE)
    assert proposal.proposal is not None
    node.engine.approve(proposal.proposal.id, actor=BOB)
    assert node.engine.get("scale-1").state == State.APPROVED  # the merge waits for the host
    land_outside(node, STAGING, "minReplicas: 2", "minReplicas: 3")
    backend.down = False

    node.engine.reconcile()

    reopened = node.engine.get("scale-1")
    assert reopened.state == State.OPEN
    assert [(k.old, k.new) for k in reopened.knobs] == [(3, 4)]
    assert merge_commits(node.git.path, "scale-1") == []
    node.engine.deliver(chat)
    assert chat.kinds()[-2:] == ["updated", "open"]
    assert "approvals by bob are void" in chat.sent[-2].text
    node.engine.approve("scale-1", actor=BOB)
    assert node.engine.get("scale-1").state == State.APPLIED


def test_a_branch_that_no_longer_merges_cleanly_is_rendered_again_and_merges(
    node: Node, chat: Recorder
) -> None:
    proposal = node.engine.propose(wish("checkout", "staging", ("min_replicas", 3)), actor=ALICE)
    assert proposal.proposal is not None
    # An edit of the neighbouring line, merged behind opsgate's back: git would call the
    # branch a conflict. Right before the merge, opsgate renders it again on the new base.
    land_outside(node, STAGING, "maxReplicas: 6", "maxReplicas: 8")

    node.engine.approve(proposal.proposal.id, actor=BOB)

    done = node.engine.get(proposal.proposal.id)
    assert done.state == State.APPLIED, done.message
    values = node.git.read_file(STAGING)
    assert "minReplicas: 3" in values and "maxReplicas: 8" in values
    assert len(merge_commits(node.git.path, done.id)) == 1
    node.engine.deliver(chat)
    assert chat.kinds() == ["opened", "approved", "merged", "syncing", "applied"]


def test_a_wish_the_base_now_fulfils_supersedes_the_proposal(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    proposal = floor_of_six(node)
    land_outside(node, PROD, "minReplicas: 3", "minReplicas: 6")

    after = poll(node, clock)

    assert after.state == State.SUPERSEDED
    assert node.git.branch_head(proposal.branch) is None
    node.engine.deliver(chat)
    assert chat.sent[-1].text == (
        "scale-1 superseded: checkout/prod already has min_replicas = 6 on the base branch."
    )


def test_the_base_is_looked_at_with_the_poll_and_not_at_every_tick(
    boot: Boot, clock: Clock
) -> None:
    class Counting(CrashingBackend):
        def __init__(self, inner: PRBackend) -> None:
            super().__init__(inner, call="open", nth=0)
            self.heads = 0

        def base_head(self) -> str:
            self.heads += 1
            return super().base_head()

    node = boot(backend=Counting)
    backend = node.engine.backend
    assert isinstance(backend, Counting)
    floor_of_six(node)
    looked = backend.heads
    for _ in range(3):
        node.engine.reconcile()
    assert backend.heads == looked

    clock.advance(node.engine.poll_pulls_every)
    node.engine.reconcile()
    assert backend.heads == looked + 1


def test_a_wish_repeated_after_the_base_moved_is_rendered_on_the_new_base_once(
    node: Node, clock: Clock
) -> None:
    before = floor_of_six(node)
    main = land_outside(node, PROD, "maxReplicas: 12", "maxReplicas: 14")

    again = node.engine.propose(wish("checkout", "prod", ("min_replicas", 7)), actor=ALICE)

    assert again.proposal is not None
    assert again.proposal.base_sha == main
    assert parents(node, again.proposal.head_sha) == [before.head_sha, main]
    after = poll(node, clock)
    assert after.head_sha == again.proposal.head_sha  # nothing left to render again
    assert rebases(node) == []


# --- a restart in the middle ---------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(
    ("edit", "kept"),
    [(("maxReplicas: 12", "maxReplicas: 14"), True), (("minReplicas: 3", "minReplicas: 4"), False)],
    ids=["same-change", "new-change"],
)
def test_a_restart_while_the_new_branch_head_is_written_finishes_the_rerender_once(
    boot: Boot, clock: Clock, when: str, edit: tuple[str, str], kept: bool
) -> None:
    # The second open is the re-render's: it dies before or after writing the branch.
    first = boot(backend=lambda g: CrashingBackend(g, call="open", when=when, nth=2))
    chat = Recorder()
    floor_of_six(first)
    first.engine.deliver(chat)
    land_outside(first, PROD, *edit)
    clock.advance(first.engine.poll_pulls_every)
    with pytest.raises(Crash):
        first.engine.reconcile()
    assert first.engine.get("scale-1").pending_push

    second = boot()
    second.engine.reconcile()
    second.engine.reconcile()

    after = second.engine.get("scale-1")
    assert not after.pending_push
    assert after.head_sha == second.git.branch_head(after.branch)
    assert approvers(after) == (["bob"] if kept else [])
    assert len(rebases(second)) == 1
    updates = git(second.git.path, "log", "--merges", "--format=%s", after.branch).splitlines()
    assert len([u for u in updates if u.startswith("Update opsgate/scale-1 with main")]) == 1
    second.engine.deliver(chat)
    chat.assert_each_once()
    assert ("updated" in chat.kinds()) is not kept
    for name in ["dave"] if kept else ["bob", "dave"]:
        second.engine.approve("scale-1", actor=BOB if name == "bob" else DAVE)
    assert second.engine.get("scale-1").state == State.APPLIED


# --- the backend's part ---------------------------------------------------------------------


def test_a_branch_behind_its_base_gets_a_merge_of_the_base_holding_the_files(
    node: Node,
) -> None:
    repo: LocalGitBackend = node.git
    text = repo.read_file(STAGING)
    files = {STAGING: text.replace("minReplicas: 2", "minReplicas: 4")}
    first = repo.open(
        proposal_id="scale-9",
        branch="opsgate/scale-9",
        base_sha=repo.base_head(),
        files=files,
        title="t",
        body="b",
    )
    main = land_outside(node, STAGING, "maxReplicas: 6", "maxReplicas: 8")
    again = {STAGING: repo.read_file(STAGING).replace("minReplicas: 2", "minReplicas: 4")}

    pull = repo.open(
        proposal_id="scale-9",
        branch="opsgate/scale-9",
        base_sha=main,
        files=again,
        title="t",
        body="b",
    )
    repeated = repo.open(
        proposal_id="scale-9",
        branch="opsgate/scale-9",
        base_sha=main,
        files=again,
        title="t",
        body="b",
    )

    assert parents(node, pull.head_sha) == [first.head_sha, main]
    assert repeated.head_sha == pull.head_sha  # safe to repeat
    assert repo.read_file(STAGING, ref=pull.head_sha) == again[STAGING]
    assert repo.find_merge("scale-9") is None  # the base merged in is no merge of the proposal
    merged = repo.merge(
        proposal_id="scale-9", branch="opsgate/scale-9", head_sha=pull.head_sha, title="t"
    )
    assert repo.read_file(STAGING, ref=merged) == again[STAGING]
