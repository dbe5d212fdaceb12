"""The append-only, hash-chained audit log: every decision and denial, and its verification."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approval_engine.store import AuditHeadRow, AuditRow, Store

GENESIS = "0" * 64
_HEAD = "audit"


def _digest(
    *, row_id: int, at: datetime, actor: str, action: str, subject: str, detail: Any, prev: str
) -> str:
    body = json.dumps(
        {
            "id": row_id,
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": detail,
            "prev": prev,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one row in the caller's transaction; it commits with the change it records."""
    head = session.get(AuditHeadRow, _HEAD, with_for_update=True)
    if head is None:
        head = AuditHeadRow(name=_HEAD, last_id=0, last_hash=GENESIS)
        session.add(head)
    row_id = head.last_id + 1
    # Round-trip through JSON so the hash covers exactly what the database will hand back.
    clean = json.loads(json.dumps(detail or {}, default=str))
    # The store keeps UTC; hash what it will hand back, whatever zone the caller used.
    at = at.astimezone(UTC).replace(microsecond=0)
    digest = _digest(
        row_id=row_id,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        detail=clean,
        prev=head.last_hash,
    )
    session.add(
        AuditRow(
            id=row_id,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            detail=clean,
            prev_hash=head.last_hash,
            hash=digest,
        )
    )
    head.last_id = row_id
    head.last_hash = digest
    session.flush()


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    first_bad: int | None = None
    reason: str = ""


def verify(store: Store) -> Verification:
    """Walk the chain; the first row whose id, link or hash does not hold is named."""
    with store.transaction() as session:
        rows = session.scalars(select(AuditRow).order_by(AuditRow.id)).all()
        head = session.get(AuditHeadRow, _HEAD)
        prev = GENESIS
        expected_id = 1
        for row in rows:
            if row.id != expected_id:
                return Verification(
                    ok=False,
                    rows=len(rows),
                    first_bad=expected_id,
                    reason=f"row {expected_id} is missing (next row is {row.id})",
                )
            if row.prev_hash != prev:
                return Verification(
                    ok=False,
                    rows=len(rows),
                    first_bad=row.id,
                    reason=f"row {row.id} does not link to the row before it",
                )
            digest = _digest(
                row_id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                subject=row.subject,
                detail=row.detail,
                prev=row.prev_hash,
            )
            if digest != row.hash:
                return Verification(
                    ok=False,
                    rows=len(rows),
                    first_bad=row.id,
                    reason=f"row {row.id} was changed after it was written",
                )
            prev = row.hash
            expected_id += 1
        last_id = head.last_id if head is not None else 0
        last_hash = head.last_hash if head is not None else GENESIS
        if last_id != len(rows) or last_hash != prev:
            return Verification(
                ok=False,
                rows=len(rows),
                first_bad=len(rows) + 1,
                reason=f"the log ends at row {len(rows)} but row {last_id} was the last written",
            )
        return Verification(ok=True, rows=len(rows))


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


def tail(store: Store, *, limit: int = 20) -> list[Entry]:
    with store.transaction() as session:
        rows = session.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)).all()
        return [
            Entry(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                subject=r.subject,
                detail=dict(r.detail),
            )
            for r in reversed(rows)
        ]
