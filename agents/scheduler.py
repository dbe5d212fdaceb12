"""APScheduler 3 runs the enabled agents; its jobs live in the project's database.

Jobs are stored with a reference to `run_job` and plain arguments, so a restart finds them
again (with their next run time) in the SQLAlchemy job store. Temporary failures are retried
as one-off jobs after the delay the error advised, or the configured one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from agents.config import ConfiguredAgent
from agents.runner import AgentRunner, RunResult

__all__ = ["AgentScheduler", "run_job"]

log = logging.getLogger(__name__)

JOB_PREFIX = "agent:"
RETRY_PREFIX = "retry:"
_ACTIVE: dict[str, AgentScheduler] = {}
_ACTIVE_LOCK = threading.Lock()


def run_job(key: str, agent: str, attempt: int = 0) -> None:
    """The stored job's entry point: finds the live scheduler by key and runs the agent."""
    with _ACTIVE_LOCK:
        scheduler = _ACTIVE.get(key)
    if scheduler is None:
        log.warning("no live scheduler %r for agent %s; skipping this run", key, agent)
        return
    scheduler.run_now(agent, attempt=attempt)


class AgentScheduler:
    """Keeps one stored job per enabled agent; `on_result` hears about every scheduled run."""

    def __init__(
        self,
        runner: AgentRunner,
        *,
        engine: Engine,
        key: str = "default",
        on_result: Callable[[RunResult], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runner = runner
        self.key = key
        self.on_result = on_result
        self.clock = clock
        self._scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 600},
            timezone=UTC,
        )

    def start(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE[self.key] = self
        self._scheduler.start(paused=True)
        self.sync_jobs()
        self._scheduler.resume()

    def shutdown(self, *, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
        with _ACTIVE_LOCK:
            if _ACTIVE.get(self.key) is self:
                del _ACTIVE[self.key]

    def sync_jobs(self) -> None:
        """One job per enabled agent. A stored job with the same trigger is kept as it is,
        so a restart does not move its next run; changed schedules are replaced."""
        wanted = {JOB_PREFIX + a.name: a for a in self.runner.agents() if a.enabled}
        for job in self._scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) and job.id not in wanted:
                job.remove()
        for job_id, agent in wanted.items():
            trigger = self._trigger(agent)
            existing = self._scheduler.get_job(job_id)
            if existing is not None and str(existing.trigger) == str(trigger):
                continue
            first = self.clock() + self.runner.defaults.first_run
            self._scheduler.add_job(
                run_job,
                trigger=trigger,
                args=[self.key, agent.name],
                id=job_id,
                name=agent.name,
                replace_existing=True,
                next_run_time=first if existing is None else None,
            )

    def _trigger(self, agent: ConfiguredAgent) -> IntervalTrigger | CronTrigger:
        jitter = int(self.runner.defaults.jitter.total_seconds()) or None
        if agent.cron is not None:
            return CronTrigger.from_crontab(agent.cron, timezone=UTC)
        assert agent.every is not None
        return IntervalTrigger(
            seconds=int(agent.every.total_seconds()), jitter=jitter, timezone=UTC
        )

    def next_run(self, agent: str) -> datetime | None:
        job: Job | None = self._scheduler.get_job(JOB_PREFIX + agent)
        return None if job is None else job.next_run_time

    def run_now(self, agent: str, *, attempt: int = 0) -> RunResult | None:
        try:
            result = self.runner.run(agent, trigger="schedule", attempt=attempt)
        except Exception:
            log.exception("agent %s could not be run", agent)
            return None
        if result.outcome == "degraded" and attempt < self.runner.defaults.retries:
            self._retry(agent, attempt + 1, result)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("reporting %s's run failed", agent)
        return result

    def _retry(self, agent: str, attempt: int, result: RunResult) -> None:
        delay = self.runner.defaults.retry_delay
        if result.retry_after is not None:
            delay = timedelta(seconds=result.retry_after)
        self._scheduler.add_job(
            run_job,
            trigger="date",
            run_date=self.clock() + max(delay, timedelta(seconds=1)),
            args=[self.key, agent, attempt],
            id=f"{RETRY_PREFIX}{agent}",
            name=f"{agent} (retry {attempt})",
            replace_existing=True,
        )
        log.info("agent %s degraded (%s); retry %d in %s", agent, result.message, attempt, delay)
