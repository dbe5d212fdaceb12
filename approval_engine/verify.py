"""After the apply: watch each applied change's SLOs for `verify_window`, then say what it did.

Every applied proposal gets a row in the store (so a restart resumes the watch), due one
window after its apply. When it is due, each SLO check of its target (targets.yaml `slo:`,
approval_engine.slo) compares the window after the apply with the window before it:

- all healthy: "verified";
- any degraded: "degraded", and a revert is opened (approval_engine.rollback), retried each
  minute while something (a lock) holds it back;
- otherwise (no data, a signal above its max before the change already, the metrics source
  down until a second window has passed, another change to the same target inside the
  window): "could not verify", and nothing more.

Reverts themselves, and targets without checks, are not watched. Each verdict is audited and
announced through the outbox like a state change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from approval_engine import audit
from approval_engine import store as db
from approval_engine.config import format_duration
from approval_engine.errors import ApprovalError, PolicyDeniedError, TemporaryBackendError
from approval_engine.model import State
from approval_engine.rollback import OPSGATE
from approval_engine.slo import Reading, SignalMeter, read, verdict

if TYPE_CHECKING:
    from approval_engine.engine import Engine

__all__ = ["Verification", "Verifier"]

log = logging.getLogger(__name__)

RETRY_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Verification:
    """One watch as the store has it: watching, verified, degraded, unverified, stopped (its
    proposal left `applied` first) or skipped (reverts, targets without checks)."""

    proposal_id: str
    status: str
    due_at: datetime
    readings: tuple[Reading, ...]
    note: str
    revert_id: str | None

    @classmethod
    def of(cls, row: db.VerificationRow) -> Verification:
        return cls(
            proposal_id=row.proposal_id,
            status=row.status,
            due_at=row.due_at,
            readings=tuple(Reading.from_dict(r) for r in row.readings),
            note=row.note,
            revert_id=row.revert_id,
        )


class Verifier:
    """Watches nothing until `watch_with` gives it a meter (the composition root does)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.meter: SignalMeter | None = None
        self._window: timedelta | None = None

    def watch_with(self, meter: SignalMeter, *, window: timedelta | None = None) -> None:
        """Measure SLO signals with `meter`, over `window` (default: policy's verify_window)."""
        self.meter = meter
        self._window = window

    @property
    def window(self) -> timedelta:
        return self._window or self.engine.policy.config.verify_window

    def get(self, proposal_id: str) -> Verification | None:
        with self.engine.store.transaction() as session:
            row = session.get(db.VerificationRow, proposal_id)
            return None if row is None else Verification.of(row)

    def tick(self) -> None:
        """Start watching what was applied, conclude what is due, retry pending reverts.

        Never raises: a failure is logged and the next tick tries again.
        """
        if self.meter is None:
            return
        try:
            self._register()
        except Exception:
            log.exception("registering applied proposals for verification failed")
        now = self.engine.clock()
        with self.engine.store.transaction() as session:
            due = session.scalars(
                select(db.VerificationRow.proposal_id)
                .where(db.VerificationRow.status == "watching", db.VerificationRow.due_at <= now)
                .order_by(db.VerificationRow.due_at)
            ).all()
            pending = session.scalars(
                select(db.VerificationRow.proposal_id).where(
                    db.VerificationRow.status == "degraded",
                    db.VerificationRow.revert_id.is_(None),
                    db.VerificationRow.revert_problem.is_(None),
                )
            ).all()
        for proposal_id in due:
            try:
                self._conclude(proposal_id, now)
            except Exception:
                log.exception("verifying %s failed; will retry", proposal_id)
        for proposal_id in pending:
            try:
                self._revert(proposal_id, now, first=False)
            except Exception:
                log.exception("opening the revert of %s failed; will retry", proposal_id)

    # --- watching -------------------------------------------------------------------------

    def _register(self) -> None:
        """A row for each proposal applied within the last two windows that has none yet."""
        engine = self.engine
        now = engine.clock()
        window = self.window
        with engine.store.transaction() as session:
            watched = select(db.VerificationRow.proposal_id)
            rows = session.scalars(
                select(db.ProposalRow).where(
                    db.ProposalRow.state == State.APPLIED.value,
                    db.ProposalRow.state_since >= now - 2 * window,
                    db.ProposalRow.id.not_in(watched),
                )
            ).all()
            for row in rows:
                note = ""
                try:
                    checks = engine.targets.slo(row.service)
                except ApprovalError as e:  # the service left targets.yaml since
                    checks, note = {}, str(e)
                if row.reverts is not None:
                    note = f"a revert of {row.reverts}; reverts are not watched"
                elif not checks:
                    note = note or f"{row.service} has no SLO checks in targets.yaml"
                # Whole minutes: metrics have a minute's resolution at best, and the minute of
                # the apply would otherwise count as "before" in part.
                applied_at = row.state_since.replace(second=0, microsecond=0)
                session.add(
                    db.VerificationRow(
                        proposal_id=row.id,
                        service=row.service,
                        env=row.env,
                        applied_at=applied_at,
                        due_at=applied_at + window,
                        give_up_at=applied_at + 2 * window,
                        status="skipped" if note else "watching",
                        readings=[],
                        note=note,
                    )
                )

    def _conclude(self, proposal_id: str, now: datetime) -> None:
        engine = self.engine
        with engine.store.transaction() as session:
            row = session.get(db.VerificationRow, proposal_id)
            assert row is not None
            service, env, applied_at, due_at = row.service, row.env, row.applied_at, row.due_at
            give_up_at = row.give_up_at
            later = session.scalar(
                select(db.VerificationRow.proposal_id)
                .where(
                    db.VerificationRow.service == service,
                    db.VerificationRow.env == env,
                    db.VerificationRow.applied_at > applied_at,
                    db.VerificationRow.applied_at < due_at,
                )
                .order_by(db.VerificationRow.applied_at)
                .limit(1)
            )
        proposal = engine.get(proposal_id)
        target = f"{service}/{env}"
        if proposal.state != State.APPLIED:
            with engine.store.transaction() as session:
                self._finish(session, proposal_id, "stopped", [], note=proposal.state.value)
            return
        if later is not None:
            self._record(
                proposal_id,
                "unverified",
                [],
                note=f"{later} changed {target} inside the window, so what came after is not "
                f"{proposal_id}'s alone",
                now=now,
            )
            return
        assert self.meter is not None
        try:
            readings = read(
                self.meter,
                engine.targets.slo(service),
                service,
                env,
                applied_at=applied_at,
                window_end=due_at,
            )
        except Exception as e:
            if now < give_up_at:
                log.warning("%s: cannot read its SLO signals yet, will retry: %s", proposal_id, e)
                return
            self._record(
                proposal_id, "unverified", [], note=f"the metrics source failed: {e}", now=now
            )
            return
        result = verdict(readings)
        self._record(proposal_id, result, readings, note="", now=now)
        if result == "degraded":
            self._revert(proposal_id, now, first=True)

    def _record(
        self, proposal_id: str, status: str, readings: list[Reading], *, note: str, now: datetime
    ) -> None:
        """Store, audit and announce a verdict, in one transaction."""
        engine = self.engine
        with engine.store.transaction() as session:
            row = self._finish(session, proposal_id, status, readings, note=note)
            target = f"{row.service}/{row.env}"
            window = format_duration(row.due_at - row.applied_at)
            if status == "verified":
                text = (
                    f"{proposal_id} verified: {target} held its SLOs in the {window} after the "
                    f"change ({'; '.join(r.why for r in readings)})"
                )
            elif status == "degraded":
                bad = [r.why for r in readings if r.status == "degraded"]
                text = (
                    f"{proposal_id} degraded {target} in the {window} after it was applied, "
                    f"compared with the {window} before: {'; '.join(bad)}. Opening a revert."
                )
            else:
                why = note or "; ".join(r.why for r in readings if r.status != "ok")
                text = (
                    f"{proposal_id} could not be verified: {why}. It stays applied; check "
                    f"{target} by hand."
                )
            audit.record(
                session,
                at=now,
                actor="opsgate",
                action=status,
                subject=proposal_id,
                detail={
                    "window": window,
                    "readings": [r.as_dict() for r in readings],
                    **({"note": note} if note else {}),
                },
            )
            db.enqueue(
                session,
                dedupe_key=f"{proposal_id}:verify:{status}",
                kind=status,
                text=text,
                proposal_id=proposal_id,
                at=now,
            )

    def _finish(
        self,
        session: Session,
        proposal_id: str,
        status: str,
        readings: list[Reading],
        *,
        note: str,
    ) -> db.VerificationRow:
        row = session.get(db.VerificationRow, proposal_id)
        assert row is not None
        row.status = status
        row.readings = [r.as_dict() for r in readings]
        row.note = note
        row.checked_at = self.engine.clock()
        return row

    # --- reverting ------------------------------------------------------------------------

    def _revert(self, proposal_id: str, now: datetime, *, first: bool) -> None:
        """Open the revert of a degraded change; a refusal that may pass is retried later."""
        engine = self.engine
        with engine.store.transaction() as session:
            row = session.get(db.VerificationRow, proposal_id)
            assert row is not None
            if not first and row.checked_at is not None and now - row.checked_at < RETRY_EVERY:
                return
            row.checked_at = now
            readings = [Reading.from_dict(r) for r in row.readings]
            window = format_duration(row.due_at - row.applied_at)
            applied_at = row.applied_at
            give_up = row.due_at + engine.policy.config.proposal_ttl
        if engine.get(proposal_id).state != State.APPLIED:
            self._revert_done(proposal_id, problem="no longer applied", now=now)
            return
        bad = "; ".join(r.why for r in readings if r.status == "degraded")
        why = (
            f"it degraded the target in the {window} after it was applied at "
            f"{applied_at:%H:%M} UTC, compared with the {window} before: {bad}."
        )
        try:
            outcome = engine.rollbacks.request(
                proposal_id, actor=OPSGATE, why=why, evidence=[r.why for r in readings]
            )
        except (PolicyDeniedError, TemporaryBackendError) as e:
            if now >= give_up:
                self._revert_done(proposal_id, problem=f"gave up: {e}", now=now, say=True)
                return
            with engine.store.transaction() as session:
                db.enqueue(
                    session,
                    dedupe_key=f"{proposal_id}:revert-waits",
                    kind="revert_waits",
                    text=f"The revert of {proposal_id} waits: {e}. opsgate tries again every "
                    f"minute; /rollback {proposal_id} asks for it by hand.",
                    proposal_id=proposal_id,
                    at=now,
                )
            return
        except ApprovalError as e:
            self._revert_done(proposal_id, problem=str(e), now=now, say=True)
            return
        if outcome.proposal is None:
            self._revert_done(proposal_id, problem=outcome.message, now=now, say=True)
            return
        with engine.store.transaction() as session:
            row = session.get(db.VerificationRow, proposal_id)
            assert row is not None
            row.revert_id = outcome.proposal.id

    def _revert_done(
        self, proposal_id: str, *, problem: str, now: datetime, say: bool = False
    ) -> None:
        """No revert will be opened automatically; say why once (refusals are audited where
        they are decided)."""
        with self.engine.store.transaction() as session:
            row = session.get(db.VerificationRow, proposal_id)
            assert row is not None
            row.revert_problem = problem
            if say:
                db.enqueue(
                    session,
                    dedupe_key=f"{proposal_id}:revert-problem",
                    kind="revert_failed",
                    text=f"No revert of {proposal_id} was opened: {problem}",
                    proposal_id=proposal_id,
                    at=now,
                )
