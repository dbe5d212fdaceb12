"""Reverts: a proposal that sets every knob an applied proposal moved back to its old value.

Opened by the verifier when a change degraded its target, or by a person with /rollback. A
revert is a proposal like any other (kind `rollback`, so its PR can be labelled so) that
names the proposal it undoes in `reverts`; policy decides its approvals (`rollback:` in
policy.yaml may fast-track it). Once the revert is applied, its original becomes
`rolled_back`: `settle()` derives that from the store, so a restart in between loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import aliased

from approval_engine import store as db
from approval_engine.errors import ApprovalError, InvalidTransitionError
from approval_engine.model import ACTIVE_STATES, ChangeRequest, KnobChange, Proposal, State
from approval_engine.rbac import Actor

if TYPE_CHECKING:
    from approval_engine.engine import Engine, ProposeOutcome

__all__ = ["OPSGATE", "Rollbacks"]

log = logging.getLogger(__name__)

# The bot itself, when it opens a revert: it proposes, people approve.
OPSGATE = Actor(name="opsgate", roles=frozenset({"operator"}), principal="opsgate")

_NOTHING_DONE = {
    State.REJECTED: "was rejected",
    State.EXPIRED: "expired",
    State.SUPERSEDED: "was superseded",
}


class Rollbacks:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def request(
        self, proposal_id: str, *, actor: Actor, why: str, evidence: Sequence[str] = ()
    ) -> ProposeOutcome:
        """Open (or find the open) revert of `proposal_id`.

        Raises ProposalNotFoundError for an unknown id, InvalidTransitionError when there is
        nothing this proposal changed that a revert could undo, and whatever `propose` raises
        (a lock, a budget, policy).
        """
        from approval_engine.engine import ProposeOutcome

        engine = self.engine
        original = engine.get(proposal_id)
        problem = self._problem(original)
        if problem is not None:
            raise self._refuse(actor, proposal_id, problem)
        active = self.active_revert(original.id)
        if active is not None:
            return ProposeOutcome(
                proposal=active,
                action="unchanged",
                message=f"{active.id} already reverts {original.id} ({active.state.value}, "
                f"{len(active.current_approvals())} of {active.quorum} approvals)",
            )
        current = engine.current_values(original.service, original.env)
        moved = [k for k in original.knobs if current.get(k.knob) != k.new]
        if moved:
            k = moved[0]
            problem = (
                f"{original.service}/{original.env} {k.knob} is {current.get(k.knob)} now, not "
                f"{k.new} as {original.id} left it: a later change moved it, and a revert would "
                "undo that too; propose the value you want instead"
            )
            raise self._refuse(actor, proposal_id, problem)
        change = ", ".join(f"{k.key} {k.old} → {k.new}" for k in original.knobs)
        request = ChangeRequest(
            kind="rollback",
            service=original.service,
            env=original.env,
            changes=tuple(KnobChange(k.knob, k.old) for k in original.knobs),
            rationale=f"Revert {original.id} ({change}): {why}",
            requested_by=actor.name,
            evidence=tuple(evidence),
            reverts=original.id,
        )
        self._make_way(original, actor=actor)
        return engine.propose(request, actor=actor)

    def _make_way(self, original: Proposal, *, actor: Actor) -> None:
        """A revert is urgent: an open wish on the same target gives way to it.

        One that is approved, or already merging or syncing, goes on; the revert then waits for
        it (propose says so), since it may be what fixes the target.
        """
        target = f"{original.service}/{original.env}"
        with self.engine.store.transaction() as session:
            holder_id = db.lock_holder(session, target)
            holder = db.load_proposal(session, holder_id) if holder_id else None
        if holder is None or holder.state != State.OPEN or holder.reverts is not None:
            return
        self.engine._transition(
            holder.id,
            State.SUPERSEDED,
            actor=actor.name,
            text=f"{holder.id} withdrawn: the revert of {original.id} needs {target}; "
            "propose it again once the revert is applied.",
            detail={"by_revert_of": original.id},
            close_reason=f"withdrawn for the revert of {original.id}",
        )

    def _refuse(self, actor: Actor, proposal_id: str, reason: str) -> InvalidTransitionError:
        self.engine.audit_denial(
            actor=actor.name, action="rollback", subject=proposal_id, reason=reason
        )
        return InvalidTransitionError(reason)

    def _problem(self, original: Proposal) -> str | None:
        """Why `original` cannot be reverted, or None."""
        pid, state = original.id, original.state
        if original.reverts is not None:
            return (
                f"{pid} is itself the revert of {original.reverts}; to make that change "
                "again, propose it again"
            )
        if state == State.APPLIED or (state == State.FAILED and original.merge_sha):
            return None
        if state == State.ROLLED_BACK:
            by = self._reverts_of(pid, states=(State.APPLIED,))
            who = f" by {by[0].id}" if by else ""
            return f"{pid} was already rolled back{who}"
        if state == State.OPEN:
            return (
                f"{pid} is open, not applied; there is nothing to roll back "
                f"(/reject {pid} withdraws it)"
            )
        if state in ACTIVE_STATES:
            return f"{pid} is {state.value}, not applied yet; wait until it is, then roll it back"
        done = _NOTHING_DONE.get(state, "failed before it was merged")
        return f"{pid} {done}; it changed nothing, so there is nothing to roll back"

    def active_revert(self, proposal_id: str) -> Proposal | None:
        found = self._reverts_of(proposal_id, states=tuple(ACTIVE_STATES))
        return found[0] if found else None

    def _reverts_of(self, proposal_id: str, *, states: Sequence[State]) -> list[Proposal]:
        with self.engine.store.transaction() as session:
            rows = session.scalars(
                select(db.ProposalRow)
                .where(
                    db.ProposalRow.reverts == proposal_id,
                    db.ProposalRow.state.in_([s.value for s in states]),
                )
                .order_by(db.ProposalRow.created_at.desc())
            ).all()
            return [db.to_proposal(row, ()) for row in rows]

    def settle(self) -> None:
        """Mark `rolled_back` every proposal whose revert is applied; safe to call any time."""
        revert, original = aliased(db.ProposalRow), aliased(db.ProposalRow)
        with self.engine.store.transaction() as session:
            pairs = session.execute(
                select(revert.id, original.id)
                .join(original, original.id == revert.reverts)
                .where(
                    revert.state == State.APPLIED.value,
                    original.state.in_([State.APPLIED.value, State.FAILED.value]),
                )
            ).all()
        for revert_id, original_id in pairs:
            try:
                restored = self.engine.get(revert_id)
                knobs = ", ".join(f"{k.key} {k.new}" for k in restored.knobs)
                self.engine._transition(
                    original_id,
                    State.ROLLED_BACK,
                    actor="opsgate",
                    text=f"{original_id} rolled back: {revert_id} is applied, so "
                    f"{restored.service}/{restored.env} has {knobs or 'its old values'} again",
                    detail={"revert": revert_id},
                )
            except ApprovalError as e:
                log.warning("marking %s rolled back after %s failed: %s", original_id, revert_id, e)
