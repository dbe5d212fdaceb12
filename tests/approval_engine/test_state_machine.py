"""The proposal state machine: exactly the transitions in TRANSITIONS happen, nothing else."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from approval_engine import audit
from approval_engine import store as db
from approval_engine.config import PolicyConfig
from approval_engine.engine import TERMINAL, Engine
from approval_engine.errors import InvalidTransitionError
from approval_engine.model import (
    ACTIVE_STATES,
    TRANSITIONS,
    EditedKnob,
    Proposal,
    State,
    check_transition,
)
from approval_engine.prs.local_git import LocalGitBackend
from approval_engine.store import Store
from approval_engine.targets import Targets
from tests.approval_engine._support import START, Clock, ManualArgoCD

ALL_PAIRS = list(itertools.product(State, State))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


def _name(pair: tuple[State, State]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_table_names_every_state_and_only_states() -> None:
    assert set(TRANSITIONS) == set(State)
    assert all(targets <= set(State) for targets in TRANSITIONS.values())
    assert len(ALLOWED) + len(REFUSED) == len(State) ** 2


def test_the_happy_path_is_a_chain_of_allowed_steps() -> None:
    path = [State.OPEN, State.APPROVED, State.MERGED, State.SYNCING, State.APPLIED]
    for current, new in itertools.pairwise(path):
        check_transition("scale-1", current, new)


@pytest.mark.parametrize("pair", ALLOWED, ids=_name)
def test_an_allowed_transition_passes(pair: tuple[State, State]) -> None:
    current, new = pair
    check_transition("scale-1", current, new)  # does not raise


@pytest.mark.parametrize("pair", REFUSED, ids=_name)
def test_any_other_transition_is_refused_naming_both_states(pair: tuple[State, State]) -> None:
    current, new = pair
    with pytest.raises(InvalidTransitionError) as caught:
        check_transition("scale-7", current, new)
    text = str(caught.value)
    assert f"scale-7 is {current.value}" in text
    assert f"cannot become {new.value}" in text


def test_a_refusal_lists_the_ways_out_or_says_there_are_none() -> None:
    with pytest.raises(InvalidTransitionError, match=r"only: approved, expired, failed, rejected"):
        check_transition("scale-1", State.OPEN, State.APPLIED)
    with pytest.raises(InvalidTransitionError, match=r"from rejected only: nothing"):
        check_transition("scale-1", State.REJECTED, State.OPEN)


def test_closed_proposals_never_move_again_except_an_applied_or_failed_one_rolling_back() -> None:
    for state in (State.REJECTED, State.EXPIRED, State.SUPERSEDED, State.ROLLED_BACK):
        assert TRANSITIONS[state] == frozenset(), state
    assert TRANSITIONS[State.APPLIED] == {State.ROLLED_BACK}
    assert TRANSITIONS[State.FAILED] == {State.ROLLED_BACK}


def test_active_states_are_exactly_those_from_which_applied_can_still_be_reached() -> None:
    def reaches_applied(state: State, seen: frozenset[State] = frozenset()) -> bool:
        return any(
            nxt == State.APPLIED or (nxt not in seen and reaches_applied(nxt, seen | {state}))
            for nxt in TRANSITIONS[state]
        )

    assert {s for s in State if reaches_applied(s)} == ACTIVE_STATES
    assert frozenset(State) - ACTIVE_STATES == TERMINAL


# --- the engine applies the table ---------------------------------------------------------


@pytest.fixture
def engine(
    seeded_repo: Path, tmp_path: Path, targets: Targets, policy_config: PolicyConfig, clock: Clock
) -> Iterator[Engine]:
    """An engine on a fresh store; these tests never write to git or deploy anything."""
    store = Store(f"sqlite:///{tmp_path / 'opsgate.db'}")
    yield Engine(
        store=store,
        backend=LocalGitBackend(seeded_repo),
        deployer=ManualArgoCD(),
        targets=targets,
        policy=policy_config,
        clock=clock,
    )
    store.close()


def _stored(engine: Engine, state: State) -> Proposal:
    """A proposal row in `state`, holding the lock on its knob, as the engine would write it."""
    proposal = Proposal(
        id="scale-1",
        kind="scale",
        service="checkout",
        env="staging",
        state=state,
        title="scale: checkout/staging autoscaling.minReplicas 2 → 4",
        rationale="test",
        proposer="alice",
        contributors=["alice"],
        branch="opsgate/scale-1",
        base_sha="0" * 40,
        head_sha="1" * 40,
        diff="",
        files={},
        knobs=[
            EditedKnob(
                knob="min_replicas",
                path="helm-charts/checkout/values-staging.yaml",
                key="autoscaling.minReplicas",
                old=2,
                new=4,
            )
        ],
        quorum=1,
        created_at=START,
        updated_at=START,
        expires_at=START,
        state_since=START,
        merge_sha="2" * 40,
        app="checkout-staging",
    )
    with engine.store.transaction() as session:
        db.write_proposal(session, proposal)
        for key in proposal.lock_keys:
            db.take_lock(session, key, proposal.id)
    return proposal


def _outbox_kinds(engine: Engine) -> list[str]:
    with engine.store.transaction() as session:
        return [row.kind for row in db.pending_outbox(session)]


def _audit_rows(engine: Engine) -> int:
    with engine.store.transaction() as session:
        return session.scalar(select(func.count()).select_from(db.AuditRow)) or 0


@pytest.mark.parametrize("pair", ALLOWED, ids=_name)
def test_the_engine_stores_audits_and_announces_every_allowed_transition(
    engine: Engine, pair: tuple[State, State]
) -> None:
    current, new = pair
    proposal = _stored(engine, current)

    engine._transition(proposal.id, new, actor="opsgate", text=f"now {new.value}")

    assert engine.get(proposal.id).state == new
    last = audit.tail(engine.store, limit=1)[0]
    assert (last.action, last.subject, last.detail["from"]) == (new.value, "scale-1", current.value)
    assert _outbox_kinds(engine) == [new.value]
    with engine.store.transaction() as session:
        holder = db.lock_holder(session, "checkout/staging/min_replicas")
    assert (holder is None) == (new in TERMINAL), "a closed proposal frees its knobs, no other"


@pytest.mark.parametrize(
    "pair",
    [(State.OPEN, State.MERGED), (State.APPROVED, State.APPLIED), (State.APPLIED, State.OPEN)],
    ids=_name,
)
def test_the_engine_refuses_an_illegal_transition_and_changes_nothing(
    engine: Engine, pair: tuple[State, State]
) -> None:
    current, new = pair
    proposal = _stored(engine, current)
    rows_before = _audit_rows(engine)

    with pytest.raises(InvalidTransitionError, match=f"is {current.value}; it cannot become"):
        engine._transition(proposal.id, new, actor="opsgate", text="never sent")

    assert engine.get(proposal.id).state == current
    assert _audit_rows(engine) == rows_before
    assert _outbox_kinds(engine) == []
