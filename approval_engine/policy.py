"""Policy: who may propose, approve and reject what, quorum per environment and risk, limits."""

from __future__ import annotations

from datetime import datetime

from approval_engine.config import ROLES, LevelPolicy, PolicyConfig
from approval_engine.errors import PolicyDeniedError
from approval_engine.model import ChangeRequest, Proposal, Risk, RiskLevel
from approval_engine.rbac import Actor
from approval_engine.risk import active_freezes

REPLICA_KNOBS = frozenset({"replicas", "min_replicas", "max_replicas"})


class Policy:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def quorum(self, env: str, risk: Risk | None = None, *, revert: bool = False) -> int:
        """The environment's quorum, raised to what the risk level demands; a revert's is
        `rollback.quorum` when policy fast-tracks reverts."""
        policy = self.config.environments.get(env)
        if policy is None:
            raise PolicyDeniedError(f"policy.yaml has no rules for environment {env!r}")
        if revert and self.config.rollback.fast_track:
            return self.config.rollback.quorum or 1
        if risk is None:
            return policy.quorum
        return max(policy.quorum, *(p.quorum_at_least for p in self._up_to(risk.level)))

    def required_role(self, level: RiskLevel) -> str | None:
        """The role one of the approvers must hold at this level: the highest any level up to
        it names (a level demands at least what the levels below it demand)."""
        roles = [p.approver_role for p in self._up_to(level) if p.approver_role is not None]
        return max(roles, key=ROLES.index) if roles else None

    def _up_to(self, level: RiskLevel) -> list[LevelPolicy]:
        return [getattr(self.config.risk, lv.value) for lv in RiskLevel if lv.rank <= level.rank]

    def check_propose(self, actor: Actor) -> None:
        role = self.config.propose_role
        if not actor.has(role):
            raise PolicyDeniedError(
                f"{actor.name} is a {actor.top_role}; proposing a change needs the {role} role"
            )

    def check_change(self, request: ChangeRequest) -> None:
        limits = self.config.limits_for(request.service)
        for change in request.changes:
            if change.knob not in REPLICA_KNOBS:
                continue
            value = change.value
            if isinstance(value, bool) or not isinstance(value, int):
                raise PolicyDeniedError(f"{change.knob} must be a whole number, not {value!r}")
            if value > limits.max_replicas:
                raise PolicyDeniedError(
                    f"{request.service} may have at most {limits.max_replicas} replicas "
                    f"(policy.yaml); {value} is above that"
                )
            if value < max(limits.min_replicas, 1):
                raise PolicyDeniedError(
                    f"{request.service} needs at least {max(limits.min_replicas, 1)} "
                    f"replica(s) (policy.yaml); {value} is below that"
                )
        self.quorum(request.env)

    def approve_denial(self, proposal: Proposal, actor: Actor, *, now: datetime) -> str | None:
        """Why `actor` may not approve `proposal` at `now`, or None when they may."""
        role = self.config.approve_role
        if not actor.has(role):
            return f"{actor.name} is a {actor.top_role}; approving needs the {role} role"
        if actor.name in proposal.contributors:
            return (
                f"{actor.name} proposed {proposal.id}; someone else must approve it "
                "(nobody approves their own change)"
            )
        env_policy = self.config.environments.get(proposal.env)
        if (
            env_policy is not None
            and env_policy.approvers
            and actor.name not in env_policy.approvers
        ):
            return (
                f"{actor.name} may not approve changes in {proposal.env} "
                f"(approvers there: {', '.join(env_policy.approvers)})"
            )
        return self._risk_denial(proposal, actor, now=now)

    def _risk_denial(self, proposal: Proposal, actor: Actor, *, now: datetime) -> str | None:
        """The approval that would fill the quorum must not leave out the role the risk needs.

        A freeze holding the environment now makes the proposal critical whatever it was
        rated when proposed: approving during a freeze is breaking glass, an admin's call.
        Proposals stored before risk was assessed have no level and only freezes apply. The
        quorum stays what it was when proposed.
        """
        risk = proposal.risk
        level = risk.level if risk is not None else None
        why = ""
        if risk is not None:
            top = f" ({risk.reasons[0]})" if risk.reasons else ""
            why = f"{proposal.id} is {risk.level.value} risk{top}"
        frozen = active_freezes(self.config.freezes, proposal.env, now)
        if frozen and (level is None or level.rank < RiskLevel.CRITICAL.rank):
            freeze, until = frozen[0]
            level = RiskLevel.CRITICAL
            why = (
                f"{proposal.env} is inside freeze {freeze.name!r} until "
                f"{until:%Y-%m-%d %H:%M} UTC, which makes {proposal.id} critical"
            )
        if level is None:
            return None
        role = self.required_role(level)
        if role is None or actor.has(role):
            return None
        approvals = proposal.current_approvals()
        if any(_holds(a.role, role) for a in approvals):
            return None
        if len(approvals) + 1 < proposal.quorum:
            return None  # a later approval can still come from someone with the role
        return (
            f"{why}: someone with the {role} role must be among its approvers, and none has "
            f"approved yet; {actor.name} ({actor.top_role}) would be approval "
            f"{len(approvals) + 1} of {proposal.quorum}"
        )

    def reject_denial(self, proposal: Proposal, actor: Actor) -> str | None:
        """Approvers may reject; a proposer may withdraw their own proposal."""
        if actor.name in proposal.contributors or actor.has(self.config.approve_role):
            return None
        return (
            f"{actor.name} is a {actor.top_role}; rejecting needs the "
            f"{self.config.approve_role} role (or being the proposer)"
        )


def _holds(role: str | None, required: str) -> bool:
    """Whether an approval given with `role` (None: recorded before roles were) counts."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(required)
