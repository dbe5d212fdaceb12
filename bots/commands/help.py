"""/help: the commands the caller's role may run."""

from __future__ import annotations

from bots.router import Context, Router
from bots.types import Reply, Table


def install(router: Router) -> None:
    @router.command("help", summary="the commands you may run")
    def help_(ctx: Context) -> Reply:
        commands = router.visible_to(ctx.actor, demo=ctx.services.demo)
        rows = tuple((c.usage, c.summary) for c in commands)
        header = f"You are {ctx.actor.name} ({ctx.actor.top_role}). Commands you may run:"
        return Reply(text=header, tables=(Table(columns=("command", "what it does"), rows=rows),))
