"""The gateway: every ChatEvent goes parse → who is it → command → Reply; nothing crashes it."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from agents.errors import SourceError, SourceUnavailableError, UnknownAgentError
from approval_engine.errors import (
    BackendError,
    EditError,
    InvalidTransitionError,
    PolicyDeniedError,
    ProposalNotFoundError,
    TargetError,
)
from approval_engine.notify import Notifier
from bots.errors import CommandError, UsageError
from bots.router import Context, Router, parse
from bots.services import Services
from bots.types import ChatEvent, Reply

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000

# command name, outcome (ok, refused, error), seconds: for the web app's metrics.
Observer = Callable[[str, str, float], None]

# Engine errors whose text is written for people and safe to show in chat.
SAFE_ERRORS: tuple[type[Exception], ...] = (
    PolicyDeniedError,
    ProposalNotFoundError,
    TargetError,
    EditError,
    InvalidTransitionError,
    BackendError,
    UnknownAgentError,
    SourceError,
)


class Gateway:
    def __init__(
        self,
        *,
        router: Router,
        services: Services,
        notifier: Notifier | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:8],
        observe: Observer | None = None,
    ) -> None:
        self.router = router
        self.services = services
        self.notifier = notifier
        self.observe = observe
        self._new_id = new_id

    def handle(self, event: ChatEvent) -> Reply:
        """One message in, one reply out; afterwards in-flight proposals move and are announced."""
        started = time.perf_counter()
        with self.services.lock:
            try:
                reply = self._handle(event)
                outcome = "refused" if reply.error else "ok"
            except Exception:
                reply = self._apology(event)
                outcome = "error"
        if self.observe is not None:
            self.observe(self._command_name(event.text), outcome, time.perf_counter() - started)
        return reply

    def _command_name(self, text: str) -> str:
        """The command's own name, or `unknown`: a label that typos cannot multiply."""
        try:
            name, _ = parse(text)
        except UsageError:
            return "unknown"
        command = self.router.get(name)
        return command.name if command is not None else "unknown"

    def dispatch(self, event: ChatEvent, send: Callable[[Reply], object]) -> None:
        """Reply first, then move in-flight proposals so their announcements follow the reply."""
        send(self.handle(event))
        self.tick()

    def tick(self) -> None:
        """Drive in-flight proposals and send what they announce; never raises."""
        with self.services.lock:
            try:
                self.services.engine.reconcile()
            except Exception:
                log.exception("reconcile failed; will retry on the next tick")
            if self.notifier is not None:
                try:
                    self.services.engine.deliver(self.notifier)
                except Exception:
                    log.exception("delivering announcements failed; will retry on the next tick")

    def _handle(self, event: ChatEvent) -> Reply:
        text = event.text
        if "\ufffd" in text:
            return _error("That message has bytes that are not UTF-8 text; it was ignored.")
        if len(text) > MAX_MESSAGE_CHARS:
            return _error(
                f"That message is {len(text)} characters long; commands are at most "
                f"{MAX_MESSAGE_CHARS}. Nothing was done."
            )
        if not text.strip():
            return Reply(text="Type /help to see the commands you may run.")
        principal = self.services.speakers.get(event.channel, event.principal)
        actor = self.services.directory.resolve(principal)
        if actor is None:
            self.services.engine.audit_denial(
                actor=principal, action="command", subject="-", reason="unknown identity"
            )
            return _error(
                f"I don't know {principal}. Ask an admin to add you to config/users.yaml."
            )
        try:
            name, args = parse(text)
            command = self.router.get(name)
            if command is None or (command.demo_only and not self.services.demo):
                suggestion = self.router.suggest(name, demo=self.services.demo)
                hint = f" Did you mean /{suggestion}?" if suggestion else ""
                return _error(f"There is no /{name} command.{hint} Type /help for the list.")
            if not actor.has(command.role):
                reason = f"/{name} needs the {command.role} role; you are a {actor.top_role}"
                self.services.engine.audit_denial(
                    actor=actor.name, action=name, subject=" ".join(args[:1]) or "-", reason=reason
                )
                return _error(f"Not allowed: {reason}.")
            places = self.services.command_channels.get(command.name)
            here = f"{event.platform}:{event.channel}"
            if places is not None and here not in places:
                reason = f"/{command.name} may only be used in {', '.join(sorted(places))}"
                self.services.engine.audit_denial(
                    actor=actor.name, action=name, subject=here, reason=reason
                )
                return _error(f"Not allowed here: {reason}.")
            return command.handler(
                Context(event=event, actor=actor, args=args, services=self.services)
            )
        except CommandError as e:
            return _error(str(e))
        except PolicyDeniedError as e:
            return _error(f"Not allowed: {e}.")
        except SourceUnavailableError as e:
            return _error(f"{e}. Showing nothing rather than stale numbers; try again shortly.")
        except SAFE_ERRORS as e:
            return _error(str(e))

    def _apology(self, event: ChatEvent) -> Reply:
        correlation = self._new_id()
        log.exception("command failed [%s] from %s: %r", correlation, event.principal, event.text)
        return _error(
            f"Sorry, something went wrong on our side (reference {correlation}). "
            "Nothing was changed by the failed step; the details are in opsgate's log."
        )


def _error(text: str) -> Reply:
    return Reply(text=text, error=True)
