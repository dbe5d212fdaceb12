"""A restart at any step resumes without a second branch, merge or message (DESIGN rule 4).

The first process dies (a `Crash` no part of the engine catches) or simply stops; a new
process is built on the same git repo and SQLite file, reconciles and delivers, and the
proposal ends applied as if nothing had happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from approval_engine import audit
from approval_engine.engine import Engine
from approval_engine.errors import PolicyDeniedError
from approval_engine.model import Proposal, State
from tests.approval_engine._support import (
    ALICE,
    BOB,
    DAVE,
    Boot,
    Crash,
    CrashingBackend,
    CrashingDeployer,
    Node,
    Recorder,
    StalledDeployer,
    branch_commits,
    merge_commits,
    wish,
)

FLOOR = wish("checkout", "staging", ("min_replicas", 4))
EVERY_ANNOUNCEMENT = ["opened", "approved", "merged", "syncing", "applied"]


@dataclass(frozen=True)
class StopPoint:
    """Where the first process stops, and how it is made to stop there."""

    state: State  # the proposal's state the next process finds
    wiring: dict[str, Any] = field(default_factory=dict)  # keyword arguments for boot()
    approve_first: bool = True  # whether the first process got as far as the approval
    dies: bool = True  # False: it stops cleanly after its last step
    head_written: bool = True  # the store knows the branch's head
    branch_written: bool = True  # the branch exists in git
    merged: bool = False  # the merge commit exists in git


STOP_POINTS = {
    "open-died-before-the-branch-was-written": StopPoint(
        State.OPEN,
        {"backend": lambda g: CrashingBackend(g, call="open", when="before")},
        approve_first=False,
        head_written=False,
        branch_written=False,
    ),
    "open-died-after-the-branch-was-written-before-its-head-was-stored": StopPoint(
        State.OPEN,
        {"backend": lambda g: CrashingBackend(g, call="open", when="after")},
        approve_first=False,
        head_written=False,
    ),
    "open-stopped": StopPoint(State.OPEN, approve_first=False, dies=False),
    "approved-died-before-merging": StopPoint(
        State.APPROVED, {"backend": lambda g: CrashingBackend(g, call="merge", when="before")}
    ),
    "approved-died-after-merging": StopPoint(
        State.APPROVED,
        {"backend": lambda g: CrashingBackend(g, call="merge", when="after")},
        merged=True,
    ),
    "merged-died-asking-for-the-sync": StopPoint(
        State.MERGED, {"deployer": CrashingDeployer}, merged=True
    ),
    "syncing-rollout-still-progressing": StopPoint(
        State.SYNCING, {"deployer": StalledDeployer}, dies=False, merged=True
    ),
}


def only_proposal(engine: Engine) -> Proposal:
    [proposal] = engine.proposals(active_only=False)
    return proposal


def run_until_stopped(node: Node, stop: StopPoint, chat: Recorder) -> Proposal:
    """The first process: propose, announce, approve, until it dies or stops at `stop`."""
    if stop.dies and not stop.approve_first:
        with pytest.raises(Crash):
            node.engine.propose(FLOOR, actor=ALICE)
        return only_proposal(node.engine)
    node.engine.propose(FLOOR, actor=ALICE)
    node.engine.deliver(chat)
    if stop.approve_first:
        if stop.dies:
            with pytest.raises(Crash):
                node.engine.approve(only_proposal(node.engine).id, actor=BOB)
        else:
            node.engine.approve(only_proposal(node.engine).id, actor=BOB)
            node.engine.deliver(chat)
    return only_proposal(node.engine)


def assert_applied_once(node: Node, proposal_id: str, chat: Recorder) -> None:
    proposal = node.engine.get(proposal_id)
    assert proposal.state == State.APPLIED, proposal.message
    assert node.git.branches() == ["main", f"opsgate/{proposal_id}"]
    assert len(branch_commits(node.git.path, proposal_id)) == 1, "one branch commit"
    merges = merge_commits(node.git.path, proposal_id)
    assert len(merges) == 1, f"{len(merges)} merge commits for {proposal_id}"
    merge = merges[0]
    assert merge.sha == proposal.merge_sha == node.git.base_head()
    assert "  minReplicas: 4\n" in node.git.read_file("helm-charts/checkout/values-staging.yaml")
    spec = node.cluster.spec("checkout", "staging")
    assert spec is not None
    assert spec.min_replicas == 4
    assert chat.kinds(proposal_id) == EVERY_ANNOUNCEMENT
    chat.assert_each_once()
    actions = [e.action for e in audit.tail(node.store, limit=100) if e.subject == proposal_id]
    assert actions == ["proposed", "approved", *EVERY_ANNOUNCEMENT[1:]]
    assert audit.verify(node.store).ok


@pytest.mark.parametrize("where", list(STOP_POINTS))
def test_a_restart_resumes_to_applied_without_a_second_branch_merge_or_message(
    boot: Boot, where: str
) -> None:
    stop = STOP_POINTS[where]
    chat = Recorder()
    first = boot(**stop.wiring)
    stopped = run_until_stopped(first, stop, chat)
    assert stopped.state == stop.state
    assert bool(stopped.head_sha) == stop.head_written
    assert (first.git.branch_head(stopped.branch) is not None) == stop.branch_written
    assert len(merge_commits(first.git.path, stopped.id)) == int(stop.merged)
    first.close()

    second = boot()
    second.engine.reconcile()
    second.engine.deliver(chat)
    if stop.state == State.OPEN:
        second.engine.approve(stopped.id, actor=BOB)
        second.engine.deliver(chat)

    assert_applied_once(second, stopped.id, chat)
    second.close()

    third = boot()  # and yet another restart finds nothing left to do
    third.engine.reconcile()
    assert third.engine.deliver(chat) == 0
    assert_applied_once(third, stopped.id, chat)


def test_a_proposal_whose_branch_is_not_written_yet_cannot_be_approved(boot: Boot) -> None:
    first = boot(backend=lambda g: CrashingBackend(g, call="open", when="before"))
    with pytest.raises(Crash):
        first.engine.propose(FLOOR, actor=ALICE)
    second = boot()
    proposal = only_proposal(second.engine)

    with pytest.raises(PolicyDeniedError, match="still being written to its branch"):
        second.engine.approve(proposal.id, actor=BOB)

    second.engine.reconcile()
    assert second.engine.approve(proposal.id, actor=BOB).proposal.state == State.APPLIED


def test_a_process_that_died_inside_propose_does_not_block_the_wish_from_being_repeated(
    boot: Boot,
) -> None:
    first = boot(backend=lambda g: CrashingBackend(g, call="open", when="before"))
    with pytest.raises(Crash):
        first.engine.propose(FLOOR, actor=ALICE)

    second = boot()
    again = second.engine.propose(FLOOR, actor=ALICE)

    assert again.proposal is not None
    assert [p.id for p in second.engine.proposals(active_only=False)] == [again.proposal.id]
    assert again.proposal.head_sha
    assert second.git.branches() == ["main", again.proposal.branch]


# --- restarts at the awkward moments in between -----------------------------------------------


class DiesBeforeApproving(Engine):
    """Dies after the deciding approval is stored, before the proposal becomes approved."""

    def _transition(self, proposal_id: str, new: State, **kwargs: Any) -> Proposal:
        if new == State.APPROVED:
            raise Crash("died between storing the approval and the state change")
        return super()._transition(proposal_id, new, **kwargs)


def test_a_restart_after_the_deciding_approval_was_stored_still_merges(boot: Boot) -> None:
    chat = Recorder()
    first = boot(engine_cls=DiesBeforeApproving)
    proposal = first.engine.propose(FLOOR, actor=ALICE).proposal
    assert proposal is not None
    first.engine.deliver(chat)
    with pytest.raises(Crash):
        first.engine.approve(proposal.id, actor=BOB)
    first.close()

    second = boot()
    second.engine.reconcile()
    second.engine.approve(proposal.id, actor=BOB)  # bob tries again, as people do
    second.engine.deliver(chat)

    assert_applied_once(second, proposal.id, chat)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_restart_after_an_update_died_around_its_push_pushes_the_update_and_voids_votes(
    boot: Boot, when: str
) -> None:
    chat = Recorder()
    first = boot(backend=lambda g: CrashingBackend(g, call="open", when=when, nth=2))
    proposal = first.engine.propose(wish("checkout", "prod", ("min_replicas", 4)), actor=ALICE)
    assert proposal.proposal is not None
    pid = proposal.proposal.id
    first.engine.approve(pid, actor=BOB)
    first.engine.deliver(chat)
    with pytest.raises(Crash):
        first.engine.propose(wish("checkout", "prod", ("min_replicas", 5)), actor=ALICE)
    first.close()

    second = boot()
    with pytest.raises(PolicyDeniedError, match="still being written to its branch"):
        second.engine.approve(pid, actor=DAVE)
    second.engine.reconcile()

    shown = second.engine.get(pid)
    assert shown.title.endswith("3 → 5")
    assert "minReplicas: 5" in second.git.read_file(
        "helm-charts/checkout/values-prod.yaml", ref=shown.head_sha
    ), "the head people approve must hold what the proposal shows"
    assert shown.current_approvals() == [], "bob approved the old change, not this one"
    assert second.engine.approve(pid, actor=DAVE).count == 1
    assert second.engine.approve(pid, actor=BOB).proposal.state == State.APPLIED
    assert "minReplicas: 5" in second.git.read_file("helm-charts/checkout/values-prod.yaml")
    assert len(branch_commits(second.git.path, pid)) == 2, "the first commit and the update"
    second.engine.deliver(chat)
    assert chat.kinds(pid) == [
        "opened",
        "approval",
        "updated",
        "approval",
        "approved",
        "merged",
        "syncing",
        "applied",
    ]
    assert "approvals by bob are void" in chat.sent[2].text


def test_a_restart_after_a_rejection_was_stored_still_closes_the_branch(boot: Boot) -> None:
    first = boot(backend=lambda g: CrashingBackend(g, call="close", when="before"))
    proposal = first.engine.propose(FLOOR, actor=ALICE).proposal
    assert proposal is not None
    with pytest.raises(Crash):
        first.engine.reject(proposal.id, actor=BOB)
    assert first.engine.get(proposal.id).state == State.REJECTED
    first.close()

    second = boot()
    second.engine.reconcile()

    assert second.git.branch_head(proposal.branch) is None


def test_a_new_database_on_an_old_repository_never_takes_an_old_merge_for_a_new_one(
    boot: Boot, tmp_path: Path
) -> None:
    first = boot()
    old = first.engine.propose(FLOOR, actor=ALICE).proposal
    assert old is not None
    old_merge = first.engine.approve(old.id, actor=BOB).proposal.merge_sha
    first.close()
    for part in tmp_path.glob("opsgate.db*"):  # the database is lost, the repository kept
        part.unlink()

    second = boot()
    new = second.engine.propose(wish("cart", "staging", ("replicas", 5)), actor=ALICE).proposal
    assert new is not None
    done = second.engine.approve(new.id, actor=BOB).proposal

    assert done.merge_sha != old_merge
    assert "replicaCount: 5" in second.git.read_file("helm-charts/cart/values-staging.yaml")
