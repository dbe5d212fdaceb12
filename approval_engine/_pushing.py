"""Writing a proposal to the PR host: its branch, its labels and the comment on an update."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from approval_engine import store as db
from approval_engine.errors import BackendError, TemporaryBackendError
from approval_engine.model import EditedKnob, Proposal, RiskLevel, State
from approval_engine.pr_text import code, pr_body, pr_title
from approval_engine.prs.base import Commenter, Labeler, PullRequest
from approval_engine.rbac import Actor

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["decorate", "first_push", "push"]

log = logging.getLogger("approval_engine.engine")  # the engine logs under one name


def first_push(
    engine: Engine, proposal: Proposal, *, actor: Actor, note: str | None = None
) -> tuple[Proposal, str]:
    """Push while the proposer waits: a host that is down only delays the branch (the
    ticks retry it); a refusal fails the proposal and says why."""
    try:
        return push(engine, proposal, note=note), ""
    except TemporaryBackendError as e:
        log.warning("%s: temporary failure writing the branch, will retry: %s", proposal.id, e)
        engine.backoff.note(e, proposal.id)
        return proposal, (
            f" (the branch is not written yet: {e}; opsgate retries it, and the proposal "
            "can be approved once it is)"
        )
    except BackendError as e:
        engine._transition(
            proposal.id,
            State.FAILED,
            actor=actor.name,
            text=f"{proposal.id} failed: {e}",
            message=str(e),
            close_reason="the branch could not be written",
        )
        raise


def push(engine: Engine, proposal: Proposal, *, note: str | None = None) -> Proposal:
    """Write the branch, then record its head and announce; safe to repeat after a crash.

    Labels and the comment on an update are written before the head is stored, so a
    crash in between repeats them, and both are idempotent."""
    pull = engine.backend.open(
        proposal_id=proposal.id,
        branch=proposal.branch,
        base_sha=proposal.base_sha,
        files=proposal.files,
        title=pr_title(proposal),
        body=pr_body(proposal),
    )
    decorate(engine, proposal, pull, first=not proposal.head_sha, note=note)
    with engine.store.transaction() as session:
        current = db.load_proposal(session, proposal.id)
        assert current is not None
        if current.head_sha == pull.head_sha and not current.pending_push:
            return current
        voided = [a.approver for a in current.current_approvals()]
        if current.head_sha == pull.head_sha:
            voided = []
        current.head_sha = pull.head_sha
        current.pending_push = False
        current.updated_at = engine.clock()
        db.write_proposal(session, current)
        first = not proposal.head_sha and not current.approvals
        kind = "opened" if first else "updated"
        text = f"{current.id} {'opened' if first else 'updated'}: {current.title}"
        if voided:
            text += f" (approvals by {', '.join(voided)} are void: the change is new)"
        if pull.url.startswith(("http://", "https://")):
            text += f" {pull.url}"
        db.enqueue(
            session,
            dedupe_key=f"{current.id}:{kind}:{pull.head_sha}",
            kind=kind,
            text=text,
            proposal_id=current.id,
            at=engine.clock(),
        )
        return current


def decorate(
    engine: Engine, proposal: Proposal, pull: PullRequest, *, first: bool, note: str | None
) -> None:
    """Labels for the pull request and, on an update, a comment saying what changed."""
    if isinstance(engine.backend, Labeler):
        wanted = _labels(proposal)
        engine.backend.label(proposal.branch, wanted)
        if not first:  # the risk may have changed with the update
            stale = [f"risk:{level.value}" for level in RiskLevel]
            engine.backend.unlabel(proposal.branch, [s for s in stale if s not in wanted])
    if first or pull.head_sha == proposal.head_sha or not isinstance(engine.backend, Commenter):
        return
    voided = [a.approver for a in proposal.current_approvals()]
    text = note or f"opsgate updated this pull request: {_knob_moves(proposal.knobs)}."
    if voided:
        text += f"\n\nApprovals by {', '.join(voided)} are void: the change is new."
    engine.backend.comment(proposal.branch, text, once=f"{proposal.id} update {pull.head_sha}")


def _labels(proposal: Proposal) -> list[str]:
    """`opsgate`, who proposed it (the agent's name, or `manual`), `rollback` for a revert,
    and the risk level."""
    who = proposal.proposer
    agent = who.removeprefix("agent:").lower() if who.startswith("agent:") else "manual"
    labels = ["opsgate", agent]
    if proposal.reverts is not None:
        labels.append("rollback")
    if proposal.risk is not None:
        labels.append(f"risk:{proposal.risk.level.value}")
    return labels


def _knob_moves(knobs: list[EditedKnob]) -> str:
    return ", ".join(f"{code(k.key)} {code(k.old)} → {code(k.new)}" for k in knobs)
