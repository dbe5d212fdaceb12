"""Noise control the engine applies to every wish, an agent's or a person's: one change per
target and environment at a time, and a daily change budget per environment.

Each refusal is a PolicyDeniedError whose text names what blocks the wish and what to do; the
engine audits it as a denial. Reverts are exempt from the budget: undoing a bad change must
never wait for tomorrow.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from approval_engine import store as db
from approval_engine.config import PolicyConfig
from approval_engine.errors import PolicyDeniedError
from approval_engine.model import ChangeRequest, Proposal

__all__ = ["NoiseControl"]


class NoiseControl:
    def __init__(
        self, *, store: db.Store, policy: PolicyConfig, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    def check_lock(self, request: ChangeRequest, existing: Proposal | None) -> None:
        """Refuse a wish on a (service, env) that another proposal holds.

        `existing` is the open proposal changing the same knobs, which the wish folds into;
        that one is no obstacle unless it and the wish disagree on being a revert.
        """
        target = f"{request.service}/{request.env}"
        with self.store.transaction() as session:
            holder_id = db.lock_holder(session, target)
            holder = db.load_proposal(session, holder_id) if holder_id else None
        if holder is None:
            holder = existing  # held before target locks existed: only its knobs are locked
        if holder is None:
            return
        if existing is not None and holder.id == existing.id and holder.reverts == request.reverts:
            return
        state = holder.state.value
        if holder.reverts is not None:
            raise PolicyDeniedError(
                f"{holder.id} is reverting {holder.reverts} on {target} ({state}); decide on "
                f"it first (/approve {holder.id} or /reject {holder.id})"
            )
        change = holder.title.split(": ", 1)[-1]
        if request.reverts is not None:
            raise PolicyDeniedError(
                f"{holder.id} holds {target} ({state}, proposed by {holder.proposer}: "
                f"{change}); reject it or let it finish, then revert {request.reverts}"
            )
        raise PolicyDeniedError(
            f"{target} is locked by {holder.id} ({state}, proposed by {holder.proposer}: "
            f"{change}); one change per service and environment at a time, so approve or "
            f"reject {holder.id} first"
        )

    def check_budget(self, request: ChangeRequest) -> None:
        """Refuse a new proposal once its environment had `daily_changes` today (UTC)."""
        rules = self.policy.environments.get(request.env)
        budget = rules.daily_changes if rules is not None else None
        if budget is None or request.reverts is not None:
            return
        used = self.opened_today(request.env)
        if used >= budget:
            raise PolicyDeniedError(
                f"{request.env} has had {used} changes today (budget {budget}); the budget "
                "resets at 00:00 UTC, and reverts (/rollback) are exempt from it"
            )

    def opened_today(self, env: str) -> int:
        """Proposals opened in `env` since 00:00 UTC, whatever became of them; reverts aside."""
        now = self.clock().astimezone(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self.store.transaction() as session:
            count = session.scalar(
                select(func.count())
                .select_from(db.ProposalRow)
                .where(
                    db.ProposalRow.env == env,
                    db.ProposalRow.created_at >= midnight,
                    db.ProposalRow.created_at < midnight + timedelta(days=1),
                    db.ProposalRow.reverts.is_(None),
                )
            )
        return count or 0
