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


def _range(text: str) -> tuple[int, int | None]:
    """`4` → (4, None); `2-6` → (2, 6): an HPA's floor and ceiling."""
    low, dash, high = text.partition("-")
    if not dash or not low:  # `-3` is a (bad) number, not a range
        return _replicas(text), None
    floor, ceiling = _replicas(low), _replicas(high)
    if ceiling < floor:
        raise CommandError(f"{text}: the ceiling {ceiling} is below the floor {floor}.")
    return floor, ceiling


def scale_changes(
    current: dict[str, Scalar], replicas: int, *, ceiling: int | None = None
) -> tuple[KnobChange, ...]:
    """The HPA floor where an HPA runs (raising its ceiling if needed, or setting the one
    given), else replicaCount."""
    hpa = current.get("hpa_enabled") is True and "min_replicas" in current
    if ceiling is not None:
        if not hpa or "max_replicas" not in current:
            raise CommandError(
                "a range (min-max) sets an HPA's floor and ceiling, and this service runs "
                "without one here; give one number of replicas"
            )
        return (KnobChange("min_replicas", replicas), KnobChange("max_replicas", ceiling))
    if hpa:
        changes = [KnobChange("min_replicas", replicas)]
        top = current.get("max_replicas")
        if isinstance(top, int) and top < replicas:
            changes.append(KnobChange("max_replicas", replicas))
        return tuple(changes)
    return (KnobChange("replicas", replicas),)


def install(router: Router) -> None:
    @router.command(
        "scale",
        role="operator",
        usage=USAGE,
        summary="propose a replica floor; <min>-<max> sets an HPA's floor and ceiling",
    )
    def scale(ctx: Context) -> Reply:
        if len(ctx.args) not in (2, 3):
            raise UsageError(f"Usage: {USAGE}, e.g. /scale checkout 4 prod")
        service = ctx.args[0]
        replicas, ceiling = _range(ctx.args[1])
        env = ctx.args[2] if len(ctx.args) == 3 else ctx.services.default_env
        engine = ctx.services.engine
        engine.targets.check_env(service, env)
        current = engine.current_values(service, env)
        request = ChangeRequest(
            kind="scale",
            service=service,
            env=env,
            changes=scale_changes(current, replicas, ceiling=ceiling),
            rationale=f"{ctx.actor.name} asked for {ctx.args[1]} replicas of {service} in {env} "
            "with /scale.",
            requested_by=ctx.actor.name,
        )
        outcome = engine.propose(request, actor=ctx.actor)
        if outcome.proposal is None:
            return Reply(text=outcome.message)
        return proposal_card(outcome.proposal, headline=outcome.message)
