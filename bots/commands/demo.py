"""/as: demo only, switch who is speaking on this console."""

from __future__ import annotations

from bots.errors import CommandError, UsageError
from bots.router import Context, Router
from bots.types import Reply


def install(router: Router) -> None:
    @router.command(
        "as", usage="/as <name>", summary="(demo) speak as another demo person", demo_only=True
    )
    def as_(ctx: Context) -> Reply:
        if len(ctx.args) != 1:
            raise UsageError("Usage: /as <name>, e.g. /as bob")
        name = ctx.args[0].lower()
        actor = ctx.services.directory.by_name(name)
        if actor is None:
            known = ", ".join(ctx.services.directory.names())
            raise CommandError(f"There is no demo person {name!r}. Known: {known}.")
        ctx.services.speakers[ctx.event.channel] = f"{ctx.event.platform}:{name}"
        return Reply(text=f"You are now {name} ({', '.join(sorted(actor.roles))}).")
