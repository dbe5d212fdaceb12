"""How the engine reaches people: announcements queued in the store, sent by a Notifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Announcement:
    kind: str  # opened, updated, approval, approved, merged, syncing, applied, failed, …
    text: str
    proposal_id: str | None = None
    id: int | None = None  # the outbox row: a notifier that sends to several places keys on it


class Notifier(Protocol):
    """Implemented by the chat side; raising leaves the announcement queued for the next try."""

    def announce(self, announcement: Announcement) -> None: ...
