"""/scale: a person's wish for more or fewer replicas, proposed exactly like an agent's."""

from __future__ import annotations

from approval_engine.model import ChangeRequest, KnobChange, Scalar
from bots.commands.proposals import proposal_card
from bots.errors import CommandError, UsageError
from bots.router import Context, Router
from bots.types import Reply

USAGE = "/scale <service> <replicas> [env]"


def _replicas(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a whole number of replicas. Usage: {USAGE}") from None
    if value < 1:
        raise CommandError(f"Replicas must be at least 1, not {value}.")
    return value


def scale_changes(current: dict[str, Scalar], replicas: int) -> tuple[KnobChange, ...]:
    """The HPA floor where an HPA runs (raising its ceiling if needed), else replicaCount."""
    if current.get("hpa_enabled") is True and "min_replicas" in current:
        changes = [KnobChange("min_replicas", replicas)]
        ceiling = current.get("max_replicas")
        if isinstance(ceiling, int) and ceiling < replicas:
            changes.append(KnobChange("max_replicas", replicas))
        return tuple(changes)
    return (KnobChange("replicas", replicas),)


def install(router: Router) -> None:
    @router.command(
        "scale", role="operator", usage=USAGE, summary="propose a replica floor for a service"
    )
    def scale(ctx: Context) -> Reply:
        if len(ctx.args) not in (2, 3):
            raise UsageError(f"Usage: {USAGE}, e.g. /scale checkout 4 prod")
        service = ctx.args[0]
        replicas = _replicas(ctx.args[1])
        env = ctx.args[2] if len(ctx.args) == 3 else ctx.services.default_env
        engine = ctx.services.engine
        engine.targets.check_env(service, env)
        current = engine.current_values(service, env)
        request = ChangeRequest(
            kind="scale",
            service=service,
            env=env,
            changes=scale_changes(current, replicas),
            rationale=f"{ctx.actor.name} asked for {replicas} replicas of {service} in {env} "
            "with /scale.",
            requested_by=ctx.actor.name,
        )
        outcome = engine.propose(request, actor=ctx.actor)
        if outcome.proposal is None:
            return Reply(text=outcome.message)
        return proposal_card(outcome.proposal, headline=outcome.message)
