"""The agents' own tables: runs, current findings, memory and submissions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from approval_engine.sqltypes import UTCDateTime

__all__ = ["AgentDB", "FindingRow", "MemoryRow", "RunRow", "SubmissionRow"]


class _Base(DeclarativeBase):
    pass


class RunRow(_Base):
    __tablename__ = "agent_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent: Mapped[str] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))  # analyze | optimize
    trigger: Mapped[str] = mapped_column(String(32))  # schedule | chat:<who> | cli
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # running | ok | degraded | failed | timeout
    message: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    proposals: Mapped[list[str]] = mapped_column(JSON, default=list)


class FindingRow(_Base):
    """An agent's current findings: replaced by each successful run, kept for /analysis."""

    __tablename__ = "agent_findings"
    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    service: Mapped[str | None] = mapped_column(String(128), nullable=True)
    env: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)
    change: Mapped[str | None] = mapped_column(Text, nullable=True)
    proposal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class MemoryRow(_Base):
    __tablename__ = "agent_memory"
    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class SubmissionRow(_Base):
    """Each change request an agent handed to the approval engine, for cooldowns and budgets."""

    __tablename__ = "agent_submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), index=True)  # service/env/knob,knob
    wanted: Mapped[str] = mapped_column(Text)  # knob=value, …
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # opened | updated | unchanged | refused
    proposal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class AgentDB:
    """Creates the agents' tables on an existing SQLAlchemy engine and hands out sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _Base.metadata.create_all(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def memory(self, agent: str) -> DBMemory:
        return DBMemory(self, agent)


class DBMemory:
    """AgentMemory backed by agent_memory rows; each call is its own transaction."""

    def __init__(self, db: AgentDB, agent: str) -> None:
        self._db = db
        self._agent = agent

    def get(self, key: str, default: Any = None) -> Any:
        with self._db.transaction() as s:
            row = s.get(MemoryRow, (self._agent, key))
            return default if row is None else row.value

    def put(self, key: str, value: Any) -> None:
        with self._db.transaction() as s:
            row = s.get(MemoryRow, (self._agent, key))
            if row is None:
                s.add(MemoryRow(agent=self._agent, key=key, value=value))
            else:
                row.value = value

    def keys(self, prefix: str = "") -> list[str]:
        with self._db.transaction() as s:
            rows = s.scalars(
                select(MemoryRow.key).where(
                    MemoryRow.agent == self._agent,
                    MemoryRow.key.startswith(prefix, autoescape=True),
                )
            )
            return sorted(rows)

    def delete(self, key: str) -> None:
        with self._db.transaction() as s:
            s.execute(delete(MemoryRow).where(MemoryRow.agent == self._agent, MemoryRow.key == key))
