"""The approval engine: change requests become proposals, approvals become merges and applies."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from approval_engine import (
    _announcing,
    _deciding,
    _driving,
    _following,
    _proposing,
    _pushing,
    audit,
    rebase,
)
from approval_engine import store as db
from approval_engine._outcomes import ApproveOutcome, ProposeOutcome
from approval_engine._proposing import _diff, _knob_list, _title
from approval_engine.backoff import Backoff
from approval_engine.config import PolicyConfig
from approval_engine.deploy import Deployer
from approval_engine.errors import BackendError, ProposalNotFoundError
from approval_engine.model import (
    ACTIVE_STATES,
    ChangeRequest,
    EditedKnob,
    Proposal,
    Risk,
    Scalar,
    State,
    check_transition,
)
from approval_engine.noise import NoiseControl
from approval_engine.notify import Notifier
from approval_engine.policy import Policy
from approval_engine.prs.base import PRBackend, PullRequest
from approval_engine.rbac import Actor
from approval_engine.rollback import Rollbacks
from approval_engine.store import Store
from approval_engine.targets import Targets
from approval_engine.verify import Verifier

__all__ = [
    "TERMINAL",
    "ApproveOutcome",
    "Engine",
    "ProposeOutcome",
    # approval_engine.rebase renders a proposal again with these.
    "_diff",
    "_knob_list",
    "_title",
    "utc_now",
]

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

    # --- proposing (approval_engine._proposing, ._pushing) --------------------------------

    def propose(self, request: ChangeRequest, *, actor: Actor) -> ProposeOutcome:
        return _proposing.propose(self, request, actor=actor)

    # approval_engine.rebase renders, assesses and labels a proposal again through these.
    def _render(
        self, service: str, env: str, wanted: dict[str, Scalar], *, ref: str
    ) -> tuple[list[EditedKnob], dict[str, tuple[str, str]]]:
        return _proposing.render(self, service, env, wanted, ref=ref)

    def _assess(
        self,
        request: ChangeRequest,
        knobs: list[EditedKnob],
        files: dict[str, tuple[str, str]],
    ) -> Risk:
        return _proposing.assess_risk(self, request, knobs, files)

    def _decorate(
        self, proposal: Proposal, pull: PullRequest, *, first: bool, note: str | None
    ) -> None:
        _pushing.decorate(self, proposal, pull, first=first, note=note)

    # --- deciding (approval_engine._deciding) ---------------------------------------------

    def approve(self, proposal_id: str, *, actor: Actor, head: str | None = None) -> ApproveOutcome:
        return _deciding.approve(self, proposal_id, actor=actor, head=head)

    def reject(self, proposal_id: str, *, actor: Actor, reason: str = "") -> Proposal:
        return _deciding.reject(self, proposal_id, actor=actor, reason=reason)

    # --- driving (approval_engine._driving) -----------------------------------------------

    def reconcile(self, *, max_steps: int = 100) -> None:
        """Move every in-flight proposal as far as it can go now; safe to call any time."""
        _driving.reconcile(self, max_steps=max_steps)

    # --- keeping in step with the PR host (approval_engine._following) --------------------

    def follow(self, branch: str) -> Proposal | None:
        """Look at the branch's pull request now (a webhook said it changed) and bring the
        proposal in step: merged, closed or pushed to outside opsgate. Safe to repeat."""
        return _following.follow(self, branch)

    # approval_engine.rebase looks at the pull request through this first.
    def _follow_pull(self, proposal: Proposal, *, force: bool = False) -> bool:
        return _following.follow_pull(self, proposal, force=force)

    # --- state changes --------------------------------------------------------------------

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

    # --- announcing (approval_engine._announcing) -----------------------------------------

    def deliver(self, notifier: Notifier) -> int:
        """Send queued announcements in order; a failing one stays queued for the next call."""
        return _announcing.deliver(self, notifier)

    def audit_denial(self, *, actor: str, action: str, subject: str, reason: str) -> None:
        """Record a refusal decided outside the engine (RBAC at the chat edge)."""
        _announcing.audit_denial(self, actor=actor, action=action, subject=subject, reason=reason)


def _not_found(proposal_id: str, known: list[str]) -> str:
    close = difflib.get_close_matches(proposal_id, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"no proposal {proposal_id!r}{hint} (/proposals lists the open ones)"
