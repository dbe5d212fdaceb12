"""/ack: someone is on an alert group; its messages say who, and the audit log keeps it."""

from __future__ import annotations

from approval_engine import audit
from bots.errors import CommandError, UsageError
from bots.router import Context, Router
from bots.types import Reply

USAGE = "/ack <alert group>"


def _group_id(text: str) -> int:
    digits = text.removeprefix("#")
    if not digits.isdigit():
        raise UsageError(
            f"{text!r} is not an alert group number; the alert message's footer shows it "
            f"(alert group 42). Usage: {USAGE}"
        )
    return int(digits)


def install(router: Router) -> None:
    @router.command("ack", role="operator", usage=USAGE, summary="say you are on an alert group")
    def ack(ctx: Context) -> Reply:
        if len(ctx.args) != 1:
            raise UsageError(f"Usage: {USAGE}, e.g. /ack 42")
        group_id = _group_id(ctx.args[0])
        alerts = ctx.services.alerts
        if alerts is None:
            raise CommandError(
                "Alerts are not received here: opsgate serve receives them from Alertmanager."
            )
        at = ctx.services.engine.clock()
        with alerts.transaction() as session:
            try:
                group = alerts.ack(session, group_id, by=ctx.actor.name, at=at)
            except KeyError:
                raise CommandError(f"There is no alert group {group_id}.") from None
            if group.acked_by != ctx.actor.name or group.acked_at != at:
                raise CommandError(
                    f"Alert group {group_id} was acked by {group.acked_by} "
                    f"at {group.acked_at:%H:%M} UTC already."
                )
            audit.record(
                session,
                at=at,
                actor=ctx.actor.name,
                action="acked",
                subject=f"alert-group-{group_id}",
                detail={"labels": group.group_labels, "where": ctx.event.platform},
            )
        return Reply(text=f"Acked alert group {group_id}; its messages now say you are on it.")
