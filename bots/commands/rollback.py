"""/rollback: ask for the revert of an applied change, the same one opsgate opens by itself."""

from __future__ import annotations

from bots.commands.proposals import proposal_card
from bots.errors import UsageError
from bots.router import Context, Router
from bots.types import Reply

USAGE = "/rollback <id> [reason]"


def install(router: Router) -> None:
    @router.command(
        "rollback",
        role="operator",
        usage=USAGE,
        summary="propose the revert of an applied change (reverts skip the daily budget)",
    )
    def rollback(ctx: Context) -> Reply:
        if not ctx.args:
            raise UsageError(f"Usage: {USAGE}, e.g. /rollback scale-3 p95 doubled")
        proposal_id = ctx.args[0].lower()
        reason = " ".join(ctx.args[1:])
        why = f"{ctx.actor.name} asked for it with /rollback" + (f": {reason}" if reason else ".")
        outcome = ctx.services.engine.rollbacks.request(proposal_id, actor=ctx.actor, why=why)
        revert = outcome.proposal
        if revert is None:
            return Reply(text=outcome.message)
        if outcome.action != "opened":
            return proposal_card(revert, headline=outcome.message)
        return proposal_card(
            revert,
            headline=f"Opened {revert.id} to revert {proposal_id}; it needs "
            f"{revert.quorum} approval(s) from someone else.",
        )
