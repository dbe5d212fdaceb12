"""Policy through the engine: who may propose, approve and reject, quorum, head binding,
limits and expiry, with every refusal explained and audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from approval_engine import audit
from approval_engine import store as db
from approval_engine.config import PolicyConfig
from approval_engine.engine import Engine
from approval_engine.errors import PolicyDeniedError, ProposalNotFoundError
from approval_engine.model import Proposal, State
from approval_engine.rbac import Actor
from tests.approval_engine._support import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    Boot,
    Clock,
    Node,
    Recorder,
    merge_commits,
    wish,
)


def propose(engine: Engine, service: str, env: str, value: int, *, by: Actor = ALICE) -> Proposal:
    outcome = engine.propose(wish(service, env, ("min_replicas", value), by=by.name), actor=by)
    assert outcome.proposal is not None, outcome.message
    return outcome.proposal


def last_denial(engine: Engine) -> audit.Entry:
    entry = audit.tail(engine.store, limit=1)[0]
    assert entry.action == "denied", f"the last audit row is {entry.action}, not a denial"
    return entry


def approval_rows(engine: Engine, proposal_id: str) -> int:
    with engine.store.transaction() as session:
        query = select(func.count()).where(db.ApprovalRow.proposal_id == proposal_id)
        return session.scalar(query) or 0


def audit_actions(engine: Engine, subject: str) -> list[str]:
    return [e.action for e in audit.tail(engine.store, limit=1000) if e.subject == subject]


# --- proposing ------------------------------------------------------------------------------


def test_a_viewer_cannot_propose_and_the_refusal_says_why_and_is_audited(node: Node) -> None:
    with pytest.raises(PolicyDeniedError) as caught:
        node.engine.propose(wish("checkout", "staging", ("min_replicas", 4)), actor=CAROL)

    assert str(caught.value) == "carol is a viewer; proposing a change needs the operator role"
    denial = last_denial(node.engine)
    assert (denial.actor, denial.subject) == ("carol", "checkout")
    assert denial.detail == {"attempted": "propose", "reason": str(caught.value)}
    assert node.engine.proposals(active_only=False) == []
    assert node.git.branches() == ["main"]


def test_an_operator_may_propose(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4, by=ERIN)

    assert (proposal.state, proposal.proposer, proposal.quorum) == (State.OPEN, "erin", 1)


@pytest.mark.parametrize(
    ("service", "knob", "value", "reason"),
    [
        ("checkout", "min_replicas", 41, "checkout may have at most 40 replicas"),
        ("cart", "min_replicas", 31, "cart may have at most 30 replicas"),
        ("cart", "max_replicas", 31, "cart may have at most 30 replicas"),
        ("search", "replicas", 51, "search may have at most 50 replicas"),
        ("checkout", "min_replicas", 0, "checkout needs at least 1 replica(s)"),
        ("checkout", "replicas", -1, "checkout needs at least 1 replica(s)"),
        ("checkout", "min_replicas", True, "min_replicas must be a whole number, not True"),
        ("checkout", "min_replicas", 4.5, "min_replicas must be a whole number, not 4.5"),
    ],
)
def test_replica_counts_outside_the_policy_limits_are_refused(
    engine: Engine, service: str, knob: str, value: int, reason: str
) -> None:
    with pytest.raises(PolicyDeniedError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        engine.propose(wish(service, "prod", (knob, value)), actor=ALICE)

    assert last_denial(engine).detail["reason"].startswith(reason)
    assert engine.proposals(active_only=False) == []


def test_the_limits_themselves_are_allowed(engine: Engine) -> None:
    assert propose(engine, "checkout", "prod", 40).knobs[0].new == 40
    assert propose(engine, "cart", "prod", 1).knobs[0].new == 1


# --- approving ------------------------------------------------------------------------------


def test_the_proposer_cannot_approve_their_own_proposal(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)

    with pytest.raises(PolicyDeniedError, match="nobody approves their own change"):
        engine.approve(proposal.id, actor=ALICE)

    assert engine.get(proposal.id).state == State.OPEN
    assert approval_rows(engine, proposal.id) == 0


def test_someone_who_joined_a_proposal_by_repeating_the_wish_cannot_approve_it(
    engine: Engine,
) -> None:
    proposal = propose(engine, "checkout", "prod", 4)
    propose(engine, "checkout", "prod", 5, by=BOB)

    with pytest.raises(PolicyDeniedError, match="bob proposed"):
        engine.approve(proposal.id, actor=BOB)
    assert engine.approve(proposal.id, actor=DAVE).count == 1


def test_an_operator_cannot_approve(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)

    with pytest.raises(PolicyDeniedError, match="erin is a operator; approving needs the approver"):
        engine.approve(proposal.id, actor=ERIN)
    assert approval_rows(engine, proposal.id) == 0


def test_staging_merges_after_one_approval(node: Node) -> None:
    proposal = propose(node.engine, "checkout", "staging", 4)

    outcome = node.engine.approve(proposal.id, actor=BOB)

    assert (outcome.count, outcome.quorum, outcome.already) == (1, 1, False)
    assert outcome.proposal.state == State.APPLIED
    assert outcome.proposal.merge_sha is not None
    assert len(merge_commits(node.git.path, proposal.id)) == 1


def test_prod_needs_two_approvals_and_says_one_of_two_after_the_first(
    node: Node, chat: Recorder
) -> None:
    proposal = propose(node.engine, "checkout", "prod", 4)

    first = node.engine.approve(proposal.id, actor=BOB)

    assert (first.count, first.quorum, first.proposal.state) == (1, 2, State.OPEN)
    assert merge_commits(node.git.path, proposal.id) == []
    node.engine.deliver(chat)
    assert chat.sent[-1].kind == "approval"
    assert chat.sent[-1].text == f"{proposal.id}: approved by bob (1 of 2 approvals)"

    second = node.engine.approve(proposal.id, actor=DAVE)

    assert (second.count, second.quorum, second.already) == (2, 2, False)
    assert second.proposal.merge_sha is not None
    assert second.proposal.state == State.APPLIED
    assert len(merge_commits(node.git.path, proposal.id)) == 1
    node.engine.deliver(chat)
    assert f"{proposal.id} approved by bob, dave (2 of 2); merging" in [a.text for a in chat.sent]


def test_approving_twice_is_idempotent(engine: Engine, chat: Recorder) -> None:
    proposal = propose(engine, "checkout", "prod", 4)
    engine.approve(proposal.id, actor=BOB)

    again = engine.approve(proposal.id, actor=BOB)

    assert (again.already, again.count, again.proposal.state) == (True, 1, State.OPEN)
    assert approval_rows(engine, proposal.id) == 1
    assert audit_actions(engine, proposal.id).count("approved") == 1
    engine.deliver(chat)
    assert chat.kinds().count("approval") == 1


def test_approving_again_after_the_merge_is_idempotent_too(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)
    engine.approve(proposal.id, actor=BOB)

    again = engine.approve(proposal.id, actor=BOB)

    assert again.already is True
    assert again.proposal.state == State.APPLIED


def test_approving_a_closed_proposal_one_did_not_approve_is_refused(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)
    engine.approve(proposal.id, actor=BOB)

    with pytest.raises(PolicyDeniedError, match="is applied; there is nothing to approve"):
        engine.approve(proposal.id, actor=DAVE)


def test_an_update_voids_the_approvals_given_before_it(node: Node, chat: Recorder) -> None:
    engine = node.engine
    proposal = propose(engine, "checkout", "prod", 4)
    engine.approve(proposal.id, actor=BOB)

    updated = engine.propose(wish("checkout", "prod", ("min_replicas", 6)), actor=ALICE)

    assert updated.action == "updated"
    assert updated.proposal is not None
    assert updated.proposal.id == proposal.id
    assert updated.proposal.head_sha != proposal.head_sha
    assert updated.proposal.current_approvals() == []
    engine.deliver(chat)
    assert chat.sent[-1].kind == "updated"
    assert "approvals by bob are void" in chat.sent[-1].text

    after_dave = engine.approve(proposal.id, actor=DAVE)
    assert (after_dave.count, after_dave.proposal.state) == (1, State.OPEN), "bob's vote is void"

    after_bob = engine.approve(proposal.id, actor=BOB)
    assert (after_bob.already, after_bob.count) == (False, 2)
    assert after_bob.proposal.state == State.APPLIED
    assert "minReplicas: 6" in node.git.read_file("helm-charts/checkout/values-prod.yaml")


def test_approving_a_head_that_is_no_longer_current_is_refused(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "prod", 4)
    old_head = proposal.head_sha
    new_head = propose(engine, "checkout", "prod", 5).head_sha

    with pytest.raises(PolicyDeniedError, match=f"changed since you looked \\(now {new_head[:7]}"):
        engine.approve(proposal.id, actor=BOB, head=old_head[:7])

    assert approval_rows(engine, proposal.id) == 0
    assert engine.approve(proposal.id, actor=BOB, head=new_head[:7]).count == 1


def _strict_prod(policy_config: PolicyConfig) -> PolicyConfig:
    environments = policy_config.model_dump()["environments"]
    environments["prod"]["approvers"] = ["dave"]
    return PolicyConfig.model_validate(policy_config.model_dump() | {"environments": environments})


def test_only_the_listed_approvers_may_approve_in_an_environment(
    boot: Boot, policy_config: PolicyConfig
) -> None:
    engine = boot(policy=_strict_prod(policy_config)).engine
    in_prod = propose(engine, "checkout", "prod", 4)
    in_staging = propose(engine, "cart", "staging", 3)

    with pytest.raises(PolicyDeniedError, match=r"\(approvers there: dave\)"):
        engine.approve(in_prod.id, actor=BOB)

    assert engine.approve(in_prod.id, actor=DAVE).count == 1
    assert engine.approve(in_staging.id, actor=BOB).proposal.state == State.APPLIED


REFUSED_APPROVALS = {
    "own-proposal": (ALICE, None, "nobody approves their own change"),
    "operator": (ERIN, None, "approving needs the approver role"),
    "not-a-listed-approver": (BOB, None, "bob may not approve changes in prod"),
    "stale-head": (DAVE, "0000000", "changed since you looked"),
}


@pytest.mark.parametrize("case", list(REFUSED_APPROVALS))
def test_every_refused_approval_is_audited(
    boot: Boot, policy_config: PolicyConfig, case: str
) -> None:
    engine = boot(policy=_strict_prod(policy_config)).engine
    proposal = propose(engine, "checkout", "prod", 4)
    actor, head, reason = REFUSED_APPROVALS[case]

    with pytest.raises(PolicyDeniedError, match=reason):
        engine.approve(proposal.id, actor=actor, head=head)

    denial = last_denial(engine)
    assert (denial.actor, denial.subject) == (actor.name, proposal.id)
    assert denial.detail["attempted"] == "approve"
    assert reason in denial.detail["reason"]


def test_a_wish_on_a_locked_target_is_refused_and_audited(engine: Engine) -> None:
    first = propose(engine, "checkout", "staging", 4)

    with pytest.raises(PolicyDeniedError, match=f"checkout/staging is locked by {first.id}"):
        engine.propose(wish("checkout", "staging", ("target_cpu", 55)), actor=DAVE)

    denial = last_denial(engine)
    assert (denial.actor, denial.detail["attempted"]) == ("dave", "propose")
    assert f"approve or reject {first.id} first" in denial.detail["reason"]


def test_an_unknown_proposal_id_is_named_with_a_suggestion(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)

    with pytest.raises(ProposalNotFoundError, match=f"did you mean {proposal.id}"):
        engine.approve(proposal.id + "0", actor=BOB)


# --- rejecting ------------------------------------------------------------------------------


def test_a_viewer_cannot_reject(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)

    with pytest.raises(PolicyDeniedError, match="rejecting needs the approver role"):
        engine.reject(proposal.id, actor=CAROL)

    assert last_denial(engine).detail["attempted"] == "reject"
    assert engine.get(proposal.id).state == State.OPEN


def test_the_proposer_may_withdraw_their_own_proposal(node: Node, chat: Recorder) -> None:
    proposal = propose(node.engine, "checkout", "staging", 4, by=ERIN)

    rejected = node.engine.reject(proposal.id, actor=ERIN, reason="not needed after all")

    assert rejected.state == State.REJECTED
    assert node.git.branch_head(proposal.branch) is None
    node.engine.deliver(chat)
    assert chat.sent[-1].kind == "rejected"
    assert chat.sent[-1].text == f"{proposal.id} rejected by erin: not needed after all"


def test_an_approver_may_reject_and_the_knob_is_free_again(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)

    assert engine.reject(proposal.id, actor=BOB).state == State.REJECTED
    assert audit_actions(engine, proposal.id)[-1] == "rejected"
    assert propose(engine, "checkout", "staging", 4).id != proposal.id


def test_only_open_proposals_can_be_rejected(engine: Engine) -> None:
    proposal = propose(engine, "checkout", "staging", 4)
    engine.approve(proposal.id, actor=BOB)

    with pytest.raises(PolicyDeniedError, match="only open proposals can be rejected"):
        engine.reject(proposal.id, actor=DAVE)
    assert engine.get(proposal.id).state == State.APPLIED


# --- expiry ---------------------------------------------------------------------------------


def test_an_open_proposal_expires_after_the_ttl(node: Node, clock: Clock, chat: Recorder) -> None:
    engine = node.engine
    ttl = engine.policy.config.proposal_ttl
    proposal = propose(engine, "checkout", "staging", 4)

    clock.advance(ttl - timedelta(seconds=1))
    engine.reconcile()
    assert engine.get(proposal.id).state == State.OPEN

    clock.advance(timedelta(seconds=1))
    engine.reconcile()

    assert engine.get(proposal.id).state == State.EXPIRED
    assert node.git.branch_head(proposal.branch) is None
    assert audit_actions(engine, proposal.id)[-1] == "expired"
    engine.deliver(chat)
    assert chat.sent[-1].text == f"{proposal.id} expired: no decision within 1d"
    fresh = propose(engine, "checkout", "staging", 4)
    assert fresh.id != proposal.id
    assert fresh.state == State.OPEN


def test_a_repeated_wish_gives_an_open_proposal_a_new_ttl(engine: Engine, clock: Clock) -> None:
    ttl = engine.policy.config.proposal_ttl
    proposal = propose(engine, "checkout", "staging", 4)
    clock.advance(ttl / 2)
    propose(engine, "checkout", "staging", 5)

    clock.advance(ttl / 2)
    engine.reconcile()

    assert engine.get(proposal.id).state == State.OPEN


def test_a_proposal_past_its_ttl_cannot_be_approved_even_before_reconcile_runs(
    node: Node, clock: Clock
) -> None:
    engine = node.engine
    proposal = propose(engine, "checkout", "staging", 4)
    clock.advance(engine.policy.config.proposal_ttl)

    with pytest.raises(PolicyDeniedError, match=f"{proposal.id} expired; propose the change"):
        engine.approve(proposal.id, actor=BOB)

    assert merge_commits(node.git.path, proposal.id) == []
    assert engine.get(proposal.id).state == State.EXPIRED
    assert approval_rows(engine, proposal.id) == 0
    assert audit_actions(engine, proposal.id)[-2:] == ["denied", "expired"]
