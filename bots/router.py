"""The command router: commands register by decorator into a Router object; dispatch parses text."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from approval_engine.rbac import Actor
from bots.errors import UsageError
from bots.types import ChatEvent, Reply

if TYPE_CHECKING:
    from bots.services import Services


@dataclass
class Context:
    """Everything a command handler gets: who, what they typed, and the services."""

    event: ChatEvent
    actor: Actor
    args: list[str]
    services: Services


Handler = Callable[[Context], Reply]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    role: str
    usage: str
    summary: str
    demo_only: bool


class Router:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(
        self,
        name: str,
        *,
        role: str = "viewer",
        usage: str = "",
        summary: str = "",
        demo_only: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self._commands:
                raise ValueError(f"command /{name} is registered twice")
            self._commands[name] = Command(
                name=name,
                handler=handler,
                role=role,
                usage=usage or f"/{name}",
                summary=summary,
                demo_only=demo_only,
            )
            return handler

        return register

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self, *, demo: bool) -> list[str]:
        return [c.name for c in self._commands.values() if demo or not c.demo_only]

    def visible_to(self, actor: Actor, *, demo: bool) -> list[Command]:
        return [
            c for c in self._commands.values() if actor.has(c.role) and (demo or not c.demo_only)
        ]

    def suggest(self, name: str, *, demo: bool) -> str | None:
        close = difflib.get_close_matches(name, self.names(demo=demo), n=1, cutoff=0.6)
        return close[0] if close else None


def parse(text: str) -> tuple[str, list[str]]:
    """`/approve@opsgate_bot scale-1` → ("approve", ["scale-1"]); quotes group words."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        raise UsageError("Commands start with /. Type /help to see what you can run.")
    try:
        words = shlex.split(stripped[1:])
    except ValueError as e:
        raise UsageError(f"Could not read that command: {e} (check the quotes)") from e
    if not words:
        raise UsageError("Type a command after the /. Type /help to see what you can run.")
    name = words[0].split("@", 1)[0].lower()
    return name, words[1:]
