"""Noise control and reverts asked for by hand: the target lock agents and people share, the
daily change budget per environment (reverts exempt), and why a revert can be refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approval_engine import audit
from approval_engine.config import EnvironmentPolicy, PolicyConfig
from approval_engine.engine import Engine
from approval_engine.errors import (
    InvalidTransitionError,
    PolicyDeniedError,
    ProposalNotFoundError,
)
from approval_engine.model import Proposal, State
from approval_engine.rbac import agent_actor
from tests.approval_engine._support import ALICE, BOB, DAVE, Boot, Clock, wish


def budgeted(policy: PolicyConfig, staging: int) -> PolicyConfig:
    envs = dict(policy.environments)
    envs["staging"] = EnvironmentPolicy(quorum=1, daily_changes=staging)
    return policy.model_copy(update={"environments": envs})


def applied(engine: Engine, service: str, *changes: tuple[str, int]) -> Proposal:
    proposal = engine.propose(wish(service, "staging", *changes), actor=ALICE).proposal
    assert proposal is not None
    engine.approve(proposal.id, actor=BOB)
    assert engine.get(proposal.id).state == State.APPLIED
    return engine.get(proposal.id)


def last_denial(engine: Engine) -> audit.Entry:
    entry = audit.tail(engine.store, limit=1)[0]
    assert entry.action == "denied"
    return entry


# --- the daily change budget ----------------------------------------------------------------


def test_the_budget_refuses_the_next_change_of_the_day_and_audits_it(
    boot: Boot, policy_config: PolicyConfig, clock: Clock
) -> None:
    engine = boot(policy=budgeted(policy_config, staging=2)).engine
    first = applied(engine, "checkout", ("min_replicas", 4))
    engine.propose(wish("cart", "staging", ("replicas", 3)), actor=ALICE)

    with pytest.raises(PolicyDeniedError) as caught:
        engine.propose(wish("search", "staging", ("replicas", 3)), actor=agent_actor("Burst"))

    assert str(caught.value) == (
        "staging has had 2 changes today (budget 2); the budget resets at 00:00 UTC, and "
        "reverts (/rollback) are exempt from it"
    )
    denial = last_denial(engine)
    assert (denial.actor, denial.subject) == ("agent:Burst", "search")
    assert denial.detail["attempted"] == "propose"
    # a repeated wish updates its proposal: no new change, no budget
    again = engine.propose(wish("cart", "staging", ("replicas", 4)), actor=ALICE)
    assert again.action == "updated"
    # other environments keep their own budget
    assert engine.propose(wish("search", "prod", ("replicas", 4)), actor=ALICE).proposal
    # reverts are exempt, and do not count
    revert = engine.rollbacks.request(first.id, actor=DAVE, why="dave asked").proposal
    assert revert is not None and revert.reverts == first.id
    assert engine.noise.opened_today("staging") == 2

    clock.advance(timedelta(hours=12))  # Tuesday 00:00 UTC: a new day, a new budget
    assert engine.propose(wish("search", "staging", ("replicas", 3)), actor=ALICE).proposal


def test_no_daily_changes_means_no_budget(boot: Boot, policy_config: PolicyConfig) -> None:
    envs = dict(policy_config.environments)
    envs["staging"] = EnvironmentPolicy(quorum=1)
    engine = boot(policy=policy_config.model_copy(update={"environments": envs})).engine
    for service in ("checkout", "cart", "search"):
        assert engine.propose(wish(service, "staging", ("replicas", 5)), actor=ALICE).proposal


# --- one change per target and environment --------------------------------------------------


def test_agents_and_people_share_the_target_lock(engine: Engine) -> None:
    held = engine.propose(
        wish("checkout", "prod", ("min_replicas", 6), by="agent:BurstPredictor"),
        actor=agent_actor("BurstPredictor"),
    ).proposal
    assert held is not None

    with pytest.raises(PolicyDeniedError) as caught:
        engine.propose(wish("checkout", "prod", ("target_cpu", 60)), actor=ALICE)

    assert str(caught.value).startswith(
        f"checkout/prod is locked by {held.id} (open, proposed by agent:BurstPredictor: "
        "checkout/prod autoscaling.minReplicas 3 → 6); "
    )
    assert last_denial(engine).actor == "alice"
    # the same knob folds into the agent's proposal, as before
    folded = engine.propose(wish("checkout", "prod", ("min_replicas", 7)), actor=ALICE)
    assert (folded.action, folded.proposal and folded.proposal.id) == ("updated", held.id)


def test_an_open_revert_holds_its_target_against_other_wishes(engine: Engine) -> None:
    first = applied(engine, "checkout", ("min_replicas", 4))
    revert = engine.rollbacks.request(first.id, actor=DAVE, why="dave asked").proposal
    assert revert is not None

    with pytest.raises(PolicyDeniedError) as caught:
        engine.propose(wish("checkout", "staging", ("min_replicas", 5)), actor=ALICE)

    assert str(caught.value) == (
        f"{revert.id} is reverting {first.id} on checkout/staging (open); decide on it first "
        f"(/approve {revert.id} or /reject {revert.id})"
    )


# --- reverts asked for by hand --------------------------------------------------------------


def test_asking_twice_finds_the_open_revert(engine: Engine) -> None:
    first = applied(engine, "checkout", ("min_replicas", 4))
    opened = engine.rollbacks.request(first.id, actor=DAVE, why="dave asked")
    again = engine.rollbacks.request(first.id, actor=ALICE, why="alice asked")
    assert opened.action == "opened" and opened.proposal is not None
    assert again.action == "unchanged"
    assert (
        again.message == f"{opened.proposal.id} already reverts {first.id} (open, 0 of 1 approvals)"
    )
    assert opened.proposal.rationale == (
        f"Revert {first.id} (autoscaling.minReplicas 2 → 4): dave asked"
    )
    assert opened.proposal.title == "rollback: checkout/staging autoscaling.minReplicas 4 → 2"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            "open",
            "{id} is open, not applied; there is nothing to roll back (/reject {id} withdraws it)",
        ),
        ("rejected", "{id} was rejected; it changed nothing, so there is nothing to roll back"),
        ("rolled_back", "{id} was already rolled back by rollback-2"),
        (
            "revert",
            "rollback-2 is itself the revert of {id}; to make that change again, propose it again",
        ),
        (
            "moved",
            "checkout/staging min_replicas is 5 now, not 4 as {id} left it: a later change "
            "moved it, and a revert would undo that too; propose the value you want instead",
        ),
    ],
)
def test_a_revert_that_cannot_be_made_is_refused_with_the_reason_and_audited(
    engine: Engine, setup: str, message: str
) -> None:
    if setup in ("open", "rejected"):
        proposal = engine.propose(wish("checkout", "staging", ("min_replicas", 4)), actor=ALICE)
        assert proposal.proposal is not None
        subject = proposal.proposal.id
        if setup == "rejected":
            engine.reject(subject, actor=BOB)
    else:
        subject = applied(engine, "checkout", ("min_replicas", 4)).id
    if setup in ("rolled_back", "revert"):
        revert = engine.rollbacks.request(subject, actor=DAVE, why="x").proposal
        assert revert is not None
        engine.approve(revert.id, actor=BOB)
        assert engine.get(subject).state == State.ROLLED_BACK
        if setup == "revert":
            subject, message = revert.id, message.replace("{id}", subject)
    if setup == "moved":
        applied(engine, "checkout", ("min_replicas", 5))

    with pytest.raises(InvalidTransitionError) as caught:
        engine.rollbacks.request(subject, actor=DAVE, why="x")

    assert str(caught.value) == message.format(id=subject)
    denial = last_denial(engine)
    assert (denial.actor, denial.subject, denial.detail["attempted"]) == (
        "dave",
        subject,
        "rollback",
    )


def test_an_unknown_id_is_named(engine: Engine) -> None:
    with pytest.raises(ProposalNotFoundError, match="no proposal 'scale-9'"):
        engine.rollbacks.request("scale-9", actor=DAVE, why="x")
