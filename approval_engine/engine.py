"""The approval engine: change requests become proposals, approvals become merges and applies."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from approval_engine import audit
from approval_engine import store as db
from approval_engine.config import PolicyConfig, format_duration
from approval_engine.deploy import DEGRADED, HEALTHY, MISSING, Deployer
from approval_engine.editors import edit_value, read_value, unified_diff
from approval_engine.errors import (
    BackendError,
    PartialDeliveryError,
    PolicyDeniedError,
    ProposalNotFoundError,
    TargetError,
    TemporaryBackendError,
)
from approval_engine.model import (
    ACTIVE_STATES,
    Approval,
    ChangeRequest,
    EditedKnob,
    Proposal,
    Risk,
    Scalar,
    State,
    check_transition,
)
from approval_engine.notify import Announcement, Notifier
from approval_engine.policy import Policy
from approval_engine.prs.base import PRBackend
from approval_engine.rbac import Actor
from approval_engine.risk import assess
from approval_engine.store import Store
from approval_engine.targets import Targets

log = logging.getLogger(__name__)

TERMINAL = frozenset(
    {
        State.APPLIED,
        State.REJECTED,
        State.EXPIRED,
        State.SUPERSEDED,
        State.FAILED,
        State.ROLLED_BACK,
    }
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ProposeOutcome:
    proposal: Proposal | None
    action: str  # opened | updated | unchanged | noop
    message: str


@dataclass(frozen=True)
class ApproveOutcome:
    proposal: Proposal
    count: int
    quorum: int
    already: bool


class Engine:
    """Every state change is stored, audited and queued for announcement in one transaction."""

    def __init__(
        self,
        *,
        store: Store,
        backend: PRBackend,
        deployer: Deployer,
        targets: Targets,
        policy: PolicyConfig,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.backend = backend
        self.deployer = deployer
        self.targets = targets
        self.policy = Policy(policy)
        self.clock = clock

    # --- reads ----------------------------------------------------------------------------

    def get(self, proposal_id: str) -> Proposal:
        with self.store.transaction() as session:
            proposal = db.load_proposal(session, proposal_id)
            if proposal is None:
                known = [p.id for p in db.load_proposals(session)]
                raise ProposalNotFoundError(_not_found(proposal_id, known))
            return proposal

    def proposals(self, *, active_only: bool = True) -> list[Proposal]:
        with self.store.transaction() as session:
            return db.load_proposals(session, states=sorted(ACTIVE_STATES) if active_only else None)

    def current_values(self, service: str, env: str) -> dict[str, Scalar]:
        """The knobs as the base branch holds them now."""
        return self.targets.read_all(service, env, read_file=self.backend.read_file)

    # --- proposing ------------------------------------------------------------------------

    def propose(self, request: ChangeRequest, *, actor: Actor) -> ProposeOutcome:
        self._allow(actor, "propose", request.service, lambda: self.policy.check_propose(actor))
        self.targets.check_env(request.service, request.env)
        self._allow(actor, "propose", request.service, lambda: self.policy.check_change(request))
        base = self.backend.base_head()
        with self.store.transaction() as session:
            holders = {
                db.lock_holder(session, f"{request.service}/{request.env}/{c.knob}")
                for c in request.changes
            } - {None}
            if len(holders) > 1:
                busy = ", ".join(sorted(h for h in holders if h))
                existing = None
            else:
                busy = ""
                holder = next(iter(holders), None)
                existing = db.load_proposal(session, holder) if holder else None
        if busy:
            raise self._denied(
                actor,
                "propose",
                request.service,
                f"{busy} already change these knobs; reject or finish them first",
            )
        if existing is not None and existing.state != State.OPEN:
            raise self._denied(
                actor,
                "propose",
                existing.id,
                f"{existing.id} is already changing {request.service}/{request.env} "
                f"({existing.state.value}); try again when it is applied",
            )
        wanted = {c.knob: c.value for c in request.changes}
        if existing is not None:
            # A repeated wish folds into the open proposal: its other knobs keep their values.
            wanted = {k.knob: k.new for k in existing.knobs} | wanted
        knobs, files = self._render(request.service, request.env, wanted, ref=base)
        if not knobs:
            if existing is not None:
                self._transition(
                    existing.id,
                    State.SUPERSEDED,
                    actor=actor.name,
                    text=f"{existing.id} superseded: {request.service}/{request.env} already "
                    f"has {_knob_list(wanted)} on the base branch.",
                    close_reason="already true on the base branch",
                )
            return ProposeOutcome(
                proposal=None,
                action="noop",
                message=f"Nothing to change: {request.service}/{request.env} already has "
                f"{_knob_list(wanted)}.",
            )
        if existing is not None:
            return self._update(existing, request, actor=actor, knobs=knobs, files=files, base=base)
        return self._open(request, actor=actor, knobs=knobs, files=files, base=base)

    def _render(
        self, service: str, env: str, wanted: dict[str, Scalar], *, ref: str
    ) -> tuple[list[EditedKnob], dict[str, tuple[str, str]]]:
        """Edit the files for `wanted`; returns the knobs that move and path → (before, after)."""
        files: dict[str, tuple[str, str]] = {}
        knobs: list[EditedKnob] = []
        for knob, value in wanted.items():
            location = self.targets.locate(service, env, knob)
            if location.path is None or location.key is None:
                if location.constant != value:
                    raise TargetError(f"{service}/{env} {knob} is fixed at {location.constant}")
                continue
            if location.path not in files:
                text = self.backend.read_file(location.path, ref=ref)
                files[location.path] = (text, text)
            before, current = files[location.path]
            old = read_value(before, location.key, path=location.path)
            if old == value and type(old) is type(value):
                continue
            files[location.path] = (
                before,
                edit_value(current, location.key, value, path=location.path),
            )
            knobs.append(
                EditedKnob(knob=knob, path=location.path, key=location.key, old=old, new=value)
            )
        return knobs, {p: ba for p, ba in files.items() if ba[0] != ba[1]}

    def _open(
        self,
        request: ChangeRequest,
        *,
        actor: Actor,
        knobs: list[EditedKnob],
        files: dict[str, tuple[str, str]],
        base: str,
    ) -> ProposeOutcome:
        now = self.clock()
        risk = self._assess(request, knobs, files)
        with self.store.transaction() as session:
            number = db.next_number(session, "proposal")
            proposal_id = f"{request.kind}-{number}"
            proposal = Proposal(
                id=proposal_id,
                kind=request.kind,
                service=request.service,
                env=request.env,
                state=State.OPEN,
                title=_title(request, knobs),
                rationale=request.rationale,
                proposer=actor.name,
                contributors=[actor.name],
                branch=f"opsgate/{proposal_id}",
                base_sha=base,
                head_sha="",
                diff=_diff(files),
                files={p: after for p, (_, after) in files.items()},
                knobs=knobs,
                quorum=self.policy.quorum(request.env, risk),
                created_at=now,
                updated_at=now,
                expires_at=now + self.policy.config.proposal_ttl,
                state_since=now,
                confidence=request.confidence,
                risk=risk,
                evidence=list(request.evidence),
                app=self.targets.app(request.service, request.env),
                pending_push=True,
            )
            db.write_proposal(session, proposal)
            for key in proposal.lock_keys:
                db.take_lock(session, key, proposal_id)
            audit.record(
                session,
                at=now,
                actor=actor.name,
                action="proposed",
                subject=proposal_id,
                detail={
                    "change": request.describe(),
                    "rationale": request.rationale,
                    "risk": risk.level.value,
                    "risk_reasons": list(risk.reasons),
                },
            )
        proposal = self._push(proposal)
        return ProposeOutcome(
            proposal=proposal, action="opened", message=f"Opened {proposal.id}: {proposal.title}"
        )

    def _assess(
        self,
        request: ChangeRequest,
        knobs: list[EditedKnob],
        files: dict[str, tuple[str, str]],
    ) -> Risk:
        return assess(
            env=request.env,
            knobs=knobs,
            files={path: after for path, (_, after) in files.items()},
            stateful=self.targets.kind(request.service) == "database",
            confidence=request.confidence,
            policy=self.policy.config,
            now=self.clock(),
        )

    def _push(self, proposal: Proposal) -> Proposal:
        """Write the branch, then record its head and announce; safe to repeat after a crash."""
        pull = self.backend.open(
            proposal_id=proposal.id,
            branch=proposal.branch,
            base_sha=proposal.base_sha,
            files=proposal.files,
            title=proposal.title,
            body=_body(proposal),
        )
        with self.store.transaction() as session:
            current = db.load_proposal(session, proposal.id)
            assert current is not None
            if current.head_sha == pull.head_sha and not current.pending_push:
                return current
            voided = [a.approver for a in current.current_approvals()]
            if current.head_sha == pull.head_sha:
                voided = []
            current.head_sha = pull.head_sha
            current.pending_push = False
            current.updated_at = self.clock()
            db.write_proposal(session, current)
            first = not proposal.head_sha and not current.approvals
            kind = "opened" if first else "updated"
            text = f"{current.id} {'opened' if first else 'updated'}: {current.title}"
            if voided:
                text += f" (approvals by {', '.join(voided)} are void: the change is new)"
            db.enqueue(
                session,
                dedupe_key=f"{current.id}:{kind}:{pull.head_sha}",
                kind=kind,
                text=text,
                proposal_id=current.id,
                at=self.clock(),
            )
            return current

    def _update(
        self,
        existing: Proposal,
        request: ChangeRequest,
        *,
        actor: Actor,
        knobs: list[EditedKnob],
        files: dict[str, tuple[str, str]],
        base: str,
    ) -> ProposeOutcome:
        now = self.clock()
        new_files = {p: after for p, (_, after) in files.items()}
        if new_files == existing.files and not existing.pending_push:
            return ProposeOutcome(
                proposal=existing,
                action="unchanged",
                message=f"{existing.id} already proposes exactly this: {existing.title}",
            )
        risk = self._assess(request, knobs, files)
        with self.store.transaction() as session:
            current = db.load_proposal(session, existing.id)
            assert current is not None
            current.title = _title(request, knobs)
            current.rationale = request.rationale
            current.confidence = request.confidence
            current.risk = risk
            current.quorum = self.policy.quorum(request.env, risk)
            current.diff = _diff(files)
            current.files = {p: after for p, (_, after) in files.items()}
            current.knobs = knobs
            if actor.name not in current.contributors:
                current.contributors.append(actor.name)
            current.updated_at = now
            current.expires_at = now + self.policy.config.proposal_ttl
            current.pending_push = True
            db.release_locks(session, current.id)
            for key in current.lock_keys:
                db.take_lock(session, key, current.id)
            db.write_proposal(session, current)
            audit.record(
                session,
                at=now,
                actor=actor.name,
                action="updated",
                subject=current.id,
                detail={
                    "change": request.describe(),
                    "base": base,
                    "risk": risk.level.value,
                    "risk_reasons": list(risk.reasons),
                },
            )
        proposal = self._push(current)
        return ProposeOutcome(
            proposal=proposal,
            action="updated",
            message=f"Updated {proposal.id} instead of opening another: {proposal.title}",
        )

    # --- deciding -------------------------------------------------------------------------

    def approve(self, proposal_id: str, *, actor: Actor, head: str | None = None) -> ApproveOutcome:
        self.get(proposal_id)  # a clear error for an unknown id
        now = self.clock()
        with self.store.transaction() as session:
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
            denial = self._approve_denial(proposal, actor, head=head, now=now)
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
            error = self._denied(actor, "approve", proposal_id, denial)
            if proposal.state == State.OPEN and now >= proposal.expires_at:
                self.reconcile()  # record the expiry now rather than at the next tick
            raise error
        if count >= proposal.quorum:
            self._transition(
                proposal_id,
                State.APPROVED,
                actor=actor.name,
                text=f"{proposal_id} approved by "
                f"{', '.join(a.approver for a in proposal.current_approvals())} "
                f"({count} of {proposal.quorum}); merging",
            )
        self.reconcile()
        return ApproveOutcome(
            proposal=self.get(proposal_id), count=count, quorum=proposal.quorum, already=False
        )

    def _approve_denial(
        self, proposal: Proposal, actor: Actor, *, head: str | None, now: datetime
    ) -> str | None:
        if proposal.state != State.OPEN:
            return f"{proposal.id} is {proposal.state.value}; there is nothing to approve"
        reason = self.policy.approve_denial(proposal, actor, now=now)
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
        return None

    def reject(self, proposal_id: str, *, actor: Actor, reason: str = "") -> Proposal:
        proposal = self.get(proposal_id)
        denial = self.policy.reject_denial(proposal, actor)
        if denial is not None:
            raise self._denied(actor, "reject", proposal_id, denial)
        if proposal.state != State.OPEN:
            raise self._denied(
                actor,
                "reject",
                proposal_id,
                f"{proposal_id} is {proposal.state.value}; only open proposals can be rejected",
            )
        suffix = f": {reason}" if reason else ""
        self._transition(
            proposal_id,
            State.REJECTED,
            actor=actor.name,
            text=f"{proposal_id} rejected by {actor.name}{suffix}",
            detail={"reason": reason},
            close_reason=f"rejected by {actor.name}{suffix}",
        )
        return self.get(proposal_id)

    # --- driving --------------------------------------------------------------------------

    def reconcile(self, *, max_steps: int = 100) -> None:
        """Move every in-flight proposal as far as it can go now; safe to call any time."""
        with self.store.transaction() as session:
            unclosed = db.load_pending_closes(session)
        for proposal in unclosed:
            self._close(proposal, reason=proposal.state.value)
        for _ in range(max_steps):
            if not any(self._step(p) for p in self.proposals(active_only=True)):
                return

    def _step(self, proposal: Proposal) -> bool:
        try:
            return self._advance(proposal)
        except TemporaryBackendError as e:
            log.warning("%s: temporary failure, will retry: %s", proposal.id, e)
            return False
        except BackendError as e:
            self._transition(
                proposal.id,
                State.FAILED,
                actor="opsgate",
                text=f"{proposal.id} failed: {e}",
                message=str(e),
            )
            return True

    def _advance(self, proposal: Proposal) -> bool:
        now = self.clock()
        if proposal.state == State.OPEN:
            if not proposal.head_sha or proposal.pending_push:
                self._push(proposal)
                return True
            approvals = proposal.current_approvals()
            if len(approvals) >= proposal.quorum:
                # Quorum was stored but the process stopped before it moved on.
                self._transition(
                    proposal.id,
                    State.APPROVED,
                    actor=approvals[-1].approver,
                    text=f"{proposal.id} approved by "
                    f"{', '.join(a.approver for a in approvals)} "
                    f"({len(approvals)} of {proposal.quorum}); merging",
                )
                return True
            if now >= proposal.expires_at:
                self._transition(
                    proposal.id,
                    State.EXPIRED,
                    actor="opsgate",
                    text=f"{proposal.id} expired: no decision within "
                    f"{format_duration(self.policy.config.proposal_ttl)}",
                    close_reason="expired",
                )
                return True
            return False
        if proposal.state == State.APPROVED:
            merge_sha = self.backend.merge(
                proposal_id=proposal.id,
                branch=proposal.branch,
                head_sha=proposal.head_sha,
                title=proposal.title,
            )
            self._transition(
                proposal.id,
                State.MERGED,
                actor="opsgate",
                text=f"{proposal.id} merged as {merge_sha[:7]}",
                merge_sha=merge_sha,
            )
            return True
        if proposal.state == State.MERGED:
            assert proposal.merge_sha is not None and proposal.app is not None
            self.deployer.sync(proposal.app, revision=proposal.merge_sha)
            self._transition(
                proposal.id,
                State.SYNCING,
                actor="opsgate",
                text=f"{proposal.id} syncing {proposal.app} to {proposal.merge_sha[:7]}",
            )
            return True
        if proposal.state == State.SYNCING:
            return self._check_sync(proposal, now)
        return False

    def _check_sync(self, proposal: Proposal, now: datetime) -> bool:
        assert proposal.app is not None and proposal.merge_sha is not None
        status = self.deployer.status(proposal.app)
        # A later merge of the same app may be deployed first; it carries this change too.
        at_revision = status.revision is not None and (
            status.revision == proposal.merge_sha
            or self.backend.contains(status.revision, proposal.merge_sha)
        )
        if at_revision and status.health == HEALTHY:
            self._transition(
                proposal.id,
                State.APPLIED,
                actor="opsgate",
                text=f"{proposal.id} applied: {proposal.app} is synced to "
                f"{proposal.merge_sha[:7]} and healthy",
            )
            return True
        if at_revision and status.health in (DEGRADED, MISSING):
            self._transition(
                proposal.id,
                State.FAILED,
                actor="opsgate",
                text=f"{proposal.id} failed: {proposal.app} is {status.health} "
                f"after the sync{': ' + status.message if status.message else ''}",
                message=status.message or status.health,
            )
            return True
        if now - proposal.state_since > self.policy.config.sync_timeout:
            self._transition(
                proposal.id,
                State.FAILED,
                actor="opsgate",
                text=f"{proposal.id} failed: {proposal.app} did not reach "
                f"{proposal.merge_sha[:7]} healthy within "
                f"{format_duration(self.policy.config.sync_timeout)} "
                f"(sync {status.sync}, health {status.health})",
                message="sync timed out",
            )
            return True
        return False

    def _transition(
        self,
        proposal_id: str,
        new: State,
        *,
        actor: str,
        text: str,
        detail: dict[str, Any] | None = None,
        close_reason: str | None = None,
        merge_sha: str | None = None,
        message: str | None = None,
    ) -> Proposal:
        now = self.clock()
        with self.store.transaction() as session:
            proposal = db.load_proposal(session, proposal_id)
            if proposal is None:
                raise ProposalNotFoundError(f"no proposal {proposal_id}")
            if proposal.state == new:
                return proposal  # another worker got here first
            check_transition(proposal_id, proposal.state, new)
            old = proposal.state
            proposal = replace(proposal, state=new, state_since=now, updated_at=now)
            if merge_sha is not None:
                proposal.merge_sha = merge_sha
            if message is not None:
                proposal.message = message
            if close_reason is not None:
                proposal.pending_close = True
            db.write_proposal(session, proposal)
            if new in TERMINAL:
                db.release_locks(session, proposal_id)
            audit.record(
                session,
                at=now,
                actor=actor,
                action=new.value,
                subject=proposal_id,
                detail={"from": old.value, **(detail or {})}
                | ({"merge": merge_sha} if merge_sha else {}),
            )
            db.enqueue(
                session,
                dedupe_key=f"{proposal_id}:{new.value}",
                kind=new.value,
                text=text,
                proposal_id=proposal_id,
                at=now,
            )
        if close_reason is not None:
            self._close(proposal, reason=close_reason)
        return proposal

    def _close(self, proposal: Proposal, *, reason: str) -> None:
        """Close the branch, then clear the mark; a crash in between closes it on restart."""
        try:
            self.backend.close(proposal_id=proposal.id, branch=proposal.branch, reason=reason)
        except BackendError as e:
            log.warning("%s: closing %s failed, will retry: %s", proposal.id, proposal.branch, e)
            return
        with self.store.transaction() as session:
            row = session.get(db.ProposalRow, proposal.id)
            if row is not None:
                row.pending_close = False

    # --- announcing -----------------------------------------------------------------------

    def deliver(self, notifier: Notifier) -> int:
        """Send queued announcements in order; a failing one stays queued for the next call."""
        sent = 0
        with self.store.transaction() as session:
            pending = [(r.id, r.kind, r.text, r.proposal_id) for r in db.pending_outbox(session)]
        for row_id, kind, text, proposal_id in pending:
            try:
                notifier.announce(
                    Announcement(kind=kind, text=text, proposal_id=proposal_id, id=row_id)
                )
            except PartialDeliveryError as e:
                log.warning("announcement %s only partly sent; will retry: %s", row_id, e)
                continue  # the notifier keeps each destination's order itself
            except Exception:
                log.exception("announcement %s could not be sent; will retry", row_id)
                return sent  # the next ones wait, so that they arrive in order
            with self.store.transaction() as session:
                row = session.get(db.OutboxRow, row_id)
                if row is not None:
                    row.delivered_at = self.clock()
            sent += 1
        return sent

    # --- denials --------------------------------------------------------------------------

    def _allow(self, actor: Actor, action: str, subject: str, check: Callable[[], None]) -> None:
        try:
            check()
        except PolicyDeniedError as e:
            raise self._denied(actor, action, subject, str(e)) from e

    def _denied(self, actor: Actor, action: str, subject: str, reason: str) -> PolicyDeniedError:
        with self.store.transaction() as session:
            return self._deny(session, actor, action, subject, reason)

    def _deny(
        self, session: Session, actor: Actor, action: str, subject: str, reason: str
    ) -> PolicyDeniedError:
        audit.record(
            session,
            at=self.clock(),
            actor=actor.name,
            action="denied",
            subject=subject,
            detail={"attempted": action, "reason": reason},
        )
        return PolicyDeniedError(reason)

    def audit_denial(self, *, actor: str, action: str, subject: str, reason: str) -> None:
        """Record a refusal decided outside the engine (RBAC at the chat edge)."""
        with self.store.transaction() as session:
            audit.record(
                session,
                at=self.clock(),
                actor=actor,
                action="denied",
                subject=subject,
                detail={"attempted": action, "reason": reason},
            )


def _title(request: ChangeRequest, knobs: list[EditedKnob]) -> str:
    changes = ", ".join(f"{k.key} {k.old} → {k.new}" for k in knobs)
    return f"{request.kind}: {request.service}/{request.env} {changes}"


def _body(proposal: Proposal) -> str:
    """The PR's description: why, then the risk and its reasons."""
    if proposal.risk is None:
        return proposal.rationale
    reasons = "".join(f"\n- {reason}" for reason in proposal.risk.reasons)
    return f"{proposal.rationale}\n\nRisk: {proposal.risk.level.value}{reasons}"


def _diff(files: dict[str, tuple[str, str]]) -> str:
    return "".join(unified_diff(path, before, after) for path, (before, after) in files.items())


def _knob_list(wanted: dict[str, Scalar]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in wanted.items())


def _not_found(proposal_id: str, known: list[str]) -> str:
    close = difflib.get_close_matches(proposal_id, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"no proposal {proposal_id!r}{hint} (/proposals lists the open ones)"
