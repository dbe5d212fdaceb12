"""Re-rendering on a moved base: a proposal whose files changed on the base branch since it
was rendered is rendered again on the new base, and its branch gets the result.

Looked at with the pull request poll (`poll_pulls_every`), and always right before a merge.
The change approvers approved is the lines a proposal removes and adds, with the files'
names; line numbers and context lines are not part of it. When the re-render leaves those as
they were, only the base moved under the proposal (a neighbouring line changed, say): the
approvals carry over to the new head, audited, and chat hears nothing. When they differ (the
knob's value on the base changed), the approvals are void, an approved proposal is open
again, and its thread is told what changed. A wish the base already fulfils supersedes the
proposal; one that cannot be rendered any more (its key is gone) fails, saying why.

The new head merges the base into the branch (`PRBackend.open`), so it merges cleanly without
a force push. It is written with the proposal marked pending_push and a `rebases` row saying
how to finish, so a restart in between finishes the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from approval_engine import audit
from approval_engine import store as db
from approval_engine.errors import ApprovalError, BackendError
from approval_engine.model import ChangeRequest, EditedKnob, KnobChange, Proposal, State
from approval_engine.pr_text import code, pr_body, pr_title

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["Rebaser", "changes", "forget"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    from_base: str
    from_head: str
    same: bool
    what: str


class Rebaser:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._looked: dict[str, datetime] = {}
        # proposal → (its base, a later base head) between which its files read the same
        self._unmoved: dict[str, tuple[str, str]] = {}

    def check(self, proposal: Proposal, *, force: bool = False) -> bool:
        """Re-render `proposal` if the base changed its files (at most every poll_pulls_every
        unless forced); True when the proposal changed."""
        engine = self.engine
        if (
            proposal.state not in (State.OPEN, State.APPROVED)
            or proposal.pending_push
            or not proposal.head_sha
        ):
            return False
        now = engine.clock()
        last = self._looked.get(proposal.id)
        if not force and last is not None and now - last < engine.poll_pulls_every:
            return False
        base = engine.backend.base_head()
        self._looked[proposal.id] = now
        if base == proposal.base_sha or self._unmoved.get(proposal.id) == (proposal.base_sha, base):
            return False
        read = engine.backend.read_file
        if all(read(p, ref=proposal.base_sha) == read(p, ref=base) for p in proposal.files):
            self._unmoved[proposal.id] = (proposal.base_sha, base)
            return False
        # Merged, closed or pushed to on the host: that comes first (a merge moves the base).
        if engine._follow_pull(proposal, force=True):
            return True
        if engine.backend.contains(base, proposal.head_sha):
            return False  # merged by a process that stopped before storing it: merge finds it
        return self._rerender(proposal, base)

    def resume(self, proposal: Proposal) -> bool:
        """Finish a re-render whose branch a stopped process did not write; False if none."""
        with self.engine.store.transaction() as session:
            pending = _pending(session, proposal.id)
        return pending is not None and self._finish(proposal, pending)

    def _rerender(self, proposal: Proposal, base: str) -> bool:
        from approval_engine.engine import _diff, _knob_list, _title

        engine = self.engine
        wanted = {k.knob: k.new for k in proposal.knobs}
        try:
            knobs, files = engine._render(proposal.service, proposal.env, wanted, ref=base)
        except BackendError:
            raise
        except ApprovalError as e:
            engine._transition(
                proposal.id,
                State.FAILED,
                actor="opsgate",
                text=f"{proposal.id} failed: it cannot be rendered again on the new base: {e}",
                message=str(e),
                close_reason="the base branch changed so that it cannot be rendered again",
            )
            return True
        if not knobs:
            engine._transition(
                proposal.id,
                State.SUPERSEDED,
                actor="opsgate",
                text=f"{proposal.id} superseded: {proposal.service}/{proposal.env} already has "
                f"{_knob_list(wanted)} on the base branch.",
                close_reason="already true on the base branch",
            )
            return True
        diff = _diff(files)
        same = changes(diff) == changes(proposal.diff)
        pending = _Pending(
            from_base=proposal.base_sha,
            from_head=proposal.head_sha,
            same=same,
            what="" if same else _what_changed(proposal.knobs, knobs),
        )
        wish = _wish(proposal, knobs)
        risk = None if same else engine._assess(wish, knobs, files)
        now = engine.clock()
        with engine.store.transaction() as session:
            current = db.load_proposal(session, proposal.id)
            if (
                current is None
                or current.state != proposal.state
                or current.head_sha != proposal.head_sha
                or current.pending_push
            ):
                return False  # it changed meanwhile; the next look starts from there
            current.base_sha = base
            current.files = {path: after for path, (_, after) in files.items()}
            current.diff = diff
            current.knobs = knobs
            current.title = _title(wish, knobs)
            if risk is not None:
                current.risk = risk
                current.quorum = engine.policy.quorum(
                    current.env, risk, revert=current.reverts is not None
                )
            current.message = ""  # a merge refusal was about the earlier head
            current.pending_push = True
            current.updated_at = now
            db.write_proposal(session, current)
            db.release_locks(session, current.id)  # a knob the base now has is free
            for key in current.lock_keys:
                db.take_lock(session, key, current.id)
            session.add(
                db.RebaseRow(
                    proposal_id=current.id,
                    from_base=pending.from_base,
                    from_head=pending.from_head,
                    same=pending.same,
                    what=pending.what,
                    at=now,
                )
            )
        return self._finish(current, pending)

    def _finish(self, proposal: Proposal, pending: _Pending) -> bool:
        """Write the branch, then move or void the approvals and say so; safe to repeat."""
        engine = self.engine
        pull = engine.backend.open(
            proposal_id=proposal.id,
            branch=proposal.branch,
            base_sha=proposal.base_sha,
            files=proposal.files,
            title=pr_title(proposal),
            body=pr_body(proposal),
        )
        before = replace(proposal, head_sha=pending.from_head)
        if pending.same:
            note = "the change itself is the same, so its approvals stand."
            before = replace(before, approvals=[])  # nothing void to mention
        else:
            note = f"{pending.what}."
        engine._decorate(
            before,
            pull,
            first=False,
            note=f"opsgate rendered this pull request again on the new base "
            f"({code(proposal.base_sha[:7])}): {note}",
        )
        now = engine.clock()
        with engine.store.transaction() as session:
            current = db.load_proposal(session, proposal.id)
            row = session.get(db.RebaseRow, proposal.id)
            if current is None or row is None:
                return False
            earlier = [a for a in current.approvals if a.head_sha == pending.from_head]
            current.head_sha = pull.head_sha
            current.pending_push = False
            current.updated_at = now
            db.write_proposal(session, current)
            if pending.same:
                for approval in earlier:
                    db.add_approval(session, current.id, replace(approval, head_sha=pull.head_sha))
            who = [a.approver for a in earlier]
            audit.record(
                session,
                at=now,
                actor="opsgate",
                action="rebased",
                subject=current.id,
                detail={
                    "base": {"from": pending.from_base, "to": current.base_sha},
                    "head": {"from": pending.from_head, "to": pull.head_sha},
                    "same_change": pending.same,
                    ("kept" if pending.same else "voided"): who,
                },
            )
            if not pending.same:
                text = f"{current.id} was re-rendered on the new base: {pending.what}"
                if who:
                    text += f"; approvals by {', '.join(who)} are void"
                db.enqueue(
                    session,
                    dedupe_key=f"{current.id}:rebased:{pull.head_sha}",
                    kind="updated",
                    text=f"{text}. Read /diff {current.id} before approving.",
                    proposal_id=current.id,
                    at=now,
                )
            session.delete(row)
        if not pending.same and current.state == State.APPROVED:
            engine._transition(
                current.id,
                State.OPEN,
                actor="opsgate",
                text=f"{current.id} is open again: re-rendering it on the new base voided its "
                "approvals",
                detail={"head": pull.head_sha},
            )
        return True


def forget(session: Session, proposal_id: str) -> None:
    """Drop an unfinished re-render: the proposal was rendered again some other way."""
    row = session.get(db.RebaseRow, proposal_id)
    if row is not None:
        session.delete(row)


def changes(diff: str) -> list[str]:
    """What a diff changes: its file headers and the lines it removes and adds, in order."""
    return [line for line in diff.splitlines() if line.startswith(("-", "+"))]


def _pending(session: Session, proposal_id: str) -> _Pending | None:
    row = session.get(db.RebaseRow, proposal_id)
    if row is None:
        return None
    return _Pending(from_base=row.from_base, from_head=row.from_head, same=row.same, what=row.what)


def _wish(proposal: Proposal, knobs: list[EditedKnob]) -> ChangeRequest:
    """The proposal as the wish it renders, for the engine's title and risk assessment."""
    return ChangeRequest(
        kind=proposal.kind,
        service=proposal.service,
        env=proposal.env,
        changes=tuple(KnobChange(k.knob, k.new) for k in knobs),
        rationale=proposal.rationale,
        requested_by=proposal.proposer,
        confidence=proposal.confidence,
        evidence=tuple(proposal.evidence),
        reverts=proposal.reverts,
    )


def _what_changed(before: list[EditedKnob], after: list[EditedKnob]) -> str:
    """In words: which knobs the base moved under the proposal."""
    was = {k.knob: k for k in before}
    parts = [
        f"{k.key} is {k.old} on the base now, not {was[k.knob].old} (the proposal still "
        f"sets {k.new})"
        for k in after
        if k.knob in was and was[k.knob].old != k.old
    ]
    kept = {k.knob for k in after}
    parts += [f"{k.key} already is {k.new} on the base" for k in before if k.knob not in kept]
    return "; ".join(parts) or "the lines it edits changed on the base"
