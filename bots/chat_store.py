"""The chat edge's own tables: posted cards, delivered announcements, buttons, seen events.

They live in the runtime's database so that a restart (or another replica) edits the same
cards, never announces twice, resolves buttons pressed before it, and drops Slack's retries.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from approval_engine.sqltypes import UTCDateTime

__all__ = ["Card", "ChatStore"]


class _Base(DeclarativeBase):
    pass


class CardRow(_Base):
    """A message that shows a proposal; later states of the proposal edit it."""

    __tablename__ = "chat_cards"
    __table_args__ = (UniqueConstraint("proposal_id", "platform", "channel"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    proposal_id: Mapped[str] = mapped_column(String(64), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeliveryRow(_Base):
    """One announcement reached one destination; a retry skips it there."""

    __tablename__ = "chat_deliveries"
    announcement_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(160), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ButtonRow(_Base):
    """What a button types, behind a short random id (Telegram's callback_data is 64 bytes)."""

    __tablename__ = "chat_buttons"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(128))
    command: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SeenRow(_Base):
    """A platform event already handled (Slack retries an event it thinks was not acked)."""

    __tablename__ = "chat_seen_events"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


@dataclass(frozen=True)
class Card:
    proposal_id: str
    platform: str
    channel: str
    message_id: str


class ChatStore:
    """Creates its tables on an existing SQLAlchemy engine; every call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        _Base.metadata.create_all(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # --- cards ----------------------------------------------------------------------------

    def add_card(self, card: Card, *, at: datetime) -> None:
        """Remember a posted card; a newer card of the proposal in the same channel replaces it."""
        with self._transaction() as session:
            row = session.scalars(
                select(CardRow).where(
                    CardRow.proposal_id == card.proposal_id,
                    CardRow.platform == card.platform,
                    CardRow.channel == card.channel,
                )
            ).one_or_none()
            if row is None:
                session.add(
                    CardRow(
                        proposal_id=card.proposal_id,
                        platform=card.platform,
                        channel=card.channel,
                        message_id=card.message_id,
                        created_at=at,
                    )
                )
            else:
                row.message_id, row.created_at = card.message_id, at

    def cards(self, proposal_id: str) -> list[Card]:
        with self._transaction() as session:
            rows = session.scalars(
                select(CardRow).where(CardRow.proposal_id == proposal_id).order_by(CardRow.id)
            )
            return [Card(r.proposal_id, r.platform, r.channel, r.message_id) for r in rows]

    # --- deliveries -----------------------------------------------------------------------

    def delivered(self, announcement_id: int, destination: str) -> bool:
        with self._transaction() as session:
            return session.get(DeliveryRow, (announcement_id, destination)) is not None

    def mark_delivered(self, announcement_id: int, destination: str, *, at: datetime) -> None:
        with self._transaction() as session:
            if session.get(DeliveryRow, (announcement_id, destination)) is None:
                session.add(
                    DeliveryRow(announcement_id=announcement_id, destination=destination, at=at)
                )

    # --- buttons --------------------------------------------------------------------------

    def put_button(
        self, *, platform: str, channel: str, command: str, at: datetime, ttl: timedelta
    ) -> str:
        key = "b:" + secrets.token_urlsafe(12)  # 18 ASCII bytes, far below 64
        with self._transaction() as session:
            session.execute(delete(ButtonRow).where(ButtonRow.expires_at < at))
            session.add(
                ButtonRow(
                    id=key, platform=platform, channel=channel, command=command, expires_at=at + ttl
                )
            )
        return key

    def button(self, key: str, *, platform: str, channel: str, at: datetime) -> str | None:
        """The command behind `key`, only in the chat it was posted to and before it expires."""
        with self._transaction() as session:
            row = session.get(ButtonRow, key)
            if row is None or (row.platform, row.channel) != (platform, channel):
                return None
            return row.command if row.expires_at >= at else None

    # --- seen events ----------------------------------------------------------------------

    def first_time(self, key: str, *, at: datetime, keep: timedelta = timedelta(days=1)) -> bool:
        """True the first time `key` is seen (within `keep`); False for a repeat."""
        try:
            with self._transaction() as session:
                session.execute(delete(SeenRow).where(SeenRow.at < at - keep))
                session.add(SeenRow(key=key, at=at))
        except IntegrityError:
            return False
        return True
