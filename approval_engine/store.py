"""The store: proposals, approvals, locks, counters, audit rows and the outbox, in SQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from approval_engine.errors import ApprovalError
from approval_engine.model import Approval, EditedKnob, Proposal, Risk, RiskLevel, State
from approval_engine.sqltypes import UTCDateTime


class Base(DeclarativeBase):
    pass


class ProposalRow(Base):
    __tablename__ = "proposals"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128), index=True)
    env: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(Text)
    rationale: Mapped[str] = mapped_column(Text)
    proposer: Mapped[str] = mapped_column(String(128))
    contributors: Mapped[list[str]] = mapped_column(JSON)
    branch: Mapped[str] = mapped_column(String(255))
    base_sha: Mapped[str] = mapped_column(String(64))
    head_sha: Mapped[str] = mapped_column(String(64))
    diff: Mapped[str] = mapped_column(Text)
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    knobs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    quorum: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state_since: Mapped[datetime] = mapped_column(UTCDateTime)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    risk_level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    risk_reasons: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    evidence: Mapped[list[str]] = mapped_column(JSON)
    merge_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    app: Mapped[str | None] = mapped_column(String(255), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    pending_push: Mapped[bool] = mapped_column(Boolean, default=False)
    pending_close: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    reverts: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class ApprovalRow(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("proposal_id", "approver", "head_sha"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    head_sha: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)


class LockRow(Base):
    """One active proposal per (service, env, knob): the primary key enforces it."""

    __tablename__ = "locks"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id"), index=True)


class CounterRow(Base):
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class AuditRow(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The last row's id and hash, so that cutting rows off the end is noticed too."""

    __tablename__ = "audit_head"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class OutboxRow(Base):
    """A message to announce, written with the change it announces and sent after commit."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    proposal_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class VerificationRow(Base):
    """An applied proposal's SLO watch (approval_engine.verify): due when, and what it found."""

    __tablename__ = "verifications"
    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id"), primary_key=True)
    service: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(64))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # watching | verified | degraded | unverified | stopped | skipped
    status: Mapped[str] = mapped_column(String(16), index=True)
    readings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    revert_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revert_problem: Mapped[str | None] = mapped_column(Text, nullable=True)  # no revert, why
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RebaseRow(Base):
    """A re-render on a moved base whose branch is being written (approval_engine.rebase):
    what the proposal was, so that a restart finishes it the same way."""

    __tablename__ = "rebases"
    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id"), primary_key=True)
    from_base: Mapped[str] = mapped_column(String(64))
    from_head: Mapped[str] = mapped_column(String(64))
    same: Mapped[bool] = mapped_column(Boolean)  # the change is the same: approvals carry over
    what: Mapped[str] = mapped_column(Text)  # what changed, in words for chat
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class BackoffRow(Base):
    """Not before `until`: the PR host rate-limited a proposal's calls, or with key `*` all
    calls (approval_engine.backoff)."""

    __tablename__ = "backoffs"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    host: Mapped[str] = mapped_column(String(64))  # who limits: "GitHub"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    """Opens the database, creates the schema, hands out transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> bool:
        with self._sessions() as session:
            session.execute(select(1))
        return True

    def close(self) -> None:
        self.engine.dispose()


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the columns a database from an older version lacks; returns `table.column` names.

    There are no migrations: a new column is nullable, and old rows read it as None.
    Another replica may add the same column at the same moment; that is not an error.
    """
    added = []
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise ApprovalError(
                    f"the database's table {table.name} has no column {column.name}, which "
                    "cannot be added to existing rows; start from a new data directory"
                )
            quote = engine.dialect.identifier_preparer.quote
            kind = column.type.compile(dialect=engine.dialect)
            statement = f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}"
            try:
                with engine.begin() as connection:
                    connection.execute(text(statement))
            except DBAPIError:
                columns = {c["name"] for c in inspect(engine).get_columns(table.name)}
                if column.name not in columns:
                    raise
            added.append(f"{table.name}.{column.name}")
    return added


# --- row ↔ domain -------------------------------------------------------------------------


def to_proposal(row: ProposalRow, approvals: Sequence[ApprovalRow]) -> Proposal:
    return Proposal(
        id=row.id,
        kind=row.kind,
        service=row.service,
        env=row.env,
        state=State(row.state),
        title=row.title,
        rationale=row.rationale,
        proposer=row.proposer,
        contributors=list(row.contributors),
        branch=row.branch,
        base_sha=row.base_sha,
        head_sha=row.head_sha,
        diff=row.diff,
        files=dict(row.files),
        knobs=[EditedKnob(**k) for k in row.knobs],
        quorum=row.quorum,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        state_since=row.state_since,
        confidence=row.confidence,
        risk=_risk(row),
        evidence=list(row.evidence),
        merge_sha=row.merge_sha,
        app=row.app,
        message=row.message,
        pending_push=row.pending_push,
        pending_close=row.pending_close,
        reverts=row.reverts,
        approvals=[
            Approval(approver=a.approver, head_sha=a.head_sha, at=a.at, role=a.role)
            for a in approvals
        ],
    )


def _risk(row: ProposalRow) -> Risk | None:
    if row.risk_level is None:
        return None  # stored before risk was assessed
    return Risk(level=RiskLevel(row.risk_level), reasons=tuple(row.risk_reasons or ()))


def write_proposal(session: Session, proposal: Proposal) -> None:
    values = {
        "kind": proposal.kind,
        "service": proposal.service,
        "env": proposal.env,
        "state": proposal.state.value,
        "title": proposal.title,
        "rationale": proposal.rationale,
        "proposer": proposal.proposer,
        "contributors": list(proposal.contributors),
        "branch": proposal.branch,
        "base_sha": proposal.base_sha,
        "head_sha": proposal.head_sha,
        "diff": proposal.diff,
        "files": dict(proposal.files),
        "knobs": [vars(k) for k in proposal.knobs],
        "quorum": proposal.quorum,
        "created_at": proposal.created_at,
        "updated_at": proposal.updated_at,
        "expires_at": proposal.expires_at,
        "state_since": proposal.state_since,
        "confidence": proposal.confidence,
        "risk_level": proposal.risk.level.value if proposal.risk is not None else None,
        "risk_reasons": list(proposal.risk.reasons) if proposal.risk is not None else None,
        "evidence": list(proposal.evidence),
        "merge_sha": proposal.merge_sha,
        "app": proposal.app,
        "message": proposal.message,
        "pending_push": proposal.pending_push,
        "pending_close": proposal.pending_close,
        "reverts": proposal.reverts,
    }
    row = session.get(ProposalRow, proposal.id)
    if row is None:
        session.add(ProposalRow(id=proposal.id, **values))
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.flush()


def load_proposal(session: Session, proposal_id: str) -> Proposal | None:
    row = session.get(ProposalRow, proposal_id)
    return None if row is None else to_proposal(row, _approvals(session, proposal_id))


def _approvals(session: Session, proposal_id: str) -> Sequence[ApprovalRow]:
    return session.scalars(
        select(ApprovalRow).where(ApprovalRow.proposal_id == proposal_id).order_by(ApprovalRow.id)
    ).all()


def load_proposals(session: Session, *, states: Sequence[State] | None = None) -> list[Proposal]:
    query = select(ProposalRow).order_by(ProposalRow.created_at, ProposalRow.id)
    if states is not None:
        query = query.where(ProposalRow.state.in_([s.value for s in states]))
    return [to_proposal(row, _approvals(session, row.id)) for row in session.scalars(query)]


def load_pending_closes(session: Session) -> list[Proposal]:
    rows = session.scalars(select(ProposalRow).where(ProposalRow.pending_close.is_(True))).all()
    return [to_proposal(row, ()) for row in rows]


def add_approval(session: Session, proposal_id: str, approval: Approval) -> bool:
    """Record an approval; False when this person already approved this head."""
    existing = session.scalar(
        select(ApprovalRow).where(
            ApprovalRow.proposal_id == proposal_id,
            ApprovalRow.approver == approval.approver,
            ApprovalRow.head_sha == approval.head_sha,
        )
    )
    if existing is not None:
        return False
    session.add(
        ApprovalRow(
            proposal_id=proposal_id,
            approver=approval.approver,
            head_sha=approval.head_sha,
            at=approval.at,
            role=approval.role,
        )
    )
    session.flush()
    return True


def next_number(session: Session, name: str) -> int:
    row = session.get(CounterRow, name, with_for_update=True)
    if row is None:
        row = CounterRow(name=name, value=0)
        session.add(row)
    row.value += 1
    session.flush()
    return row.value


def lock_holder(session: Session, key: str) -> str | None:
    row = session.get(LockRow, key)
    return None if row is None else row.proposal_id


def take_lock(session: Session, key: str, proposal_id: str) -> None:
    session.add(LockRow(key=key, proposal_id=proposal_id))
    session.flush()


def release_locks(session: Session, proposal_id: str) -> None:
    for row in session.scalars(select(LockRow).where(LockRow.proposal_id == proposal_id)).all():
        session.delete(row)
    session.flush()


def enqueue(
    session: Session,
    *,
    dedupe_key: str,
    kind: str,
    text: str,
    proposal_id: str | None,
    at: datetime,
) -> bool:
    """Queue an announcement once; the same dedupe key never queues twice."""
    if session.scalar(select(OutboxRow).where(OutboxRow.dedupe_key == dedupe_key)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(
                OutboxRow(
                    dedupe_key=dedupe_key,
                    kind=kind,
                    text=text,
                    proposal_id=proposal_id,
                    created_at=at,
                )
            )
    except IntegrityError:
        return False
    return True


def pending_outbox(session: Session) -> list[OutboxRow]:
    return list(
        session.scalars(
            select(OutboxRow).where(OutboxRow.delivered_at.is_(None)).order_by(OutboxRow.id)
        ).all()
    )
