"""Runs one agent: a read-only context in, findings recorded, change requests handed over.

One run never stops another: every failure becomes the run's recorded outcome. Change
requests pass a per-agent cooldown and daily budget before the approval engine sees them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import delete, func, select

from agents.base import AgentContext, Finding, KnobReader, TargetView
from agents.config import AgentDefaults, ConfiguredAgent
from agents.errors import AgentError, TemporaryAgentError, UnknownAgentError
from agents.sources.base import CostSource, MetricsSource
from agents.store import AgentDB, FindingRow, RunRow, SubmissionRow
from approval_engine.model import ChangeRequest

__all__ = ["AgentRunner", "RunResult", "Sources", "Submitted"]

log = logging.getLogger(__name__)

Mode = Literal["analyze", "optimize"]
Outcome = Literal["ok", "degraded", "failed", "timeout"]


@dataclass(frozen=True)
class Sources:
    """What every agent context is built from."""

    metrics: MetricsSource
    targets: TargetView
    knobs: KnobReader
    workloads: tuple[str, ...]
    cost: CostSource | None = None


@dataclass(frozen=True)
class Submitted:
    """What became of one change request: opened, updated, unchanged, refused, or skipped."""

    outcome: str
    proposal_id: str | None = None
    message: str = ""


SubmitFn = Callable[[ChangeRequest], Submitted]


@dataclass(frozen=True)
class RunResult:
    agent: str
    run_id: int
    mode: Mode
    trigger: str
    outcome: Outcome
    message: str
    started_at: datetime
    ended_at: datetime
    findings: list[Finding] = field(default_factory=list)
    new_keys: frozenset[str] = frozenset()
    submitted: list[tuple[Finding, Submitted]] = field(default_factory=list)
    retry_after: float | None = None  # seconds, when a degraded source advised it

    @property
    def new_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.key in self.new_keys]


class AgentRunner:
    def __init__(
        self,
        *,
        agents: Sequence[ConfiguredAgent],
        db: AgentDB,
        sources: Sources,
        defaults: AgentDefaults,
        submit: SubmitFn | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_workers: int = 4,
    ) -> None:
        self._agents = {a.name: a for a in agents}
        self.db = db
        self.sources = sources
        self.defaults = defaults
        self.submit = submit
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="agent")

    # --- lookups ----------------------------------------------------------------------------

    def agents(self) -> list[ConfiguredAgent]:
        return list(self._agents.values())

    def get(self, name: str) -> ConfiguredAgent:
        found = self._agents.get(name) or next(
            (a for n, a in self._agents.items() if n.lower() == name.lower()), None
        )
        if found is None:
            raise UnknownAgentError(
                f"no agent named {name!r}; known agents: {', '.join(self._agents) or 'none'}"
            )
        return found

    def context(self, name: str) -> AgentContext:
        s = self.sources
        return AgentContext(
            now=self.clock(),
            metrics=s.metrics,
            targets=s.targets,
            knobs=s.knobs,
            memory=self.db.memory(self.get(name).name),
            cost=s.cost,
            workloads=s.workloads,
        )

    def last_run(self, name: str) -> RunRow | None:
        with self.db.transaction() as session:
            return session.scalars(
                select(RunRow).where(RunRow.agent == name).order_by(RunRow.id.desc()).limit(1)
            ).first()

    def findings(self, agent: str | None = None) -> list[FindingRow]:
        with self.db.transaction() as session:
            query = select(FindingRow)
            if agent is not None:
                query = query.where(FindingRow.agent == agent)
            return list(session.scalars(query))

    # --- running ----------------------------------------------------------------------------

    def run(
        self, name: str, *, mode: Mode | None = None, trigger: str = "schedule", attempt: int = 0
    ) -> RunResult:
        agent = self.get(name)
        mode = mode or ("optimize" if agent.spec.proposes else "analyze")
        started = self.clock()
        with self.db.transaction() as session:
            row = RunRow(
                agent=agent.name,
                mode=mode,
                trigger=trigger,
                attempt=attempt,
                started_at=started,
                outcome="running",
                message="",
                findings=[],
                proposals=[],
            )
            session.add(row)
            session.flush()
            run_id = row.id
        findings: list[Finding] = []
        outcome: Outcome = "ok"
        message = ""
        retry_after: float | None = None
        instance = agent.spec.build(agent.settings)
        method = instance.optimize if mode == "optimize" else instance.analyze
        future = self._pool.submit(method, self.context(agent.name))
        try:
            findings = list(future.result(timeout=agent.timeout.total_seconds()))
        except FutureTimeout:
            # A thread cannot be killed; its result, when it comes, is dropped.
            outcome, message = "timeout", f"took longer than {agent.timeout}; result discarded"
        except TemporaryAgentError as e:
            outcome, message, retry_after = "degraded", str(e), e.retry_after
        except AgentError as e:
            outcome, message = "failed", str(e)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("agent %s crashed (ref %s)", agent.name, ref)
            outcome, message = "failed", f"internal error (ref {ref}); details are in the log"
        new_keys: frozenset[str] = frozenset()
        submitted: list[tuple[Finding, Submitted]] = []
        if outcome == "ok":
            new_keys = self._keep_findings(agent.name, findings)
            if mode == "optimize":
                submitted = [(f, self._submit(agent.name, f)) for f in findings if f.change]
                self._link_proposals(agent.name, submitted)
        ended = self.clock()
        with self.db.transaction() as session:
            stored = session.get(RunRow, run_id)
            assert stored is not None
            stored.outcome = outcome
            stored.message = message
            stored.ended_at = ended
            stored.findings = [
                {"key": f.key, "severity": f.severity, "title": f.title} for f in findings
            ]
            stored.proposals = [s.proposal_id for _, s in submitted if s.proposal_id]
        return RunResult(
            agent=agent.name,
            run_id=run_id,
            mode=mode,
            trigger=trigger,
            outcome=outcome,
            message=message,
            started_at=started,
            ended_at=ended,
            findings=findings,
            new_keys=new_keys,
            submitted=submitted,
            retry_after=retry_after,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _keep_findings(self, agent: str, findings: list[Finding]) -> frozenset[str]:
        """Replace the agent's current findings; return the keys that are new."""
        now = self.clock()
        with self.db.transaction() as session:
            old = {
                r.key: r
                for r in session.scalars(select(FindingRow).where(FindingRow.agent == agent))
            }
            session.execute(delete(FindingRow).where(FindingRow.agent == agent))
            session.flush()
            for f in {f.key: f for f in findings}.values():
                before = old.get(f.key)
                session.add(
                    FindingRow(
                        agent=agent,
                        key=f.key,
                        severity=f.severity,
                        title=f.title,
                        detail=f.detail,
                        service=f.service,
                        env=f.env,
                        score=f.score,
                        evidence=list(f.evidence),
                        change=f.change.describe() if f.change else None,
                        proposal_id=before.proposal_id if before else None,
                        first_seen=before.first_seen if before else now,
                        last_seen=now,
                    )
                )
        return frozenset(f.key for f in findings if f.key not in old)

    def _link_proposals(self, agent: str, submitted: list[tuple[Finding, Submitted]]) -> None:
        with self.db.transaction() as session:
            for finding, result in submitted:
                row = session.get(FindingRow, (agent, finding.key))
                if row is not None and result.proposal_id:
                    row.proposal_id = result.proposal_id

    def _submit(self, agent: str, finding: Finding) -> Submitted:
        change = finding.change
        assert change is not None
        if self.submit is None:
            return Submitted(outcome="skipped", message="no approval engine attached")
        target = f"{change.service}/{change.env}/" + ",".join(
            sorted(c.knob for c in change.changes)
        )
        wanted = ", ".join(
            f"{c.knob}={c.value}" for c in sorted(change.changes, key=lambda c: c.knob)
        )
        now = self.clock()
        skip = self._throttle(agent, target, wanted, now)
        if skip is not None:
            return skip
        try:
            result = self.submit(change)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("submitting %s's change request failed (ref %s)", agent, ref)
            result = Submitted(outcome="refused", message=f"internal error (ref {ref})")
        with self.db.transaction() as session:
            session.add(
                SubmissionRow(
                    agent=agent,
                    target=target,
                    wanted=wanted,
                    at=now,
                    outcome=result.outcome,
                    proposal_id=result.proposal_id,
                    message=result.message,
                )
            )
        return result

    def _throttle(self, agent: str, target: str, wanted: str, now: datetime) -> Submitted | None:
        """A skip when the same wish was made within the cooldown or today's budget is spent."""
        with self.db.transaction() as session:
            recent = session.scalars(
                select(SubmissionRow)
                .where(
                    SubmissionRow.agent == agent,
                    SubmissionRow.target == target,
                    SubmissionRow.wanted == wanted,
                    SubmissionRow.at >= now - self.defaults.cooldown,
                    SubmissionRow.outcome.in_(("opened", "updated")),
                )
                .order_by(SubmissionRow.id.desc())
                .limit(1)
            ).first()
            midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            spent = session.scalar(
                select(func.count())
                .select_from(SubmissionRow)
                .where(
                    SubmissionRow.agent == agent,
                    SubmissionRow.at >= midnight,
                    SubmissionRow.outcome.in_(("opened", "updated")),
                )
            )
        if recent is not None:
            until = recent.at + self.defaults.cooldown
            return Submitted(
                outcome="cooldown",
                proposal_id=recent.proposal_id,
                message=f"asked for the same at {recent.at:%H:%M} UTC; cooling down until "
                f"{until:%H:%M} UTC",
            )
        if (spent or 0) >= self.defaults.daily_budget:
            return Submitted(
                outcome="budget",
                message=f"{agent} already made {spent} change requests today "
                f"(daily budget {self.defaults.daily_budget})",
            )
        return None
