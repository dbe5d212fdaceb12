"""Keeping in step with the PR host: merges, closes and pushes made outside opsgate."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from approval_engine import audit
from approval_engine import store as db
from approval_engine._proposing import _diff
from approval_engine.editors import read_value
from approval_engine.errors import ApprovalError, TemporaryBackendError
from approval_engine.model import EditedKnob, Proposal, State
from approval_engine.prs.base import PullState, PullTracker

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["follow", "follow_pull"]

log = logging.getLogger("approval_engine.engine")  # the engine logs under one name


def follow(engine: Engine, branch: str) -> Proposal | None:
    found = next((p for p in engine.proposals(active_only=True) if p.branch == branch), None)
    if found is None:
        return None
    follow_pull(engine, found, force=True)
    return engine.get(found.id)


def follow_pull(engine: Engine, proposal: Proposal, *, force: bool = False) -> bool:
    """Read the proposal's pull request (at most every poll_pulls_every unless forced) and
    apply what happened to it outside opsgate; True when the proposal changed."""
    if (
        not isinstance(engine.backend, PullTracker)
        or proposal.state not in (State.OPEN, State.APPROVED)
        or proposal.pending_push  # opsgate itself is writing the branch
        or not proposal.head_sha
    ):
        return False
    now = engine.clock()
    last = engine._polled.get(proposal.id)
    if not force and last is not None and now - last < engine.poll_pulls_every:
        return False
    if engine.backoff.holds(proposal.id):
        return False
    pull = engine.backend.pull_state(proposal.branch)
    engine._polled[proposal.id] = now
    if pull is None:
        return False
    if pull.merged and pull.merge_commit_sha:
        return _merged_outside(engine, proposal, pull, pull.merge_commit_sha)
    if pull.state == "closed":
        engine._transition(
            proposal.id,
            State.REJECTED,
            actor="github",
            text=f"{proposal.id} rejected: its pull request #{pull.number} was closed on "
            "GitHub without merging",
            detail={"pull": pull.number, "outside": True},
        )
        return True
    if pull.head_sha != proposal.head_sha:
        return _pushed_outside(engine, proposal, pull)
    return False


def _merged_outside(engine: Engine, proposal: Proposal, pull: PullState, merge_sha: str) -> bool:
    if proposal.state == State.OPEN:
        have = len(proposal.current_approvals())
        engine._transition(
            proposal.id,
            State.APPROVED,
            actor="github",
            text=f"{proposal.id} was merged on GitHub outside opsgate, with {have} of "
            f"{proposal.quorum} chat approvals; opsgate follows its sync",
            detail={"pull": pull.number, "outside": True},
        )
    engine._transition(
        proposal.id,
        State.MERGED,
        actor="github" if proposal.state == State.OPEN else "opsgate",
        text=f"{proposal.id} merged as {merge_sha[:7]}",
        merge_sha=merge_sha,
        message="",
    )
    return True


def _pushed_outside(engine: Engine, proposal: Proposal, pull: PullState) -> bool:
    """New commits by someone else: the proposal now is what the branch holds, and the
    approvals given for the earlier head are void."""
    head = pull.head_sha
    reread = _reread(engine, proposal, head)
    now = engine.clock()
    with engine.store.transaction() as session:
        current = db.load_proposal(session, proposal.id)
        if (
            current is None
            or current.state not in (State.OPEN, State.APPROVED)
            or current.pending_push
            or current.head_sha == head
        ):
            return False
        voided = [a.approver for a in current.current_approvals()]
        old = current.head_sha
        current.head_sha = head
        current.message = ""  # a merge refusal was about the earlier commit
        if reread is not None:
            current.files, current.diff, current.knobs = reread
        current.updated_at = now
        db.write_proposal(session, current)
        audit.record(
            session,
            at=now,
            actor="github",
            action="pushed",
            subject=current.id,
            detail={"from": old, "to": head, "voided": voided, "pull": pull.number},
        )
        text = f"{current.id} got new commits on GitHub from outside opsgate ({head[:7]})"
        if voided:
            text += f"; approvals by {', '.join(voided)} are void"
        db.enqueue(
            session,
            dedupe_key=f"{current.id}:pushed:{head}",
            kind="updated",
            text=f"{text}. Read /diff {current.id} before approving.",
            proposal_id=current.id,
            at=now,
        )
    if current.state == State.APPROVED:
        engine._transition(
            proposal.id,
            State.OPEN,
            actor="github",
            text=f"{proposal.id} is open again: new commits voided its approvals",
            detail={"head": head},
        )
    return True


def _reread(
    engine: Engine, proposal: Proposal, head: str
) -> tuple[dict[str, str], str, list[EditedKnob]] | None:
    """The proposal's files, diff and knobs as the branch holds them at `head`."""
    try:
        files = {path: engine.backend.read_file(path, ref=head) for path in proposal.files}
        before = {path: engine.backend.read_file(path, ref=proposal.base_sha) for path in files}
        knobs = [
            replace(k, new=read_value(files[k.path], k.key, path=k.path))
            for k in proposal.knobs
            if k.path in files
        ]
    except TemporaryBackendError:
        raise
    except ApprovalError as e:
        log.warning("%s: cannot read the branch at %s: %s", proposal.id, head[:7], e)
        return None
    diff = _diff({path: (before[path], files[path]) for path in files})
    return files, diff, [k for k in knobs if k.new != k.old]
