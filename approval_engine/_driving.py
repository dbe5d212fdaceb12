"""Driving each proposal as far as it can go: push, merge, sync, and judge the deploy."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from approval_engine import audit
from approval_engine import store as db
from approval_engine._deciding import review
from approval_engine._following import follow_pull
from approval_engine._pushing import push
from approval_engine.config import format_duration
from approval_engine.deploy import DEGRADED, HEALTHY, MISSING
from approval_engine.errors import BackendError, NotMergeableError, TemporaryBackendError
from approval_engine.model import Proposal, State
from approval_engine.prs.base import MergeCheck

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["reconcile"]

log = logging.getLogger("approval_engine.engine")  # the engine logs under one name


def reconcile(engine: Engine, *, max_steps: int = 100) -> None:
    with engine.store.transaction() as session:
        unclosed = db.load_pending_closes(session)
    for proposal in unclosed:
        engine._close(proposal, reason=proposal.state.value)
    for _ in range(max_steps):
        if not any(_step(engine, p) for p in engine.proposals(active_only=True)):
            break
    engine.rollbacks.settle()  # an applied revert rolls its original back
    engine.verifier.tick()  # applied changes: watch their SLOs, revert the degraded ones


def _step(engine: Engine, proposal: Proposal) -> bool:
    if proposal.state in (State.OPEN, State.APPROVED) and engine.backoff.holds(proposal.id):
        return False  # rate-limited: the host is not asked before the time it gave
    try:
        moved = _advance(engine, proposal)
    except TemporaryBackendError as e:
        log.warning("%s: temporary failure, will retry: %s", proposal.id, e)
        engine.backoff.note(e, proposal.id)
        return False
    except BackendError as e:
        engine._transition(
            proposal.id,
            State.FAILED,
            actor="opsgate",
            text=f"{proposal.id} failed: {e}",
            message=str(e),
        )
        return True
    engine.backoff.passed(proposal.id)
    return moved


def _advance(engine: Engine, proposal: Proposal) -> bool:
    now = engine.clock()
    if proposal.pending_push and engine.rebaser.resume(proposal):
        return True  # a re-render on the new base the process did not finish
    if proposal.state == State.OPEN:
        if not proposal.head_sha or proposal.pending_push:
            push(engine, proposal)
            return True
        try:  # outside changes to its pull request, then to its base branch
            if follow_pull(engine, proposal) or engine.rebaser.check(proposal):
                return True
        except BackendError as e:  # the next poll, or a webhook, tries again
            log.warning("%s: could not read its pull request or base: %s", proposal.id, e)
            engine.backoff.note(e, proposal.id)
        approvals = proposal.current_approvals()
        if len(approvals) >= proposal.quorum:
            # Quorum was stored but the process stopped before it moved on.
            engine._transition(
                proposal.id,
                State.APPROVED,
                actor=approvals[-1].approver,
                text=f"{proposal.id} approved by "
                f"{', '.join(a.approver for a in approvals)} "
                f"({len(approvals)} of {proposal.quorum}); merging",
            )
            return True
        if now >= proposal.expires_at:
            engine._transition(
                proposal.id,
                State.EXPIRED,
                actor="opsgate",
                text=f"{proposal.id} expired: no decision within "
                f"{format_duration(engine.policy.config.proposal_ttl)}",
                close_reason="expired",
            )
            return True
        return False
    if proposal.state == State.APPROVED:
        return _merge(engine, proposal)
    if proposal.state == State.MERGED:
        assert proposal.merge_sha is not None and proposal.app is not None
        engine.deployer.sync(proposal.app, revision=proposal.merge_sha)
        engine._transition(
            proposal.id,
            State.SYNCING,
            actor="opsgate",
            text=f"{proposal.id} syncing {proposal.app} to {proposal.merge_sha[:7]}",
        )
        return True
    if proposal.state == State.SYNCING:
        return _check_sync(engine, proposal, now)
    return False


def _merge(engine: Engine, proposal: Proposal) -> bool:
    """Merge an approved proposal once the host agrees; until then it stays approved."""
    held = engine._held.get(proposal.id)
    if held is not None and engine.clock() - held < engine.poll_pulls_every:
        return False  # refused a moment ago: ask again at the poll's pace, not every tick
    if follow_pull(engine, proposal, force=True) or engine.rebaser.check(proposal, force=True):
        return True
    if len(proposal.current_approvals()) < proposal.quorum:
        # New commits voided approvals, and the process stopped before reopening it.
        engine._transition(
            proposal.id,
            State.OPEN,
            actor="opsgate",
            text=f"{proposal.id} is open again: its approvals were for an earlier commit",
        )
        return True
    for approval in proposal.current_approvals():
        try:
            review(engine, proposal, approval.approver)
        except TemporaryBackendError:
            raise
        except BackendError as e:  # a record of the approval; the merge does not need it
            log.warning("%s: %s's review refused: %s", proposal.id, approval.approver, e)
    if isinstance(engine.backend, MergeCheck):
        verdict = engine.backend.mergeability(proposal.branch)
        if verdict.mergeable is None:
            return False  # the host is still working it out; the next tick looks again
        if not verdict.mergeable:
            return _hold(engine, proposal, verdict.reason)
    try:
        merge_sha = engine.backend.merge(
            proposal_id=proposal.id,
            branch=proposal.branch,
            head_sha=proposal.head_sha,
            title=proposal.title,
        )
    except NotMergeableError as e:
        return _hold(engine, proposal, str(e))
    engine._transition(
        proposal.id,
        State.MERGED,
        actor="opsgate",
        text=f"{proposal.id} merged as {merge_sha[:7]}",
        merge_sha=merge_sha,
        message="",
    )
    return True


def _hold(engine: Engine, proposal: Proposal, reason: str) -> bool:
    """Say once per reason why an approved proposal is not merged yet; it stays approved."""
    now = engine.clock()
    digest = hashlib.sha256(reason.encode()).hexdigest()[:16]
    with engine.store.transaction() as session:
        queued = db.enqueue(
            session,
            dedupe_key=f"{proposal.id}:blocked:{proposal.head_sha}:{digest}",
            kind="blocked",
            text=f"{proposal.id} is approved but cannot be merged yet: {reason}. "
            "opsgate tries again on its own; /reject it to give up.",
            proposal_id=proposal.id,
            at=now,
        )
        if queued:
            current = db.load_proposal(session, proposal.id)
            if current is not None:
                current.message = f"not merged yet: {reason}"
                db.write_proposal(session, current)
            audit.record(
                session,
                at=now,
                actor="opsgate",
                action="merge_blocked",
                subject=proposal.id,
                detail={"head": proposal.head_sha, "reason": reason},
            )
    engine._held[proposal.id] = now
    return False


def _check_sync(engine: Engine, proposal: Proposal, now: datetime) -> bool:
    assert proposal.app is not None and proposal.merge_sha is not None
    status = engine.deployer.status(proposal.app)
    # A later merge of the same app may be deployed first; it carries this change too.
    at_revision = status.revision is not None and (
        status.revision == proposal.merge_sha
        or engine.backend.contains(status.revision, proposal.merge_sha)
    )
    if at_revision and status.health == HEALTHY:
        engine._transition(
            proposal.id,
            State.APPLIED,
            actor="opsgate",
            text=f"{proposal.id} applied: {proposal.app} is synced to "
            f"{proposal.merge_sha[:7]} and healthy",
        )
        return True
    if at_revision and status.health in (DEGRADED, MISSING):
        engine._transition(
            proposal.id,
            State.FAILED,
            actor="opsgate",
            text=f"{proposal.id} failed: {proposal.app} is {status.health} "
            f"after the sync{': ' + status.message if status.message else ''}",
            message=status.message or status.health,
        )
        return True
    if now - proposal.state_since > engine.policy.config.sync_timeout:
        engine._transition(
            proposal.id,
            State.FAILED,
            actor="opsgate",
            text=f"{proposal.id} failed: {proposal.app} did not reach "
            f"{proposal.merge_sha[:7]} healthy within "
            f"{format_duration(engine.policy.config.sync_timeout)} "
            f"(sync {status.sync}, health {status.health})",
            message="sync timed out",
        )
        return True
    return False
