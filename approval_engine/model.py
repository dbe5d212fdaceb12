"""Domain types: change requests, risk, proposals and the proposal state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from approval_engine.errors import InvalidTransitionError

Scalar = int | float | bool | str


class State(enum.StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    MERGED = "merged"
    SYNCING = "syncing"
    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.OPEN: frozenset(
        {State.APPROVED, State.REJECTED, State.EXPIRED, State.SUPERSEDED, State.FAILED}
    ),
    # Back to open when new commits void the approvals; rejected when the PR is closed unmerged.
    State.APPROVED: frozenset(
        {State.MERGED, State.FAILED, State.SUPERSEDED, State.OPEN, State.REJECTED}
    ),
    State.MERGED: frozenset({State.SYNCING, State.FAILED}),
    State.SYNCING: frozenset({State.APPLIED, State.FAILED}),
    State.APPLIED: frozenset({State.ROLLED_BACK}),
    State.FAILED: frozenset({State.ROLLED_BACK}),
    State.REJECTED: frozenset(),
    State.EXPIRED: frozenset(),
    State.SUPERSEDED: frozenset(),
    State.ROLLED_BACK: frozenset(),
}

ACTIVE_STATES = frozenset({State.OPEN, State.APPROVED, State.MERGED, State.SYNCING})


def check_transition(proposal_id: str, current: State, new: State) -> None:
    """Raise InvalidTransitionError unless the state machine allows current → new."""
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing"
        raise InvalidTransitionError(
            f"{proposal_id} is {current.value}; it cannot become {new.value} "
            f"(from {current.value} only: {allowed})"
        )


class RiskLevel(enum.StrEnum):
    """How much could go wrong; `rank` orders them (the values do not sort by severity)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(RiskLevel).index(self)


@dataclass(frozen=True)
class Risk:
    """A proposal's risk: the highest of its factors' levels, and each factor's reason."""

    level: RiskLevel
    reasons: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: `high — lowers minReplicas 12 → 3 (−75 % capacity); prod environment`."""
        if not self.reasons:
            return self.level.value
        return f"{self.level.value} — {'; '.join(self.reasons)}"


@dataclass(frozen=True)
class KnobChange:
    """One knob of a target set to a value: `min_replicas = 4`."""

    knob: str
    value: Scalar


@dataclass(frozen=True)
class ChangeRequest:
    """A wish on a target, not on a file: set knobs of `service` in `env`."""

    kind: str  # names the proposal id: scale, burst, cost, …
    service: str
    env: str
    changes: tuple[KnobChange, ...]
    rationale: str
    requested_by: str  # a person's name, or `agent:<Name>`
    confidence: float | None = None
    evidence: tuple[str, ...] = ()
    reverts: str | None = None  # the proposal whose change this one undoes (kind `rollback`)

    def describe(self) -> str:
        knobs = ", ".join(f"{c.knob} → {c.value}" for c in self.changes)
        return f"{self.service}/{self.env}: {knobs}"


@dataclass(frozen=True)
class FileEdit:
    """One file's content before and after a proposal's edit."""

    path: str
    before: str
    after: str
    diff: str


@dataclass(frozen=True)
class EditedKnob:
    """A knob as it was and as the proposal makes it, with where it lives."""

    knob: str
    path: str
    key: str
    old: Scalar
    new: Scalar


@dataclass
class Approval:
    approver: str
    head_sha: str
    at: datetime
    role: str | None = None  # the approver's highest role then; None in rows from before roles


@dataclass
class Proposal:
    id: str
    kind: str
    service: str
    env: str
    state: State
    title: str
    rationale: str
    proposer: str
    contributors: list[str]
    branch: str
    base_sha: str
    head_sha: str
    diff: str
    files: dict[str, str]  # path → content after the edit, what the branch holds
    knobs: list[EditedKnob]
    quorum: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    state_since: datetime
    confidence: float | None = None
    risk: Risk | None = None  # None for proposals stored before risk was assessed
    evidence: list[str] = field(default_factory=list)
    merge_sha: str | None = None
    app: str | None = None
    message: str = ""
    pending_push: bool = False  # files stored, branch not yet written
    pending_close: bool = False  # closed in the store, branch not yet closed
    approvals: list[Approval] = field(default_factory=list)
    reverts: str | None = None  # the applied proposal whose change this one undoes

    def current_approvals(self) -> list[Approval]:
        """Approvals given for the current head commit; a new push voids the others."""
        return [a for a in self.approvals if a.head_sha == self.head_sha]

    @property
    def target_key(self) -> str:
        """The lock on the whole (service, env): one change in flight per target at a time."""
        return f"{self.service}/{self.env}"

    @property
    def lock_keys(self) -> list[str]:
        return [self.target_key, *(f"{self.service}/{self.env}/{k.knob}" for k in self.knobs)]
