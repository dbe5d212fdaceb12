"""Policy: who may propose, approve and reject what, quorum per environment, and limits."""

from __future__ import annotations

from approval_engine.config import PolicyConfig
from approval_engine.errors import PolicyDeniedError
from approval_engine.model import ChangeRequest, Proposal
from approval_engine.rbac import Actor

REPLICA_KNOBS = frozenset({"replicas", "min_replicas", "max_replicas"})


class Policy:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def quorum(self, env: str) -> int:
        policy = self.config.environments.get(env)
        if policy is None:
            raise PolicyDeniedError(f"policy.yaml has no rules for environment {env!r}")
        return policy.quorum

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

    def approve_denial(self, proposal: Proposal, actor: Actor) -> str | None:
        """Why `actor` may not approve `proposal`, or None when they may."""
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
        return None

    def reject_denial(self, proposal: Proposal, actor: Actor) -> str | None:
        """Approvers may reject; a proposer may withdraw their own proposal."""
        if actor.name in proposal.contributors or actor.has(self.config.approve_role):
            return None
        return (
            f"{actor.name} is a {actor.top_role}; rejecting needs the "
            f"{self.config.approve_role} role (or being the proposer)"
        )
