"""Agents through chat: /agent, /analysis, /cost, /anomaly, /predict, and a burst-N approved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from approval_engine import audit
from bots.testing import FakeChat

# A Sunday noon: the simulation's Monday 10:00 newsletter burst on checkout/prod is 22 h away.
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def sunday(tmp_path: Path) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data", clock=lambda: SUNDAY)
    yield fake
    fake.close()


def test_agent_status_lists_every_agent_with_its_schedule(chat: FakeChat) -> None:
    said = chat.say("/agent status", as_="carol")
    table = said.reply.tables[0]
    rows = {row[0]: row for row in table.rows}
    assert set(rows) == {"AnomalyDetector", "BurstPredictor", "CostWatcher"}
    assert rows["BurstPredictor"][1:4] == ("yes", "every 15m", "never")
    assert rows["CostWatcher"][5] == "scheduler off"  # the fake chat runs agents on demand only
    assert chat.say("/agent", as_="carol").reply.tables[0].rows == table.rows


@pytest.mark.parametrize(
    ("text", "who", "expected"),
    [
        ("/agent NoSuch analyze", "alice", "no agent named 'NoSuch'; known agents: "),
        ("/agent CostWatcher fix", "alice", "Usage: /agent status |"),
        ("/agent CostWatcher optimize", "carol", "Not allowed: /agent … optimize may open"),
        ("/agent AnomalyDetector optimize", "alice", "AnomalyDetector only analyzes"),
        ("/predict nosuch", "carol", "unknown service 'nosuch'"),
        ("/predict checkout moon", "carol", "checkout is not deployed in 'moon'"),
        ("/predict a b c", "carol", "Usage: /predict [service] [env]"),
    ],
)
def test_bad_agent_commands_get_clear_errors(
    chat: FakeChat, text: str, who: str, expected: str
) -> None:
    said = chat.say(text, as_=who)
    assert said.error
    assert expected in said.text
    assert chat.runtime.engine.proposals() == []


def test_a_viewers_optimize_is_refused_and_audited(chat: FakeChat) -> None:
    chat.say("/agent CostWatcher optimize", as_="carol")
    last = audit.tail(chat.runtime.store, limit=1)[0]
    assert (last.actor, last.action, last.subject) == ("carol", "denied", "CostWatcher")
    assert chat.runtime.agents.last_run("CostWatcher") is None  # nothing ran


def test_cost_watcher_finds_the_idle_database_and_its_downsize_is_applied(
    chat: FakeChat,
) -> None:
    cost = chat.say("/cost", as_="carol")
    assert not cost.error, cost.text
    assert "Top spenders:" in cost.text
    assert "simulated bill" in cost.text

    run = chat.say("/agent CostWatcher optimize", as_="alice")
    assert "CostWatcher optimize: ok" in run.text
    assert "orders-db/staging has been idle for 7 days" in run.text
    assert "opened cost-1" in run.text
    diff = chat.say("/diff cost-1", as_="carol").text
    assert '-  instance_class        = "db.t3.medium"' in diff
    assert '+  instance_class        = "db.t3.small"' in diff
    proposal = chat.runtime.engine.get("cost-1")
    assert proposal.proposer == "agent:CostWatcher"
    assert list(proposal.files) == ["terraform/environments/staging/databases.tf"]

    approved = chat.say("/approve cost-1", as_="bob")
    assert [a.kind for a in approved.announcements] == ["approved", "merged", "syncing", "applied"]
    assert chat.runtime.engine.current_values("orders-db", "staging")["instance_class"] == (
        "db.t3.small"
    )
    analysis = chat.say("/analysis", as_="carol")
    assert "cost-1" in analysis.text

    # the same wish again is not re-proposed: it is already true on main
    again = chat.say("/agent CostWatcher optimize", as_="alice")
    assert "cost-2" not in again.text


def test_anomaly_before_and_after_a_run(chat: FakeChat) -> None:
    before = chat.say("/anomaly", as_="carol")
    assert "it has not run yet" in before.text
    run = chat.say("/agent AnomalyDetector analyze", as_="carol")
    assert "AnomalyDetector analyze: ok" in run.text
    after = chat.say("/anomaly", as_="carol")
    assert re.search(r"last run \d+s ago \(ok\)", after.text), after.text


def test_burst_predictor_proposes_ahead_of_mondays_burst_and_it_is_applied(
    sunday: FakeChat,
) -> None:
    chat = sunday
    forecast = chat.say("/predict checkout prod", as_="carol")
    assert not forecast.error, forecast.text
    assert "checkout/prod: Mon 23 Nov 10:00" in forecast.text
    assert forecast.reply.image_png is not None and forecast.reply.image_png[:4] == b"\x89PNG"

    run = chat.say("/agent BurstPredictor optimize", as_="alice")
    assert "BurstPredictor optimize: ok" in run.text, run.text
    proposal = next(p for p in chat.runtime.engine.proposals() if p.kind == "burst")
    assert proposal.id == "burst-1"
    assert (proposal.service, proposal.env) == ("checkout", "prod")
    assert "Mon 10" in proposal.rationale
    floor = next(k for k in proposal.knobs if k.knob == "min_replicas")
    assert int(floor.new) > int(floor.old)  # type: ignore[arg-type]

    assert "1 of 2 approvals" in chat.say("/approve burst-1", as_="bob").text
    done = chat.say("/approve burst-1", as_="dave")
    assert "2 of 2 approvals" in done.text
    assert chat.runtime.engine.get("burst-1").state.value == "applied"
    spec = chat.runtime.cluster.spec("checkout", "prod")
    assert spec is not None and spec.min_replicas == floor.new

    # the floor now suffices: the next run has nothing more to ask for
    chat.say("/agent BurstPredictor optimize", as_="alice")
    everything = chat.runtime.engine.proposals(active_only=False)
    assert [p.id for p in everything if p.kind == "burst"] == ["burst-1"]


def test_a_scheduled_run_announces_its_proposal(sunday: FakeChat) -> None:
    chat = sunday
    chat.runtime.start_scheduler()
    assert chat.runtime.scheduler is not None
    result = chat.runtime.scheduler.run_now("BurstPredictor")
    assert result is not None and result.outcome == "ok", result
    texts = [a.text for a in chat.announcements]
    assert any(t.startswith("[BurstPredictor] ") for t in texts), texts
    assert any("burst-1" in a.text and a.kind == "opened" for a in chat.announcements)
    status = chat.say("/agent status", as_="carol")
    row = next(r for r in status.reply.tables[0].rows if r[0] == "BurstPredictor")
    assert row[4] == "ok" and row[5].endswith("UTC")
