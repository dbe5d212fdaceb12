"""The alert tables and the values read from them; bots/alert_store.py works on them.

They live on the runtime's database (like bots/chat_store.py), so that a restart or another
replica carries on where this one stopped:

- `alert_groups`: one row per Alertmanager group (its groupKey), with who acked it;
- `alerts`: one row per (fingerprint, status, startsAt): a retry or a repeat adds nothing;
- `alert_notices`: one row per alert and destination, `pending` until it is `sent`, `folded`
  into a digest, or `muted` by a route's mute window;
- `alert_messages`: the chat message that shows a group at a destination, edited as it changes;
- `alert_leases`: which replica routes, and which one sends to each destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from approval_engine.sqltypes import UTCDateTime

__all__ = [
    "FOLDED",
    "MUTED",
    "PENDING",
    "SENT",
    "GroupInfo",
    "Ingested",
    "MessageRef",
    "Routing",
    "Shown",
    "StoredAlert",
    "Unit",
]

PENDING, SENT, FOLDED, MUTED = "pending", "sent", "folded", "muted"


class Base(DeclarativeBase):
    pass


class GroupRow(Base):
    __tablename__ = "alert_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(256))
    group_labels: Mapped[dict[str, str]] = mapped_column(JSON)
    common_labels: Mapped[dict[str, str]] = mapped_column(JSON)
    external_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("fingerprint", "status", "starts_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(Integer, index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    generator_url: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    routed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class NoticeRow(Base):
    __tablename__ = "alert_notices"
    __table_args__ = (
        UniqueConstraint("alert_id", "destination"),
        Index("ix_alert_notices_destination_state", "destination", "state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Integer)
    group_id: Mapped[int] = mapped_column(Integer, index=True)
    destination: Mapped[str] = mapped_column(String(160))
    state: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageRow(Base):
    __tablename__ = "alert_messages"
    __table_args__ = (UniqueConstraint("group_id", "destination"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(Integer)
    destination: Mapped[str] = mapped_column(String(160), index=True)
    message_id: Mapped[str] = mapped_column(String(64))
    lines: Mapped[list[str]] = mapped_column(JSON)  # the enrichment shown since the first post
    stale: Mapped[bool] = mapped_column(Boolean, default=False)  # re-render (an ack)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LeaseRow(Base):
    __tablename__ = "alert_leases"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class StoredAlert:
    id: int
    group_id: int
    fingerprint: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    received_at: datetime


@dataclass(frozen=True)
class GroupInfo:
    id: int
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    external_url: str
    acked_by: str | None
    acked_at: datetime | None


@dataclass(frozen=True)
class Ingested:
    group_id: int
    new: int
    repeated: dict[str, int]  # status → alerts stored before (retries, repeats, duplicates)


@dataclass(frozen=True)
class Unit:
    """What one destination owes one group: pending notices, or a re-render."""

    group_id: int
    notice_ids: tuple[int, ...]
    message: MessageRef | None


@dataclass(frozen=True)
class MessageRef:
    message_id: str
    lines: tuple[str, ...]
    stale: bool


@dataclass(frozen=True)
class Shown:
    """The message that shows a group at a destination, and the ack it was rendered with."""

    group_id: int
    destination: str
    message_id: str
    lines: tuple[str, ...]
    acked_by: str | None


@dataclass
class Routing:
    """The routing decided for one alert: notice states by destination."""

    alert_id: int
    group_id: int
    states: dict[str, str] = field(default_factory=dict)


def to_stored(row: AlertRow) -> StoredAlert:
    return StoredAlert(
        id=row.id,
        group_id=row.group_id,
        fingerprint=row.fingerprint,
        status=row.status,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        labels=dict(row.labels),
        annotations=dict(row.annotations),
        generator_url=row.generator_url,
        received_at=row.received_at,
    )


def writer_engine(engine: Engine) -> tuple[Engine, bool]:
    """On a SQLite file, an engine of our own whose transactions begin IMMEDIATE.

    The webhook, the router and the senders write at once; a deferred SQLite transaction that
    read first cannot take the write lock another one holds and fails at once, while BEGIN
    IMMEDIATE waits for it (busy_timeout). Other databases share the runtime's engine.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine, False
    own = create_engine(url)

    @event.listens_for(own, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event starts them
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(own, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return own, True


def newer_key(row: AlertRow) -> tuple[datetime, bool, int]:
    """Later start first; at one start, resolved is newer than firing."""
    return (row.starts_at, row.status == "resolved", row.id)


def to_info(row: GroupRow) -> GroupInfo:
    return GroupInfo(
        id=row.id,
        group_labels=dict(row.group_labels),
        common_labels=dict(row.common_labels),
        external_url=row.external_url,
        acked_by=row.acked_by,
        acked_at=row.acked_at,
    )
