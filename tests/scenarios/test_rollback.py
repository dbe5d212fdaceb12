"""After the apply, in chat: a capacity cut far below demand is approved and applied, degrades
checkout/prod in the simulation, and opsgate opens the revert; one approval later the cut is
rolled back. The demo's verify window (settings.yaml demo.verify_window) is two minutes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.sim.workload import WorkloadSpec
from approval_engine import audit
from bots.testing import FakeChat

START = datetime(2026, 11, 16, 11, 50, tzinfo=UTC)  # a Monday: ~180 rps on checkout/prod at noon
# checkout/prod as the repository has it: an HPA from 3 to 12 pods
FULL = WorkloadSpec(
    replicas=3,
    hpa_enabled=True,
    min_replicas=3,
    max_replicas=12,
    target_cpu_percent=70,
    cpu_request_millicores=500,
)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, hh_mm: str) -> None:
        hour, minute = (int(part) for part in hh_mm.split(":"))
        self.now = START.replace(hour=hour, minute=minute)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def chat(tmp_path: Path, clock: Clock) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data", clock=clock)
    yield fake
    fake.close()


def cut_capacity(chat: FakeChat, clock: Clock) -> None:
    """`/scale checkout 1-1 prod`: an HPA floor and ceiling of one pod, applied at 12:00."""
    clock.at("11:55")
    opened = chat.say("/scale checkout 1-1 prod", as_="alice")
    assert "Opened scale-1" in opened.text, opened.text
    assert "+  minReplicas: 1" in opened.text and "+  maxReplicas: 1" in opened.text
    assert "Risk: high" in opened.text
    clock.at("12:00")
    chat.say("/approve scale-1", as_="bob")
    applied = chat.say("/approve scale-1", as_="dave")
    assert [a.kind for a in applied.announcements] == ["approved", "merged", "syncing", "applied"]


def test_a_degraded_scale_down_is_reverted_after_the_verify_window(
    chat: FakeChat, clock: Clock
) -> None:
    cut_capacity(chat, clock)
    clock.at("12:01")
    inside = chat.say("/status checkout", as_="carol")
    prod = next(t for t in inside.reply.tables if t.title and t.title.startswith("prod"))
    assert prod.rows[0][6] == "Degraded"
    assert inside.announcements == []  # the window is not over yet

    clock.at("12:02")
    after = chat.say("/proposals", as_="carol")

    degraded, opened = after.announcements
    assert (degraded.kind, degraded.proposal_id) == ("degraded", "scale-1")
    assert degraded.text == (
        "scale-1 degraded checkout/prod in the 2m after it was applied, compared with the 2m "
        "before: error_ratio 0.083 % → 100 % (max 2 %); latency_p95 241 ms → 10,000 ms "
        "(max 500 ms); cpu 66 % → 474 % (max 90 %). Opening a revert."
    )
    assert (opened.kind, opened.proposal_id) == ("opened", "rollback-2")
    assert opened.text == (
        "rollback-2 opened: rollback: checkout/prod autoscaling.minReplicas 1 → 3, "
        "autoscaling.maxReplicas 1 → 12"
    )
    assert after.text == "No open proposals."  # the reply comes first, then the tick
    listed = chat.say("/proposals", as_="carol")
    assert listed.reply.tables[0].rows[0][:4] == (
        "rollback-2",
        "open",
        "checkout/prod autoscaling.minReplicas 1 → 3, autoscaling.maxReplicas 1 → 12",
        "opsgate",
    )

    card = chat.say("/diff rollback-2", as_="carol").text
    assert "approvals 0 of 1" in card  # policy.yaml: reverts are fast-tracked
    assert (
        "Why: Revert scale-1 (autoscaling.minReplicas 3 → 1, autoscaling.maxReplicas 12 → 1): "
        "it degraded the target in the 2m after it was applied at 12:00 UTC, compared with "
        "the 2m before: error_ratio 0.083 % → 100 % (max 2 %); latency_p95 241 ms → 10,000 ms "
        "(max 500 ms); cpu 66 % → 474 % (max 90 %)."
    ) in card

    clock.at("12:03")
    approved = chat.say("/approve rollback-2", as_="bob")

    assert [a.kind for a in approved.announcements] == [
        "approved",
        "merged",
        "syncing",
        "applied",
        "rolled_back",
    ]
    assert approved.announcements[-1].text == (
        "scale-1 rolled back: rollback-2 is applied, so checkout/prod has "
        "autoscaling.minReplicas 3, autoscaling.maxReplicas 12 again"
    )
    spec = chat.runtime.cluster.spec("checkout", "prod")
    assert spec is not None and (spec.min_replicas, spec.max_replicas) == (3, 12)
    everything = chat.say("/proposals all", as_="carol").reply.tables[0].rows
    assert [(row[0], row[1]) for row in everything] == [
        ("scale-1", "rolled_back"),
        ("rollback-2", "applied"),
    ]
    clock.at("12:10")  # the revert itself is not watched: nothing more is said
    assert chat.say("/proposals", as_="carol").announcements == []
    actions = [(e.action, e.subject) for e in audit.tail(chat.runtime.store, limit=50)]
    assert ("degraded", "scale-1") in actions and ("rolled_back", "scale-1") in actions
    assert audit.verify(chat.runtime.store).ok


def test_a_restart_during_the_window_still_reverts_once(
    tmp_path: Path, chat: FakeChat, clock: Clock
) -> None:
    cut_capacity(chat, clock)
    cut = chat.runtime.cluster.spec("checkout", "prod")
    assert cut is not None
    chat.close()

    clock.at("12:02")
    again = FakeChat(tmp_path / "data", clock=clock, resume=False)
    try:
        # The simulation keeps no history across a restart (Prometheus would): replay it.
        for when, spec in (("11:50", FULL), ("12:00", cut), ("12:02", cut)):
            clock.at(when)
            again.runtime.cluster.apply("checkout", "prod", spec)
        again.runtime.gateway.tick()

        assert [(a.kind, a.proposal_id) for a in again.announcements] == [
            ("degraded", "scale-1"),
            ("opened", "rollback-2"),
        ]
        again.runtime.gateway.tick()
        assert len(again.announcements) == 2
        assert [p.id for p in again.runtime.engine.proposals()] == ["rollback-2"]
    finally:
        again.close()


def test_a_healthy_scale_up_is_verified(chat: FakeChat, clock: Clock) -> None:
    clock.at("11:55")
    chat.say("/scale checkout 6 prod", as_="alice")
    clock.at("12:00")
    chat.say("/approve scale-1", as_="bob")
    chat.say("/approve scale-1", as_="dave")

    clock.at("12:02")
    said = chat.say("/proposals", as_="carol")

    [verified] = said.announcements
    assert verified.kind == "verified"
    assert verified.text.startswith(
        "scale-1 verified: checkout/prod held its SLOs in the 2m after the change (error_ratio"
    )
