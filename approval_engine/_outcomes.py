"""What `Engine.propose` and `Engine.approve` tell their callers."""

from __future__ import annotations

from dataclasses import dataclass

from approval_engine.model import Proposal

__all__ = ["ApproveOutcome", "ProposeOutcome"]


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
