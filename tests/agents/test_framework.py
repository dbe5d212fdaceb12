"""The agent framework: registry, agents.yaml, runner outcomes, cooldowns, scheduler restarts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from sqlalchemy import create_engine

from agents.base import Agent, AgentContext, AgentSettings, Finding
from agents.config import AgentDefaults, AgentsConfig, resolve
from agents.errors import AgentConfigError, SourceError, SourceUnavailableError, UnknownAgentError
from agents.registry import Registry
from agents.runner import AgentRunner, Sources, Submitted
from agents.scheduler import AgentScheduler
from agents.store import AgentDB
from agents.testing import ArrayMetrics, StaticKnobs, StaticTargets
from approval_engine.model import ChangeRequest, KnobChange

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class EchoSettings(AgentSettings):
    replicas: int = Field(default=3, ge=1, le=50, description="what to ask for")
    behaviour: str = Field(default="ok", description="ok | slow | down | broken | crash | flip")


def build_registry() -> Registry:
    reg = Registry()

    @reg.agent(name="Echo", settings=EchoSettings, every="5m", timeout="2s")
    class Echo(Agent[EchoSettings]):
        """Says what it was told to say."""

        proposes = True

        def analyze(self, ctx: AgentContext) -> list[Finding]:
            b = self.settings.behaviour
            if b == "slow":
                time.sleep(3)
            if b == "down":
                raise SourceUnavailableError("fixture", "connection refused", retry_after=1)
            if b == "broken":
                raise SourceError("no such signal")
            if b == "crash":
                raise ZeroDivisionError("oops")
            runs = ctx.memory.get("runs", 0) + 1
            ctx.memory.put("runs", runs)
            key = f"echo:{runs % 2}" if b == "flip" else "echo:checkout/prod"
            return [Finding(agent="Echo", key=key, severity="warning", title=f"run {runs}")]

        def optimize(self, ctx: AgentContext) -> list[Finding]:
            found = self.analyze(ctx)
            change = ChangeRequest(
                kind="burst",
                service="checkout",
                env="prod",
                changes=(KnobChange("min_replicas", self.settings.replicas),),
                rationale="because",
                requested_by="agent:Echo",
            )
            return [Finding(**{**f.__dict__, "change": change}) for f in found]

    @reg.agent(name="Quiet", settings=AgentSettings, cron="0 * * * *")
    class Quiet(Agent[AgentSettings]):
        """Finds nothing."""

        def analyze(self, ctx: AgentContext) -> list[Finding]:
            return []

    return reg


def configured(reg: Registry, agents: dict[str, Any], **defaults: Any) -> Any:
    cfg = AgentsConfig.model_validate({"agents": agents, "defaults": defaults})
    return resolve(cfg, reg, path=Path("agents.yaml"))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def make_runner(
    tmp_path: Path, agents: dict[str, Any], *, clock: Clock | None = None, **defaults: Any
) -> tuple[AgentRunner, list[ChangeRequest]]:
    reg = build_registry()
    submitted: list[ChangeRequest] = []

    def submit(request: ChangeRequest) -> Submitted:
        submitted.append(request)
        return Submitted(outcome="opened", proposal_id=f"burst-{len(submitted)}")

    engine = create_engine(f"sqlite:///{tmp_path / 'agents.db'}")
    runner = AgentRunner(
        agents=configured(reg, agents, **defaults),
        db=AgentDB(engine),
        sources=Sources(
            metrics=ArrayMetrics(),
            targets=StaticTargets(envs={"checkout": ["prod"]}),
            knobs=StaticKnobs(),
            workloads=("checkout",),
        ),
        defaults=AgentDefaults.model_validate(defaults),
        submit=submit,
        clock=clock or Clock(),
    )
    return runner, submitted


# --- registry and config ------------------------------------------------------------------


def test_registry_returns_the_class_unchanged_and_knows_its_schedule() -> None:
    reg = build_registry()
    spec = reg.get("echo")  # names are case-insensitive for people typing them
    assert spec.name == "Echo"
    assert spec.every == timedelta(minutes=5)
    assert spec.timeout == timedelta(seconds=2)
    assert spec.summary == "Says what it was told to say."
    assert spec.proposes and not reg.get("Quiet").proposes
    with pytest.raises(UnknownAgentError, match="known agents: Echo, Quiet"):
        reg.get("Nope")


def test_registering_twice_or_without_a_schedule_is_an_error() -> None:
    reg = build_registry()
    with pytest.raises(ValueError, match="registered twice"):
        reg.agent(name="Echo", settings=EchoSettings, every="1m")(type("X", (Agent,), {}))
    with pytest.raises(ValueError, match="exactly one of every= or cron="):
        reg.agent(name="Y", settings=EchoSettings)


def test_agents_yaml_enables_schedules_and_validates_settings() -> None:
    reg = build_registry()
    agents = configured(reg, {"Echo": {"cron": "*/10 * * * *", "settings": {"replicas": 7}}})
    by_name = {a.name: a for a in agents}
    assert by_name["Echo"].enabled and not by_name["Quiet"].enabled
    assert by_name["Echo"].schedule() == "cron */10 * * * *"
    assert by_name["Echo"].settings == EchoSettings(replicas=7)
    assert by_name["Quiet"].schedule() == "cron 0 * * * *"


def test_bad_agent_settings_name_the_key() -> None:
    reg = build_registry()
    with pytest.raises(AgentConfigError) as e:
        configured(
            reg,
            {"Echo": {"settings": {"replicas": 0, "colour": "red"}}, "Ghost": {}},
        )
    text = "\n".join(e.value.problems)
    assert (
        "agents.yaml: agents.Echo.settings.replicas: Input should be greater than or equal to 1"
        in text
    )
    assert "agents.Echo.settings.colour: Extra inputs are not permitted" in text
    assert "agents.yaml: agents.Ghost: no such agent (known: Echo, Quiet)" in text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"cron": "every monday"}, "not a crontab line"),
        ({"every": "-5m"}, "not a duration"),
        ({"every": "5m", "cron": "* * * * *"}, "not both"),
    ],
)
def test_bad_schedules_are_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentsConfig.model_validate({"agents": {"Echo": entry}})


# --- runner -------------------------------------------------------------------------------


def test_a_run_is_recorded_with_its_findings_and_new_keys(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, {"Echo": {}})
    first = runner.run("Echo", mode="analyze", trigger="cli")
    assert first.outcome == "ok"
    assert first.new_keys == {"echo:checkout/prod"}
    second = runner.run("Echo", mode="analyze")
    assert second.new_keys == frozenset()  # the same thing again is not news
    assert [f.title for f in second.findings] == ["run 2"]  # memory persisted between runs
    row = runner.last_run("Echo")
    assert row is not None and row.id == second.run_id
    assert row.outcome == "ok" and row.findings[0]["title"] == "run 2"
    stored = runner.findings("Echo")
    assert [(r.key, r.title) for r in stored] == [("echo:checkout/prod", "run 2")]


def test_findings_that_disappear_are_forgotten_and_come_back_as_new(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, {"Echo": {"settings": {"behaviour": "flip"}}})
    assert runner.run("Echo").new_keys == {"echo:1"}
    assert runner.run("Echo").new_keys == {"echo:0"}
    assert [r.key for r in runner.findings("Echo")] == ["echo:0"]
    assert runner.run("Echo").new_keys == {"echo:1"}


@pytest.mark.parametrize(
    ("behaviour", "outcome", "message"),
    [
        ("down", "degraded", "fixture is unavailable: connection refused"),
        ("broken", "failed", "no such signal"),
        ("crash", "failed", "internal error (ref "),
        ("slow", "timeout", "took longer than 0:00:02"),
    ],
)
def test_failures_become_the_runs_outcome(
    tmp_path: Path, behaviour: str, outcome: str, message: str
) -> None:
    runner, submitted = make_runner(tmp_path, {"Echo": {"settings": {"behaviour": behaviour}}})
    result = runner.run("Echo")
    assert result.outcome == outcome
    assert message in result.message
    assert result.findings == [] and submitted == []
    row = runner.last_run("Echo")
    assert row is not None and row.outcome == outcome and row.ended_at is not None
    if behaviour == "down":
        assert result.retry_after == 1


def test_one_failing_agent_does_not_stop_another(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, {"Echo": {"settings": {"behaviour": "crash"}}, "Quiet": {}})
    assert runner.run("Echo").outcome == "failed"
    assert runner.run("Quiet").outcome == "ok"


def test_optimize_hands_change_requests_over_and_links_the_proposal(tmp_path: Path) -> None:
    runner, submitted = make_runner(tmp_path, {"Echo": {}})
    result = runner.run("Echo", mode="optimize")
    assert [s.outcome for _, s in result.submitted] == ["opened"]
    assert submitted[0].changes == (KnobChange("min_replicas", 3),)
    assert runner.findings("Echo")[0].proposal_id == "burst-1"
    assert runner.last_run("Echo").proposals == ["burst-1"]  # type: ignore[union-attr]
    # analyze never hands anything over
    runner.run("Echo", mode="analyze")
    assert len(submitted) == 1


def test_the_same_wish_waits_out_the_cooldown(tmp_path: Path) -> None:
    clock = Clock()
    runner, submitted = make_runner(tmp_path, {"Echo": {}}, clock=clock, cooldown="6h")
    runner.run("Echo")
    clock.now += timedelta(hours=1)
    again = runner.run("Echo")
    assert [s.outcome for _, s in again.submitted] == ["cooldown"]
    assert "cooling down until 18:00 UTC" in again.submitted[0][1].message
    assert len(submitted) == 1
    clock.now += timedelta(hours=6)
    assert [s.outcome for _, s in runner.run("Echo").submitted] == ["opened"]
    assert len(submitted) == 2


def test_a_different_wish_is_not_held_back_by_the_cooldown(tmp_path: Path) -> None:
    runner, submitted = make_runner(tmp_path, {"Echo": {}})
    runner.run("Echo")
    runner._agents["Echo"] = configured(build_registry(), {"Echo": {"settings": {"replicas": 5}}})[
        0
    ]
    assert [s.outcome for _, s in runner.run("Echo").submitted] == ["opened"]
    assert [c.changes[0].value for c in submitted] == [3, 5]


def test_the_daily_budget_caps_change_requests(tmp_path: Path) -> None:
    clock = Clock()
    runner, submitted = make_runner(
        tmp_path, {"Echo": {}}, clock=clock, daily_budget=2, cooldown="1m"
    )
    outcomes = []
    for _ in range(3):
        outcomes += [s.outcome for _, s in runner.run("Echo").submitted]
        clock.now += timedelta(minutes=5)
    assert outcomes == ["opened", "opened", "budget"]
    clock.now = NOW.replace(hour=0) + timedelta(days=1, minutes=1)  # a new UTC day
    assert [s.outcome for _, s in runner.run("Echo").submitted] == ["opened"]
    assert len(submitted) == 3


def test_a_submitter_that_raises_is_recorded_as_refused(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, {"Echo": {}})

    def broken(_: ChangeRequest) -> Submitted:
        raise RuntimeError("engine on fire")

    runner.submit = broken
    result = runner.run("Echo")
    assert result.outcome == "ok"
    assert result.submitted[0][1].outcome == "refused"


# --- scheduler ------------------------------------------------------------------------------


def test_scheduler_restart_keeps_jobs_and_their_next_run(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, {"Echo": {"every": "1h"}, "Quiet": {}}, first_run="10m")
    first = AgentScheduler(runner, engine=runner.db.engine, key="t1")
    first.start()
    try:
        planned = first.next_run("Echo")
        assert planned is not None and first.next_run("Quiet") is not None
    finally:
        first.shutdown()
    # a new process: same database, a later clock
    later = Clock()
    later.now = NOW + timedelta(minutes=3)
    runner.clock = later
    second = AgentScheduler(runner, engine=runner.db.engine, key="t2", clock=later)
    second.start()
    try:
        assert second.next_run("Echo") == planned
    finally:
        second.shutdown()


def test_scheduler_drops_jobs_of_disabled_agents_and_replaces_changed_schedules(
    tmp_path: Path,
) -> None:
    runner, _ = make_runner(tmp_path, {"Echo": {"every": "1h"}, "Quiet": {}})
    s = AgentScheduler(runner, engine=runner.db.engine, key="t3")
    s.start()
    s.shutdown()
    runner._agents = {a.name: a for a in configured(build_registry(), {"Echo": {"every": "2h"}})}
    s = AgentScheduler(runner, engine=runner.db.engine, key="t4")
    s.start()
    try:
        assert s.next_run("Quiet") is None
        job = s._scheduler.get_job("agent:Echo")
        assert job is not None and job.trigger.interval == timedelta(hours=2)
    finally:
        s.shutdown()


def test_scheduled_runs_happen_and_temporary_errors_are_retried(tmp_path: Path) -> None:
    runner, _ = make_runner(
        tmp_path,
        {"Echo": {"every": "1h", "settings": {"behaviour": "down"}}},
        first_run="1s",
        jitter="1s",
        retries=2,
    )
    runner.clock = lambda: datetime.now(UTC)
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def on_result(result: Any) -> None:
        row = runner.last_run("Echo")
        seen.append((result.outcome, row.attempt if row else -1))
        if len(seen) == 3:
            done.set()

    s = AgentScheduler(
        runner, engine=runner.db.engine, key="t5", on_result=on_result, clock=runner.clock
    )
    s.start()
    try:
        assert done.wait(timeout=20), f"only saw {seen}"
    finally:
        s.shutdown()
    # the first run and two retries (retry_after=1 s from the error), then it stops retrying
    assert seen == [("degraded", 0), ("degraded", 1), ("degraded", 2)]
