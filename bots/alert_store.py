"""Every alert Alertmanager sent, stored before it is acknowledged; what each chat was told.

Reads and writes the tables of bots/alert_tables.py; every method is one transaction.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bots.alert_payload import WebhookPayload
from bots.alert_tables import (
    MUTED,
    PENDING,
    AlertRow,
    Base,
    GroupInfo,
    GroupRow,
    Ingested,
    LeaseRow,
    MessageRef,
    MessageRow,
    NoticeRow,
    Routing,
    Shown,
    StoredAlert,
    Unit,
    newer_key,
    to_info,
    to_stored,
    writer_engine,
)

__all__ = ["AlertStore"]


class AlertStore:
    """Creates its tables on an existing SQLAlchemy engine; every call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self._owned = writer_engine(engine)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        if self._owned:
            self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # --- receiving ----------------------------------------------------------------------

    def ingest(self, payload: WebhookPayload, *, at: datetime) -> Ingested:
        """Store the group and every alert not stored yet, in one transaction.

        Two replicas storing the same retry at once: one commits, the other's unique
        constraint fails and its second attempt finds everything stored.
        """
        try:
            return self._ingest(payload, at=at)
        except IntegrityError:
            return self._ingest(payload, at=at)

    def _ingest(self, payload: WebhookPayload, *, at: datetime) -> Ingested:
        with self.transaction() as session:
            group_id = self._group(session, payload, at=at)
            wanted: dict[tuple[str, str, datetime], dict[str, Any]] = {}
            for alert in payload.alerts:
                wanted.setdefault(
                    (alert.fingerprint, alert.status, alert.starts_at),
                    {
                        "group_id": group_id,
                        "fingerprint": alert.fingerprint,
                        "status": alert.status,
                        "starts_at": alert.starts_at,
                        "ends_at": alert.ends_at,
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "generator_url": alert.generator_url,
                        "received_at": at,
                        "routed": False,
                    },
                )
            existing: set[tuple[str, str, datetime]] = set()
            prints = sorted({key[0] for key in wanted})
            for start in range(0, len(prints), 500):  # bound the size of one IN (…)
                existing.update(
                    session.execute(
                        select(AlertRow.fingerprint, AlertRow.status, AlertRow.starts_at).where(
                            AlertRow.fingerprint.in_(prints[start : start + 500])
                        )
                    )
                )
            fresh = [row for key, row in wanted.items() if key not in existing]
            if fresh:
                session.execute(insert(AlertRow), fresh)
            repeated = Counter[str](a.status for a in payload.alerts) - Counter(
                r["status"] for r in fresh
            )
            return Ingested(group_id, new=len(fresh), repeated=dict(repeated))

    def _group(self, session: Session, payload: WebhookPayload, *, at: datetime) -> int:
        key_hash = hashlib.sha256(payload.group_key.encode()).hexdigest()
        row = session.scalars(select(GroupRow).where(GroupRow.key_hash == key_hash)).one_or_none()
        if row is None:
            row = GroupRow(
                key_hash=key_hash,
                group_key=payload.group_key,
                receiver=payload.receiver,
                group_labels=payload.group_labels,
                common_labels=payload.common_labels,
                external_url=payload.external_url,
                created_at=at,
            )
            session.add(row)
            session.flush()
        elif row.common_labels != payload.common_labels:
            row.common_labels = payload.common_labels  # alerts joined or left the group
        return row.id

    # --- routing ------------------------------------------------------------------------

    def unrouted(self, *, limit: int) -> list[StoredAlert]:
        with self.transaction() as session:
            rows = session.scalars(
                select(AlertRow)
                .where(AlertRow.routed.is_(False))
                .order_by(AlertRow.id)
                .limit(limit)
            )
            return [to_stored(row) for row in rows]

    def record_routing(self, decisions: Sequence[Routing], *, at: datetime) -> None:
        """The notices of each alert and its `routed` mark, together."""
        if not decisions:
            return
        with self.transaction() as session:
            rows = [
                {
                    "alert_id": d.alert_id,
                    "group_id": d.group_id,
                    "destination": destination,
                    "state": state,
                    "updated_at": at,
                }
                for d in decisions
                for destination, state in d.states.items()
            ]
            if rows:
                session.execute(insert(NoticeRow), rows)
            ids = [d.alert_id for d in decisions]
            for start in range(0, len(ids), 500):
                session.execute(
                    update(AlertRow)
                    .where(AlertRow.id.in_(ids[start : start + 500]))
                    .values(routed=True)
                )

    # --- sending ------------------------------------------------------------------------

    def units(self, destination: str) -> list[Unit]:
        """The groups this destination owes an update, oldest pending notice first."""
        with self.transaction() as session:
            pending: dict[int, list[int]] = {}
            for notice_id, group_id in session.execute(
                select(NoticeRow.id, NoticeRow.group_id)
                .where(NoticeRow.destination == destination, NoticeRow.state == PENDING)
                .order_by(NoticeRow.id)
            ):
                pending.setdefault(group_id, []).append(notice_id)
            messages = {
                row.group_id: MessageRef(row.message_id, tuple(row.lines), row.stale)
                for row in session.scalars(
                    select(MessageRow).where(MessageRow.destination == destination)
                )
            }
        units = [Unit(g, tuple(ids), messages.get(g)) for g, ids in pending.items()]
        units += [
            Unit(g, (), m) for g, m in sorted(messages.items()) if m.stale and g not in pending
        ]
        return units

    def group(self, group_id: int) -> GroupInfo:
        with self.transaction() as session:
            row = session.get(GroupRow, group_id)
            if row is None:
                raise KeyError(group_id)
            return to_info(row)

    def shown(self, group_id: int, destination: str) -> list[StoredAlert]:
        """The group's alerts this destination was told of (or owes), each in its latest state."""
        with self.transaction() as session:
            rows = session.scalars(
                select(AlertRow)
                .join(NoticeRow, NoticeRow.alert_id == AlertRow.id)
                .where(
                    AlertRow.group_id == group_id,
                    NoticeRow.destination == destination,
                    NoticeRow.state != MUTED,
                )
            )
            latest: dict[str, AlertRow] = {}
            for row in rows:
                seen = latest.get(row.fingerprint)
                if seen is None or newer_key(row) > newer_key(seen):
                    latest[row.fingerprint] = row
            return sorted(
                (to_stored(r) for r in latest.values()), key=lambda a: (a.starts_at, a.id)
            )

    def alerts_of(self, notice_ids: Iterable[int]) -> list[StoredAlert]:
        ids = list(notice_ids)
        with self.transaction() as session:
            found: list[StoredAlert] = []
            for start in range(0, len(ids), 500):
                rows = session.scalars(
                    select(AlertRow)
                    .join(NoticeRow, NoticeRow.alert_id == AlertRow.id)
                    .where(NoticeRow.id.in_(ids[start : start + 500]))
                    .order_by(AlertRow.id)
                )
                found.extend(to_stored(r) for r in rows)
            return found

    def pending(self, destination: str) -> list[tuple[int, StoredAlert]]:
        """Every pending notice of the destination with its alert, oldest first."""
        with self.transaction() as session:
            rows = session.execute(
                select(NoticeRow.id, AlertRow)
                .join(AlertRow, NoticeRow.alert_id == AlertRow.id)
                .where(NoticeRow.destination == destination, NoticeRow.state == PENDING)
                .order_by(NoticeRow.id)
            )
            return [(notice_id, to_stored(row)) for notice_id, row in rows]

    def settle(
        self,
        notice_ids: Sequence[int],
        state: str,
        *,
        at: datetime,
        message: Shown | None = None,
    ) -> None:
        """Mark notices sent or folded; with `message`, remember the message that shows the
        group there, stale only if the group was acked after it was rendered."""
        with self.transaction() as session:
            for start in range(0, len(notice_ids), 500):
                session.execute(
                    update(NoticeRow)
                    .where(
                        NoticeRow.id.in_(notice_ids[start : start + 500]),
                        NoticeRow.state == PENDING,
                    )
                    .values(state=state, updated_at=at)
                )
            if message is not None:
                group = session.get(GroupRow, message.group_id)
                stale = group is not None and group.acked_by != message.acked_by
                row = session.scalars(
                    select(MessageRow).where(
                        MessageRow.group_id == message.group_id,
                        MessageRow.destination == message.destination,
                    )
                ).one_or_none()
                if row is None:
                    session.add(
                        MessageRow(
                            group_id=message.group_id,
                            destination=message.destination,
                            message_id=message.message_id,
                            lines=list(message.lines),
                            stale=stale,
                            posted_at=at,
                        )
                    )
                else:
                    row.message_id, row.stale = message.message_id, stale

    # --- acks ---------------------------------------------------------------------------

    def ack(self, session: Session, group_id: int, *, by: str, at: datetime) -> GroupInfo:
        """Record the ack in the caller's transaction (it audits there too); messages go stale."""
        row = session.get(GroupRow, group_id, with_for_update=True)
        if row is None:
            raise KeyError(group_id)
        if row.acked_by is None:
            row.acked_by, row.acked_at = by, at
            session.execute(
                update(MessageRow).where(MessageRow.group_id == group_id).values(stale=True)
            )
        return to_info(row)

    # --- leases -------------------------------------------------------------------------

    def lease(self, name: str, *, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Hold `name` until now + ttl if nobody else holds it; True when this owner does."""
        try:
            with self.transaction() as session:
                row = session.get(LeaseRow, name, with_for_update=True)
                if row is None:
                    session.add(LeaseRow(name=name, owner=owner, until=now + ttl))
                    return True
                if row.owner != owner and row.until > now:
                    return False
                row.owner, row.until = owner, now + ttl
                return True
        except IntegrityError:  # another replica took it first
            return False

    # --- reading ------------------------------------------------------------------------

    def alerts(self, *, status: str | None = None, limit: int | None = None) -> list[StoredAlert]:
        """Stored alerts, newest first."""
        with self.transaction() as session:
            query = select(AlertRow).order_by(AlertRow.id.desc())
            if status is not None:
                query = query.where(AlertRow.status == status)
            if limit is not None:
                query = query.limit(limit)
            return [to_stored(row) for row in session.scalars(query)]

    def latest(self, fingerprint: str) -> StoredAlert | None:
        """The newest stored alert with this fingerprint, firing or resolved."""
        with self.transaction() as session:
            query = (
                select(AlertRow)
                .where(AlertRow.fingerprint == fingerprint)
                .order_by(AlertRow.id.desc())
                .limit(1)
            )
            row = session.scalars(query).first()
            return to_stored(row) if row is not None else None

    def count(self) -> int:
        with self.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(AlertRow)) or 0)

    def notice_counts(self) -> dict[tuple[str, str], int]:
        """(destination, state) → notices."""
        with self.transaction() as session:
            rows = session.execute(
                select(NoticeRow.destination, NoticeRow.state, func.count()).group_by(
                    NoticeRow.destination, NoticeRow.state
                )
            )
            return {(d, s): int(n) for d, s, n in rows}

    def backlog(self) -> tuple[int, dict[str, int]]:
        """Alerts not routed yet, and pending notices by destination."""
        with self.transaction() as session:
            unrouted = session.scalar(
                select(func.count()).select_from(AlertRow).where(AlertRow.routed.is_(False))
            )
            pending = session.execute(
                select(NoticeRow.destination, func.count())
                .where(NoticeRow.state == PENDING)
                .group_by(NoticeRow.destination)
            )
            return int(unrouted or 0), {d: int(n) for d, n in pending}

    def deliveries(self, alert_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        """alert id → (destination, state) of each notice."""
        found: dict[int, list[tuple[str, str]]] = {}
        with self.transaction() as session:
            for start in range(0, len(alert_ids), 500):
                rows = session.execute(
                    select(NoticeRow.alert_id, NoticeRow.destination, NoticeRow.state)
                    .where(NoticeRow.alert_id.in_(alert_ids[start : start + 500]))
                    .order_by(NoticeRow.id)
                )
                for alert_id, destination, state in rows:
                    found.setdefault(alert_id, []).append((destination, state))
        return found
