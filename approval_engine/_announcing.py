"""Announcing and refusing: deliver the queued announcements, audit every denial."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from approval_engine import audit
from approval_engine import store as db
from approval_engine.errors import PartialDeliveryError, PolicyDeniedError
from approval_engine.notify import Announcement, Notifier
from approval_engine.rbac import Actor

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["allow", "audit_denial", "deliver", "denied"]

log = logging.getLogger("approval_engine.engine")  # the engine logs under one name


def deliver(engine: Engine, notifier: Notifier) -> int:
    sent = 0
    with engine.store.transaction() as session:
        pending = [(r.id, r.kind, r.text, r.proposal_id) for r in db.pending_outbox(session)]
    for row_id, kind, text, proposal_id in pending:
        try:
            notifier.announce(
                Announcement(kind=kind, text=text, proposal_id=proposal_id, id=row_id)
            )
        except PartialDeliveryError as e:
            log.warning("announcement %s only partly sent; will retry: %s", row_id, e)
            continue  # the notifier keeps each destination's order itself
        except Exception:
            log.exception("announcement %s could not be sent; will retry", row_id)
            return sent  # the next ones wait, so that they arrive in order
        with engine.store.transaction() as session:
            row = session.get(db.OutboxRow, row_id)
            if row is not None:
                row.delivered_at = engine.clock()
        sent += 1
    return sent


# --- denials ----------------------------------------------------------------------------


def allow(
    engine: Engine, actor: Actor, action: str, subject: str, check: Callable[[], None]
) -> None:
    try:
        check()
    except PolicyDeniedError as e:
        raise denied(engine, actor, action, subject, str(e)) from e


def denied(
    engine: Engine, actor: Actor, action: str, subject: str, reason: str
) -> PolicyDeniedError:
    with engine.store.transaction() as session:
        return _deny(engine, session, actor, action, subject, reason)


def _deny(
    engine: Engine, session: Session, actor: Actor, action: str, subject: str, reason: str
) -> PolicyDeniedError:
    audit.record(
        session,
        at=engine.clock(),
        actor=actor.name,
        action="denied",
        subject=subject,
        detail={"attempted": action, "reason": reason},
    )
    return PolicyDeniedError(reason)


def audit_denial(engine: Engine, *, actor: str, action: str, subject: str, reason: str) -> None:
    with engine.store.transaction() as session:
        audit.record(
            session,
            at=engine.clock(),
            actor=actor,
            action="denied",
            subject=subject,
            detail={"attempted": action, "reason": reason},
        )
