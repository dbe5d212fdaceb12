"""Deciding: approvals (each also a review on the pull request) and rejections."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from approval_engine import audit
from approval_engine import store as db
from approval_engine._announcing import denied
from approval_engine._following import follow_pull
from approval_engine._outcomes import ApproveOutcome
from approval_engine.errors import BackendError
from approval_engine.model import Approval, Proposal, State
from approval_engine.prs.base import Reviewer
from approval_engine.rbac import Actor

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["approve", "reject", "review"]

log = logging.getLogger("approval_engine.engine")  # the engine logs under one name


def approve(
    engine: Engine, proposal_id: str, *, actor: Actor, head: str | None = None
) -> ApproveOutcome:
    before = engine.get(proposal_id)  # a clear error for an unknown id
    try:
        # Approve what the pull request holds now, not what a missed webhook left behind.
        followed = follow_pull(engine, before, force=True)
    except BackendError as e:  # the merge looks again before it acts
        log.warning("%s: could not read its pull request: %s", proposal_id, e)
        engine.backoff.note(e, proposal_id)
        followed = False
    if followed:
        moved = engine.get(proposal_id)
        if moved.state == State.OPEN and moved.head_sha != before.head_sha:
            raise denied(
                engine,
                actor,
                "approve",
                proposal_id,
                f"{proposal_id} got new commits on GitHub (now {moved.head_sha[:7]}); "
                f"read /diff {proposal_id} again",
            )
    now = engine.clock()
    with engine.store.transaction() as session:
        proposal = db.load_proposal(session, proposal_id)
        assert proposal is not None
        if proposal.state != State.OPEN and any(
            a.approver == actor.name for a in proposal.approvals
        ):
            return ApproveOutcome(
                proposal=proposal,
                count=len(proposal.current_approvals()),
                quorum=proposal.quorum,
                already=True,
            )
        denial = _approve_denial(engine, proposal, actor, head=head, now=now)
        if denial is None:
            added = db.add_approval(
                session,
                proposal_id,
                Approval(
                    approver=actor.name,
                    head_sha=proposal.head_sha,
                    at=now,
                    role=actor.top_role,
                ),
            )
            proposal = db.load_proposal(session, proposal_id)
            assert proposal is not None
            count = len(proposal.current_approvals())
            if not added:
                return ApproveOutcome(
                    proposal=proposal, count=count, quorum=proposal.quorum, already=True
                )
            audit.record(
                session,
                at=now,
                actor=actor.name,
                action="approved",
                subject=proposal_id,
                detail={
                    "head": proposal.head_sha,
                    "count": count,
                    "quorum": proposal.quorum,
                    "role": actor.top_role,
                },
            )
            if count < proposal.quorum:
                db.enqueue(
                    session,
                    dedupe_key=f"{proposal_id}:approval:{actor.name}:{proposal.head_sha}",
                    kind="approval",
                    text=f"{proposal_id}: approved by {actor.name} "
                    f"({count} of {proposal.quorum} approvals)",
                    proposal_id=proposal_id,
                    at=now,
                )
    # Denials are audited in a transaction of their own: raising inside the one above
    # would roll the audit row back with everything else.
    if denial is not None:
        error = denied(engine, actor, "approve", proposal_id, denial)
        if proposal.state == State.OPEN and now >= proposal.expires_at:
            engine.reconcile()  # record the expiry now rather than at the next tick
        raise error
    try:
        review(engine, proposal, actor.name)
    except BackendError as e:  # recorded again before the merge
        log.warning("%s: %s's review failed, will retry: %s", proposal_id, actor.name, e)
    if count >= proposal.quorum:
        engine._transition(
            proposal_id,
            State.APPROVED,
            actor=actor.name,
            text=f"{proposal_id} approved by "
            f"{', '.join(a.approver for a in proposal.current_approvals())} "
            f"({count} of {proposal.quorum}); merging",
        )
    engine.reconcile()
    return ApproveOutcome(
        proposal=engine.get(proposal_id), count=count, quorum=proposal.quorum, already=False
    )


def _approve_denial(
    engine: Engine, proposal: Proposal, actor: Actor, *, head: str | None, now: datetime
) -> str | None:
    if proposal.state != State.OPEN:
        return f"{proposal.id} is {proposal.state.value}; there is nothing to approve"
    reason = engine.policy.approve_denial(proposal, actor, now=now)
    if reason is not None:
        return reason
    if now >= proposal.expires_at:
        return f"{proposal.id} expired; propose the change again if it is still wanted"
    if not proposal.head_sha or proposal.pending_push:
        return f"{proposal.id} is still being written to its branch; try again in a moment"
    if head is not None and not proposal.head_sha.startswith(head):
        return (
            f"{proposal.id} changed since you looked (now {proposal.head_sha[:7]}); "
            f"read /diff {proposal.id} again"
        )
    if isinstance(engine.backend, Reviewer) and _login(engine, actor.name, actor) is None:
        return (
            f"{actor.name} has no GitHub login in users.yaml (github: …); opsgate needs it "
            "to record the approval as a review on the pull request"
        )
    return None


def reject(engine: Engine, proposal_id: str, *, actor: Actor, reason: str = "") -> Proposal:
    proposal = engine.get(proposal_id)
    denial = engine.policy.reject_denial(proposal, actor)
    if denial is not None:
        raise denied(engine, actor, "reject", proposal_id, denial)
    # An approved one may wait for its merge (GitHub refusing it); it can still be given up.
    if proposal.state not in (State.OPEN, State.APPROVED):
        raise denied(
            engine,
            actor,
            "reject",
            proposal_id,
            f"{proposal_id} is {proposal.state.value}; only open proposals can be rejected "
            "(and approved ones not merged yet)",
        )
    suffix = f": {reason}" if reason else ""
    engine._transition(
        proposal_id,
        State.REJECTED,
        actor=actor.name,
        text=f"{proposal_id} rejected by {actor.name}{suffix}",
        detail={"reason": reason},
        close_reason=f"rejected by {actor.name}{suffix}",
    )
    return engine.get(proposal_id)


def _login(engine: Engine, person: str, actor: Actor | None = None) -> str | None:
    if actor is not None and actor.github:
        return actor.github
    return engine.github_logins.get(person)


def review(engine: Engine, proposal: Proposal, approver: str) -> None:
    """Record a chat approval on the pull request; idempotent on the host's side too."""
    if not isinstance(engine.backend, Reviewer):
        return
    key = (proposal.id, approver, proposal.head_sha)
    if key in engine._reviewed:
        return
    login = _login(engine, approver)
    if login is None:
        log.warning("%s: %s has no GitHub login; no review recorded", proposal.id, approver)
        return
    engine.backoff.guard(proposal.id)
    engine.backend.review(
        proposal.branch,
        approver_login=login,
        head_sha=proposal.head_sha,
        body=f"{approver} approved {proposal.id} in chat (/approve {proposal.id}).",
    )
    engine._reviewed.add(key)
