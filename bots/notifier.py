"""The chat Notifier: proposal cards kept current on every platform, news in their threads.

A proposal's card is a message the bot posted: the reply to `/scale`, or the card posted
to a platform's changes channel when the proposal is announced. Each later announcement
edits every card of the proposal to its current state and replies in the card's thread.
Which announcement reached which card is stored, so a retry after a failure (or a restart)
sends only what is missing. One platform being down holds back neither the other platform
nor the order of what each one is told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from approval_engine.engine import Engine
from approval_engine.errors import PartialDeliveryError, ProposalNotFoundError
from approval_engine.model import Proposal
from approval_engine.notify import Announcement
from bots.chat_store import Card, ChatStore
from bots.commands.proposals import proposal_card
from bots.types import Reply

__all__ = ["CardSurface", "ChatNotifier"]

log = logging.getLogger(__name__)


class CardSurface(Protocol):
    """What a chat adapter offers the notifier; calls block until the platform answered."""

    platform: str

    def post(self, channel: str, reply: Reply, *, thread: str | None = None) -> str:
        """Send `reply` (in `thread` when given); the id of the message a card lives in."""
        ...

    def edit(self, channel: str, message_id: str, reply: Reply) -> None:
        """Replace the message's content and buttons with `reply`."""
        ...


@dataclass(frozen=True)
class _Step:
    destination: str  # platform:channel, the unit of delivery bookkeeping
    run: Callable[[], None]


class ChatNotifier:
    """Implements approval_engine.notify.Notifier for Slack and Telegram."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: ChatStore,
        surfaces: Mapping[str, CardSurface],
        changes_channels: Mapping[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        unknown = set(changes_channels) - set(surfaces)
        if unknown:
            raise ValueError(f"changes channels for platforms without an adapter: {unknown}")
        self._engine = engine
        self._store = store
        self._surfaces = dict(surfaces)
        self._changes = dict(changes_channels)
        self._clock = clock
        # destination → the first announcement it missed; later ones wait so order holds.
        self._stuck: dict[str, int] = {}

    def announce(self, announcement: Announcement) -> None:
        failed: list[str] = []
        number = announcement.id
        for step in self._steps(announcement):
            where = step.destination
            if number is not None and self._store.delivered(number, where):
                continue
            stuck = self._stuck.get(where)
            if number is not None and stuck is not None and stuck < number:
                failed.append(where)  # an earlier announcement must reach it first
                continue
            try:
                step.run()
            except Exception:
                log.exception("announcing %r to %s failed", announcement.text, where)
                failed.append(where)
                if number is not None and stuck is None:
                    self._stuck[where] = number
                continue
            if number is not None:
                self._store.mark_delivered(number, where, at=self._clock())
                if stuck == number:
                    del self._stuck[where]
        if failed:
            raise PartialDeliveryError(f"not delivered to {', '.join(failed)}; will retry")

    def _steps(self, announcement: Announcement) -> list[_Step]:
        if announcement.proposal_id is None:
            news = Reply(text=announcement.text)
            return [
                _Step(f"{platform}:{channel}", _bind_post(self._surfaces[platform], channel, news))
                for platform, channel in self._changes.items()
            ]
        try:
            proposal = self._engine.get(announcement.proposal_id)
        except ProposalNotFoundError:
            log.warning("announcement for unknown proposal %s dropped", announcement.proposal_id)
            return []
        card = proposal_card(proposal)
        cards = self._store.cards(proposal.id)
        steps = [
            _Step(f"{c.platform}:{c.channel}", self._update(c, card, announcement))
            for c in cards
            if c.platform in self._surfaces
        ]
        have = {(c.platform, c.channel) for c in cards}
        for platform, channel in self._changes.items():
            if (platform, channel) not in have:
                steps.append(
                    _Step(
                        f"{platform}:{channel}", self._new_card(proposal, platform, channel, card)
                    )
                )
        return steps

    def _new_card(
        self, proposal: Proposal, platform: str, channel: str, card: Reply
    ) -> Callable[[], None]:
        def run() -> None:
            message_id = self._surfaces[platform].post(channel, card)
            self._store.add_card(Card(proposal.id, platform, channel, message_id), at=self._clock())

        return run

    def _update(self, card: Card, current: Reply, announcement: Announcement) -> Callable[[], None]:
        surface = self._surfaces[card.platform]

        def run() -> None:
            if announcement.kind == "opened":
                return  # the card was posted as the proposal opened: it says so itself
            surface.edit(card.channel, card.message_id, current)
            surface.post(card.channel, Reply(text=announcement.text), thread=card.message_id)

        return run


def _bind_post(surface: CardSurface, channel: str, reply: Reply) -> Callable[[], None]:
    def run() -> None:
        surface.post(channel, reply)

    return run
