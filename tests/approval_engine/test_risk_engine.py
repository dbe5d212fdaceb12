"""Risk through the engine: stored on the proposal, written into the PR and the chat card,
raising the quorum, critical needing an admin (a freeze is critical too), and a database from
before risk existed still opening and behaving as it did."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from approval_engine import audit
from approval_engine.config import Freeze, PolicyConfig
from approval_engine.engine import Engine
from approval_engine.errors import PolicyDeniedError
from approval_engine.model import Proposal, Risk, RiskLevel, State
from approval_engine.policy import Policy
from approval_engine.rbac import Actor
from approval_engine.store import Base, add_missing_columns
from bots.commands.proposals import proposal_card
from tests.approval_engine._support import (
    ALICE,
    BOB,
    DAVE,
    START,
    Boot,
    Clock,
    branch_commits,
    wish,
)

ZOE = Actor(name="zoe", roles=frozenset({"admin"}))  # config/users.yaml names no admin
LOW_CONFIDENCE = 0.3


def open_proposal(
    engine: Engine, service: str, env: str, value: int, *, confidence: float | None = None
) -> Proposal:
    request = replace(wish(service, env, ("min_replicas", value)), confidence=confidence)
    outcome = engine.propose(request, actor=ALICE)
    assert outcome.proposal is not None, outcome.message
    return outcome.proposal


def with_freezes(policy_config: PolicyConfig, *freezes: Freeze) -> PolicyConfig:
    return PolicyConfig.model_validate(
        policy_config.model_dump() | {"freezes": [f.model_dump() for f in freezes]}
    )


def last_denial(engine: Engine) -> audit.Entry:
    entry = audit.tail(engine.store, limit=1)[0]
    assert entry.action == "denied", f"the last audit row is {entry.action}, not a denial"
    return entry


# --- where the risk shows ---------------------------------------------------------------------


def test_a_proposal_keeps_its_risk_and_shows_it_in_the_pr_and_on_the_card(
    boot: Boot, golden: Callable[[str, str], None]
) -> None:
    node = boot()
    proposal = open_proposal(node.engine, "checkout", "prod", 1)  # floor 3 → 1

    assert proposal.risk == Risk(
        level=RiskLevel.HIGH,
        reasons=("lowers minReplicas 3 → 1 (−67 % capacity)", "prod environment"),
    )
    node.close()
    assert boot().engine.get(proposal.id).risk == proposal.risk  # stored, not recomputed
    (commit,) = branch_commits(node.git.path, proposal.id)
    golden("risk/pr-body-high.txt", commit.message)
    golden("risk/card-high.txt", proposal_card(proposal, show_diff=False).text)
    proposed = next(e for e in audit.tail(node.engine.store) if e.action == "proposed")
    assert proposed.detail["risk"] == "high"
    assert proposed.detail["risk_reasons"] == list(proposal.risk.reasons)


def test_the_card_shows_one_risk_line(engine: Engine) -> None:
    proposal = open_proposal(engine, "checkout", "staging", 4)

    lines = proposal_card(proposal).text.splitlines()

    risk_lines = [line for line in lines if line.startswith("Risk: ")]
    assert risk_lines == [
        "Risk: low — staging environment; raises minReplicas 2 → 4 (+100 % capacity; costs more)"
    ]


# --- quorum -----------------------------------------------------------------------------------


def test_high_risk_raises_the_staging_quorum_to_two(engine: Engine) -> None:
    proposal = open_proposal(engine, "checkout", "staging", 4, confidence=LOW_CONFIDENCE)

    assert proposal.risk is not None and proposal.risk.level == RiskLevel.HIGH
    assert proposal.risk.reasons[0] == "proposer's confidence 0.30 is below 0.5"
    assert proposal.quorum == 2
    assert engine.approve(proposal.id, actor=BOB).proposal.state == State.OPEN
    assert engine.approve(proposal.id, actor=DAVE).proposal.state == State.APPLIED


def test_an_update_reassesses_the_risk_and_the_quorum(engine: Engine) -> None:
    first = open_proposal(engine, "checkout", "staging", 4)
    assert (first.risk and first.risk.level, first.quorum) == (RiskLevel.LOW, 1)

    updated = open_proposal(engine, "checkout", "staging", 5, confidence=LOW_CONFIDENCE)

    assert updated.id == first.id
    assert (updated.risk and updated.risk.level, updated.quorum) == (RiskLevel.HIGH, 2)
    assert updated.confidence == LOW_CONFIDENCE


# --- critical: an admin among the approvers ---------------------------------------------------


MONDAY_FREEZE = Freeze(name="monday", envs=["prod"], weekly="mon 00:00 - tue 00:00")


def test_a_change_during_a_freeze_is_critical_and_needs_an_admin_among_its_approvers(
    boot: Boot, policy_config: PolicyConfig
) -> None:
    engine = boot(policy=with_freezes(policy_config, MONDAY_FREEZE)).engine
    proposal = open_proposal(engine, "checkout", "prod", 4)  # START is a Monday
    assert proposal.risk is not None and proposal.risk.level == RiskLevel.CRITICAL
    assert proposal.risk.reasons[0] == "inside freeze 'monday' until 2025-01-07 00:00 UTC"
    assert proposal.quorum == 2

    assert engine.approve(proposal.id, actor=BOB).count == 1  # room is left for an admin
    with pytest.raises(PolicyDeniedError) as caught:
        engine.approve(proposal.id, actor=DAVE)

    reason = str(caught.value)
    assert reason == (
        f"{proposal.id} is critical risk (inside freeze 'monday' until 2025-01-07 00:00 UTC): "
        "someone with the admin role must be among its approvers, and none has approved yet; "
        "dave (approver) would be approval 2 of 2"
    )
    denial = last_denial(engine)
    assert (denial.actor, denial.subject, denial.detail["reason"]) == ("dave", proposal.id, reason)
    assert denial.detail["attempted"] == "approve"
    assert len(engine.get(proposal.id).current_approvals()) == 1

    done = engine.approve(proposal.id, actor=ZOE)
    assert (done.count, done.proposal.state) == (2, State.APPLIED)
    roles = [e.detail["role"] for e in audit.tail(engine.store, limit=100) if "role" in e.detail]
    assert roles == ["approver", "admin"]


def test_once_an_admin_approved_anyone_may_complete_the_quorum(
    boot: Boot, policy_config: PolicyConfig
) -> None:
    engine = boot(policy=with_freezes(policy_config, MONDAY_FREEZE)).engine
    proposal = open_proposal(engine, "checkout", "prod", 4)

    engine.approve(proposal.id, actor=ZOE)

    assert engine.approve(proposal.id, actor=DAVE).proposal.state == State.APPLIED


def test_a_freeze_that_starts_after_the_proposal_still_needs_an_admin_to_approve(
    boot: Boot, policy_config: PolicyConfig, clock: Clock
) -> None:
    soon = Freeze(
        name="release",
        envs=["staging"],
        start=START + timedelta(hours=1),
        end=START + timedelta(hours=3),
    )
    engine = boot(policy=with_freezes(policy_config, soon)).engine
    proposal = open_proposal(engine, "checkout", "staging", 4)
    assert proposal.risk is not None and proposal.risk.level == RiskLevel.LOW
    clock.advance(timedelta(hours=2))

    with pytest.raises(PolicyDeniedError, match="staging is inside freeze 'release' until"):
        engine.approve(proposal.id, actor=BOB)

    clock.advance(timedelta(hours=1))  # the freeze ended
    assert engine.approve(proposal.id, actor=BOB).proposal.state == State.APPLIED


# --- a database from before risk --------------------------------------------------------------


NEW_COLUMNS = {"proposals": ["risk_level", "risk_reasons"], "approvals": ["role"]}


def make_old(db_file: Path) -> None:
    """Take the database back to the schema from before risk: as an old data dir has it."""
    connection = sqlite3.connect(db_file)
    try:
        for table, columns in NEW_COLUMNS.items():
            for column in columns:
                connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.commit()
    finally:
        connection.close()


def test_missing_columns_are_added_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    make_old(tmp_path / "old.db")

    assert add_missing_columns(engine) == [
        "proposals.risk_level",
        "proposals.risk_reasons",
        "approvals.role",
    ]
    assert add_missing_columns(engine) == []
    engine.dispose()


def test_a_database_from_before_risk_opens_and_its_proposals_behave_as_before(
    boot: Boot, tmp_path: Path
) -> None:
    first = boot()
    staging = open_proposal(first.engine, "checkout", "staging", 4)
    prod = open_proposal(first.engine, "cart", "prod", 4)
    first.engine.approve(prod.id, actor=BOB)
    first.close()
    make_old(tmp_path / "opsgate.db")

    node = boot()

    old = node.engine.get(staging.id)
    assert old.risk is None
    assert old.approvals == []
    assert not any(line.startswith("Risk") for line in proposal_card(old).text.splitlines())
    old_prod = node.engine.get(prod.id)
    assert [(a.approver, a.role) for a in old_prod.approvals] == [("bob", None)]
    assert node.engine.approve(staging.id, actor=BOB).proposal.state == State.APPLIED
    assert node.engine.approve(prod.id, actor=DAVE).proposal.state == State.APPLIED


def test_an_old_proposal_without_risk_still_needs_an_admin_during_a_freeze(
    boot: Boot, policy_config: PolicyConfig, tmp_path: Path, clock: Clock
) -> None:
    first = boot()
    proposal = open_proposal(first.engine, "checkout", "staging", 4)
    first.close()
    make_old(tmp_path / "opsgate.db")
    everywhere = Freeze(name="all", start=START, end=START + timedelta(hours=1))

    engine = boot(policy=with_freezes(policy_config, everywhere)).engine

    with pytest.raises(PolicyDeniedError, match="staging is inside freeze 'all' until"):
        engine.approve(proposal.id, actor=BOB)
    clock.now = datetime.fromisoformat("2025-01-06T13:00:00+00:00")
    assert engine.approve(proposal.id, actor=BOB).proposal.state == State.APPLIED


# --- what each level demands ------------------------------------------------------------------


def test_a_level_demands_at_least_what_the_levels_below_it_demand(
    policy_config: PolicyConfig,
) -> None:
    config = PolicyConfig.model_validate(
        policy_config.model_dump()
        | {"risk": {"medium": {"quorum_at_least": 3, "approver_role": "approver"}}}
    )
    policy = Policy(config)

    def quorum(env: str, level: RiskLevel | None) -> int:
        return policy.quorum(env, None if level is None else Risk(level=level))

    assert [quorum("staging", lv) for lv in (None, *RiskLevel)] == [1, 1, 3, 3, 3]
    assert [policy.required_role(lv) for lv in RiskLevel] == [None, "approver", "approver", "admin"]
