"""The approval engine: change requests become proposals, approvals become merges and applies."""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from approval_engine import audit, rebase
from approval_engine import store as db
from approval_engine.backoff import Backoff
from approval_engine.config import PolicyConfig, format_duration
from approval_engine.deploy import DEGRADED, HEALTHY, MISSING, Deployer
from approval_engine.editors import edit_value, read_value, unified_diff
from approval_engine.errors import (
    ApprovalError,
    BackendError,
    NotMergeableError,
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
    RiskLevel,
    Scalar,
    State,
    check_transition,
)
from approval_engine.noise import NoiseControl
from approval_engine.notify import Announcement, Notifier
from approval_engine.policy import Policy
from approval_engine.pr_text import code, plain, pr_body, pr_title
from approval_engine.prs.base import (
    Commenter,
    Labeler,
    MergeCheck,
    PRBackend,
    PullRequest,
    PullState,
    PullTracker,
    Reviewer,
)
from approval_engine.rbac import Actor
from approval_engine.risk import assess
from approval_engine.rollback import Rollbacks
from approval_engine.store import Store
from approval_engine.targets import Targets
from approval_engine.verify import Verifier

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
        github_logins: Mapping[str, str] | None = None,
        poll_pulls_every: timedelta = timedelta(seconds=60),
    ) -> None:
        """`github_logins` maps people to their GitHub logins (config/users.yaml) for the
        reviews that record chat approvals; `poll_pulls_every` spaces the look at each open
        pull request that catches what a missed webhook would have said."""
        self.store = store
        self.backend = backend
        self.deployer = deployer
        self.targets = targets
        self.policy = Policy(policy)
        self.clock = clock
        self.github_logins = dict(github_logins or {})
        self.poll_pulls_every = poll_pulls_every
        # Process-local memory only saves calls; the store and the host stay the truth.
        self._polled: dict[str, datetime] = {}
        self._held: dict[str, datetime] = {}  # approved proposals the host would not merge
        self._reviewed: set[tuple[str, str, str]] = set()
        # After the apply and around each wish: approval_engine.verify, .rollback, .noise.
        self.noise = NoiseControl(store=store, policy=policy, clock=clock)
        self.rollbacks = Rollbacks(self)
        self.verifier = Verifier(self)  # watches once bots calls `verifier.watch_with`
        # Keeping up with the host: approval_engine.rebase and .backoff.
        self.rebaser = rebase.Rebaser(self)
        self.backoff = Backoff(store=store, clock=clock)

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
        self.backoff.guard()
        return self.targets.read_all(service, env, read_file=self.backend.read_file)

    # --- proposing ------------------------------------------------------------------------

    def propose(self, request: ChangeRequest, *, actor: Actor) -> ProposeOutcome:
        self._allow(actor, "propose", request.service, lambda: self.policy.check_propose(actor))
        self.targets.check_env(request.service, request.env)
        self._allow(actor, "propose", request.service, lambda: self.policy.check_change(request))
        self.backoff.guard()
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
        self._allow(
            actor, "propose", request.service, lambda: self.noise.check_lock(request, existing)
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
        self._allow(actor, "propose", request.service, lambda: self.noise.check_budget(request))
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
                quorum=self.policy.quorum(request.env, risk, revert=request.reverts is not None),
                created_at=now,
                updated_at=now,
                expires_at=now + self.policy.config.proposal_ttl,
                state_since=now,
                confidence=request.confidence,
                risk=risk,
                evidence=list(request.evidence),
                app=self.targets.app(request.service, request.env),
                pending_push=True,
                reverts=request.reverts,
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
        proposal, later = self._first_push(proposal, actor=actor)
        return ProposeOutcome(
            proposal=proposal,
            action="opened",
            message=f"Opened {proposal.id}: {proposal.title}{later}",
        )

    def _first_push(
        self, proposal: Proposal, *, actor: Actor, note: str | None = None
    ) -> tuple[Proposal, str]:
        """Push while the proposer waits: a host that is down only delays the branch (the
        ticks retry it); a refusal fails the proposal and says why."""
        try:
            return self._push(proposal, note=note), ""
        except TemporaryBackendError as e:
            log.warning("%s: temporary failure writing the branch, will retry: %s", proposal.id, e)
            self.backoff.note(e, proposal.id)
            return proposal, (
                f" (the branch is not written yet: {e}; opsgate retries it, and the proposal "
                "can be approved once it is)"
            )
        except BackendError as e:
            self._transition(
                proposal.id,
                State.FAILED,
                actor=actor.name,
                text=f"{proposal.id} failed: {e}",
                message=str(e),
                close_reason="the branch could not be written",
            )
            raise

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

    def _push(self, proposal: Proposal, *, note: str | None = None) -> Proposal:
        """Write the branch, then record its head and announce; safe to repeat after a crash.

        Labels and the comment on an update are written before the head is stored, so a
        crash in between repeats them, and both are idempotent."""
        pull = self.backend.open(
            proposal_id=proposal.id,
            branch=proposal.branch,
            base_sha=proposal.base_sha,
            files=proposal.files,
            title=pr_title(proposal),
            body=pr_body(proposal),
        )
        self._decorate(proposal, pull, first=not proposal.head_sha, note=note)
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
            if pull.url.startswith(("http://", "https://")):
                text += f" {pull.url}"
            db.enqueue(
                session,
                dedupe_key=f"{current.id}:{kind}:{pull.head_sha}",
                kind=kind,
                text=text,
                proposal_id=current.id,
                at=self.clock(),
            )
            return current

    def _decorate(
        self, proposal: Proposal, pull: PullRequest, *, first: bool, note: str | None
    ) -> None:
        """Labels for the pull request and, on an update, a comment saying what changed."""
        if isinstance(self.backend, Labeler):
            wanted = _labels(proposal)
            self.backend.label(proposal.branch, wanted)
            if not first:  # the risk may have changed with the update
                stale = [f"risk:{level.value}" for level in RiskLevel]
                self.backend.unlabel(proposal.branch, [s for s in stale if s not in wanted])
        if first or pull.head_sha == proposal.head_sha or not isinstance(self.backend, Commenter):
            return
        voided = [a.approver for a in proposal.current_approvals()]
        text = note or f"opsgate updated this pull request: {_knob_moves(proposal.knobs)}."
        if voided:
            text += f"\n\nApprovals by {', '.join(voided)} are void: the change is new."
        self.backend.comment(proposal.branch, text, once=f"{proposal.id} update {pull.head_sha}")

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
            current.quorum = self.policy.quorum(
                request.env, risk, revert=current.reverts is not None
            )
            current.diff = _diff(files)
            current.files = {p: after for p, (_, after) in files.items()}
            current.knobs = knobs
            current.base_sha = base
            rebase.forget(session, current.id)  # rendered on the base just now
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
        note = _update_note(existing.knobs, knobs, by=actor.name)
        proposal, later = self._first_push(current, actor=actor, note=note)
        return ProposeOutcome(
            proposal=proposal,
            action="updated",
            message=f"Updated {proposal.id} instead of opening another: {proposal.title}{later}",
        )

    # --- deciding -------------------------------------------------------------------------

    def approve(self, proposal_id: str, *, actor: Actor, head: str | None = None) -> ApproveOutcome:
        before = self.get(proposal_id)  # a clear error for an unknown id
        try:
            # Approve what the pull request holds now, not what a missed webhook left behind.
            followed = self._follow_pull(before, force=True)
        except BackendError as e:  # the merge looks again before it acts
            log.warning("%s: could not read its pull request: %s", proposal_id, e)
            self.backoff.note(e, proposal_id)
            followed = False
        if followed:
            moved = self.get(proposal_id)
            if moved.state == State.OPEN and moved.head_sha != before.head_sha:
                raise self._denied(
                    actor,
                    "approve",
                    proposal_id,
                    f"{proposal_id} got new commits on GitHub (now {moved.head_sha[:7]}); "
                    f"read /diff {proposal_id} again",
                )
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
        try:
            self._review(proposal, actor.name)
        except BackendError as e:  # recorded again before the merge
            log.warning("%s: %s's review failed, will retry: %s", proposal_id, actor.name, e)
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
        if isinstance(self.backend, Reviewer) and self._login(actor.name, actor) is None:
            return (
                f"{actor.name} has no GitHub login in users.yaml (github: …); opsgate needs it "
                "to record the approval as a review on the pull request"
            )
        return None

    def reject(self, proposal_id: str, *, actor: Actor, reason: str = "") -> Proposal:
        proposal = self.get(proposal_id)
        denial = self.policy.reject_denial(proposal, actor)
        if denial is not None:
            raise self._denied(actor, "reject", proposal_id, denial)
        # An approved one may wait for its merge (GitHub refusing it); it can still be given up.
        if proposal.state not in (State.OPEN, State.APPROVED):
            raise self._denied(
                actor,
                "reject",
                proposal_id,
                f"{proposal_id} is {proposal.state.value}; only open proposals can be rejected "
                "(and approved ones not merged yet)",
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
                break
        self.rollbacks.settle()  # an applied revert rolls its original back
        self.verifier.tick()  # applied changes: watch their SLOs, revert the degraded ones

    def _step(self, proposal: Proposal) -> bool:
        if proposal.state in (State.OPEN, State.APPROVED) and self.backoff.holds(proposal.id):
            return False  # rate-limited: the host is not asked before the time it gave
        try:
            moved = self._advance(proposal)
        except TemporaryBackendError as e:
            log.warning("%s: temporary failure, will retry: %s", proposal.id, e)
            self.backoff.note(e, proposal.id)
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
        self.backoff.passed(proposal.id)
        return moved

    def _advance(self, proposal: Proposal) -> bool:
        now = self.clock()
        if proposal.pending_push and self.rebaser.resume(proposal):
            return True  # a re-render on the new base the process did not finish
        if proposal.state == State.OPEN:
            if not proposal.head_sha or proposal.pending_push:
                self._push(proposal)
                return True
            try:  # outside changes to its pull request, then to its base branch
                if self._follow_pull(proposal) or self.rebaser.check(proposal):
                    return True
            except BackendError as e:  # the next poll, or a webhook, tries again
                log.warning("%s: could not read its pull request or base: %s", proposal.id, e)
                self.backoff.note(e, proposal.id)
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
            return self._merge(proposal)
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

    def _merge(self, proposal: Proposal) -> bool:
        """Merge an approved proposal once the host agrees; until then it stays approved."""
        held = self._held.get(proposal.id)
        if held is not None and self.clock() - held < self.poll_pulls_every:
            return False  # refused a moment ago: ask again at the poll's pace, not every tick
        if self._follow_pull(proposal, force=True) or self.rebaser.check(proposal, force=True):
            return True
        if len(proposal.current_approvals()) < proposal.quorum:
            # New commits voided approvals, and the process stopped before reopening it.
            self._transition(
                proposal.id,
                State.OPEN,
                actor="opsgate",
                text=f"{proposal.id} is open again: its approvals were for an earlier commit",
            )
            return True
        for approval in proposal.current_approvals():
            try:
                self._review(proposal, approval.approver)
            except TemporaryBackendError:
                raise
            except BackendError as e:  # a record of the approval; the merge does not need it
                log.warning("%s: %s's review refused: %s", proposal.id, approval.approver, e)
        if isinstance(self.backend, MergeCheck):
            verdict = self.backend.mergeability(proposal.branch)
            if verdict.mergeable is None:
                return False  # the host is still working it out; the next tick looks again
            if not verdict.mergeable:
                return self._hold(proposal, verdict.reason)
        try:
            merge_sha = self.backend.merge(
                proposal_id=proposal.id,
                branch=proposal.branch,
                head_sha=proposal.head_sha,
                title=proposal.title,
            )
        except NotMergeableError as e:
            return self._hold(proposal, str(e))
        self._transition(
            proposal.id,
            State.MERGED,
            actor="opsgate",
            text=f"{proposal.id} merged as {merge_sha[:7]}",
            merge_sha=merge_sha,
            message="",
        )
        return True

    def _hold(self, proposal: Proposal, reason: str) -> bool:
        """Say once per reason why an approved proposal is not merged yet; it stays approved."""
        now = self.clock()
        digest = hashlib.sha256(reason.encode()).hexdigest()[:16]
        with self.store.transaction() as session:
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
        self._held[proposal.id] = now
        return False

    def _login(self, person: str, actor: Actor | None = None) -> str | None:
        if actor is not None and actor.github:
            return actor.github
        return self.github_logins.get(person)

    def _review(self, proposal: Proposal, approver: str) -> None:
        """Record a chat approval on the pull request; idempotent on the host's side too."""
        if not isinstance(self.backend, Reviewer):
            return
        key = (proposal.id, approver, proposal.head_sha)
        if key in self._reviewed:
            return
        login = self._login(approver)
        if login is None:
            log.warning("%s: %s has no GitHub login; no review recorded", proposal.id, approver)
            return
        self.backoff.guard(proposal.id)
        self.backend.review(
            proposal.branch,
            approver_login=login,
            head_sha=proposal.head_sha,
            body=f"{approver} approved {proposal.id} in chat (/approve {proposal.id}).",
        )
        self._reviewed.add(key)

    # --- keeping in step with the PR host -------------------------------------------------

    def follow(self, branch: str) -> Proposal | None:
        """Look at the branch's pull request now (a webhook said it changed) and bring the
        proposal in step: merged, closed or pushed to outside opsgate. Safe to repeat."""
        found = next((p for p in self.proposals(active_only=True) if p.branch == branch), None)
        if found is None:
            return None
        self._follow_pull(found, force=True)
        return self.get(found.id)

    def _follow_pull(self, proposal: Proposal, *, force: bool = False) -> bool:
        """Read the proposal's pull request (at most every poll_pulls_every unless forced) and
        apply what happened to it outside opsgate; True when the proposal changed."""
        if (
            not isinstance(self.backend, PullTracker)
            or proposal.state not in (State.OPEN, State.APPROVED)
            or proposal.pending_push  # opsgate itself is writing the branch
            or not proposal.head_sha
        ):
            return False
        now = self.clock()
        last = self._polled.get(proposal.id)
        if not force and last is not None and now - last < self.poll_pulls_every:
            return False
        if self.backoff.holds(proposal.id):
            return False
        pull = self.backend.pull_state(proposal.branch)
        self._polled[proposal.id] = now
        if pull is None:
            return False
        if pull.merged and pull.merge_commit_sha:
            return self._merged_outside(proposal, pull, pull.merge_commit_sha)
        if pull.state == "closed":
            self._transition(
                proposal.id,
                State.REJECTED,
                actor="github",
                text=f"{proposal.id} rejected: its pull request #{pull.number} was closed on "
                "GitHub without merging",
                detail={"pull": pull.number, "outside": True},
            )
            return True
        if pull.head_sha != proposal.head_sha:
            return self._pushed_outside(proposal, pull)
        return False

    def _merged_outside(self, proposal: Proposal, pull: PullState, merge_sha: str) -> bool:
        if proposal.state == State.OPEN:
            have = len(proposal.current_approvals())
            self._transition(
                proposal.id,
                State.APPROVED,
                actor="github",
                text=f"{proposal.id} was merged on GitHub outside opsgate, with {have} of "
                f"{proposal.quorum} chat approvals; opsgate follows its sync",
                detail={"pull": pull.number, "outside": True},
            )
        self._transition(
            proposal.id,
            State.MERGED,
            actor="github" if proposal.state == State.OPEN else "opsgate",
            text=f"{proposal.id} merged as {merge_sha[:7]}",
            merge_sha=merge_sha,
            message="",
        )
        return True

    def _pushed_outside(self, proposal: Proposal, pull: PullState) -> bool:
        """New commits by someone else: the proposal now is what the branch holds, and the
        approvals given for the earlier head are void."""
        head = pull.head_sha
        reread = self._reread(proposal, head)
        now = self.clock()
        with self.store.transaction() as session:
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
            self._transition(
                proposal.id,
                State.OPEN,
                actor="github",
                text=f"{proposal.id} is open again: new commits voided its approvals",
                detail={"head": head},
            )
        return True

    def _reread(
        self, proposal: Proposal, head: str
    ) -> tuple[dict[str, str], str, list[EditedKnob]] | None:
        """The proposal's files, diff and knobs as the branch holds them at `head`."""
        try:
            files = {path: self.backend.read_file(path, ref=head) for path in proposal.files}
            before = {path: self.backend.read_file(path, ref=proposal.base_sha) for path in files}
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
            # Open and approved may come round again after new commits: key them by head.
            again = f"@{proposal.head_sha}" if new in (State.OPEN, State.APPROVED) else ""
            db.enqueue(
                session,
                dedupe_key=f"{proposal_id}:{new.value}{again}",
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
        if self.backoff.holds(proposal.id):
            return
        try:
            self.backend.close(proposal_id=proposal.id, branch=proposal.branch, reason=reason)
        except BackendError as e:
            log.warning("%s: closing %s failed, will retry: %s", proposal.id, proposal.branch, e)
            self.backoff.note(e, proposal.id)
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


def _update_note(before: list[EditedKnob], after: list[EditedKnob], *, by: str) -> str:
    """The comment on an updated pull request: what each knob proposed before, and now."""
    was = {k.key: k.new for k in before}
    lines = [f"opsgate updated this pull request: {plain(by)} asked again."]
    for knob in after:
        earlier = f"{code(was[knob.key])} → " if knob.key in was else "newly "
        lines.append(f"- {code(knob.key)}: {earlier}{code(knob.new)} (base: {code(knob.old)})")
    now = {k.key for k in after}
    lines.extend(f"- {code(key)}: no longer changed" for key in was if key not in now)
    return "\n".join(lines)


def _diff(files: dict[str, tuple[str, str]]) -> str:
    return "".join(unified_diff(path, before, after) for path, (before, after) in files.items())


def _knob_list(wanted: dict[str, Scalar]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in wanted.items())


def _not_found(proposal_id: str, known: list[str]) -> str:
    close = difflib.get_close_matches(proposal_id, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"no proposal {proposal_id!r}{hint} (/proposals lists the open ones)"
