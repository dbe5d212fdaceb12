"""After the apply: each applied change is watched for a window, then verified, reverted (a
degraded SLO opens a revert proposal) or left "could not verify"; state lives in the store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from approval_engine import audit
from approval_engine.engine import Engine
from approval_engine.model import Proposal, State
from tests.approval_engine._support import (
    ALICE,
    BOB,
    DAVE,
    START,
    Boot,
    Clock,
    Node,
    Recorder,
    wish,
)

WINDOW = timedelta(minutes=15)  # policy.yaml verify_window
HEALTHY = {"error_ratio": 0.001, "latency_p95": 180.0, "cpu": 65.0}


class FakeMeter:
    """SLO signals that are `before` until `change_at` and `after` from then on."""

    def __init__(
        self,
        *,
        before: dict[str, float | None] | None = None,
        after: dict[str, float | None] | None = None,
    ) -> None:
        self.before = dict(HEALTHY) | (before or {})
        self.after = dict(HEALTHY) | (after or {})
        self.change_at = START
        self.down = False
        self.asked: list[tuple[str, datetime, datetime]] = []

    def measure(
        self, signal: str, service: str, env: str, *, start: datetime, end: datetime
    ) -> float | None:
        if self.down:
            raise ConnectionError("prometheus is unreachable")
        self.asked.append((signal, start, end))
        return (self.before if end <= self.change_at else self.after).get(signal)


def watching(node: Node, meter: FakeMeter) -> Engine:
    node.engine.verifier.watch_with(meter)
    return node.engine


def applied(engine: Engine, service: str, env: str, *changes: tuple[str, int]) -> Proposal:
    outcome = engine.propose(wish(service, env, *changes), actor=ALICE)
    assert outcome.proposal is not None, outcome.message
    for approver in (BOB, DAVE)[: outcome.proposal.quorum]:
        engine.approve(outcome.proposal.id, actor=approver)
    proposal = engine.get(outcome.proposal.id)
    assert proposal.state == State.APPLIED, proposal.message
    return proposal


def status(engine: Engine, proposal_id: str) -> str:
    found = engine.verifier.get(proposal_id)
    assert found is not None
    return found.status


def test_a_healthy_change_is_verified_once_its_window_has_passed(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    meter = FakeMeter()
    engine = watching(node, meter)
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))
    assert status(engine, proposal.id) == "watching"

    clock.advance(WINDOW - timedelta(seconds=1))
    engine.reconcile()
    assert status(engine, proposal.id) == "watching"
    assert meter.asked == []

    clock.advance(timedelta(seconds=1))
    engine.reconcile()
    engine.reconcile()  # nothing more to say

    assert status(engine, proposal.id) == "verified"
    engine.deliver(chat)
    chat.assert_each_once()
    assert chat.kinds(proposal.id)[-2:] == ["applied", "verified"]
    assert chat.sent[-1].text == (
        f"{proposal.id} verified: checkout/staging held its SLOs in the 15m after the change "
        "(error_ratio 0.1 % → 0.1 %; latency_p95 180 ms → 180 ms; cpu 65 % → 65 %)"
    )
    # the same length of time before the change and after it
    assert {(s, e) for _, s, e in meter.asked} == {
        (START - WINDOW, START),
        (START, START + WINDOW),
    }
    last = audit.tail(engine.store, limit=1)[0]
    assert (last.actor, last.action, last.subject) == ("opsgate", "verified", proposal.id)
    assert [r["status"] for r in last.detail["readings"]] == ["ok", "ok", "ok"]


def test_a_degraded_change_gets_a_revert_with_the_numbers_and_one_approval(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    engine = watching(node, FakeMeter(after={"error_ratio": 0.3, "latency_p95": 900.0}))
    proposal = applied(engine, "checkout", "prod", ("min_replicas", 2))
    assert proposal.quorum == 2

    clock.advance(WINDOW)
    engine.reconcile()

    assert status(engine, proposal.id) == "degraded"
    revert = engine.get("rollback-2")
    assert (revert.kind, revert.reverts, revert.proposer) == ("rollback", proposal.id, "opsgate")
    assert revert.state == State.OPEN
    assert revert.quorum == 1  # policy.yaml rollback: fast_track, quorum 1
    assert [(k.knob, k.old, k.new) for k in revert.knobs] == [("min_replicas", 2, 3)]
    assert revert.rationale.startswith(
        f"Revert {proposal.id} (autoscaling.minReplicas 3 → 2): it degraded the target in the "
        "15m after it was applied at 12:00 UTC, compared with the 15m before: "
    )
    assert "error_ratio 0.1 % → 30 % (max 2 %)" in revert.rationale
    assert "latency_p95 180 ms → 900 ms (max 500 ms)" in revert.rationale
    assert revert.evidence[-1] == "cpu 65 % → 65 %"
    engine.deliver(chat)
    degraded = chat.sent[-2]
    assert (degraded.kind, degraded.proposal_id) == ("degraded", proposal.id)
    assert degraded.text.endswith(". Opening a revert.")
    assert (chat.sent[-1].kind, chat.sent[-1].proposal_id) == ("opened", revert.id)

    engine.approve(revert.id, actor=BOB)  # one approver; the bot proposed it

    assert engine.get(revert.id).state == State.APPLIED
    assert engine.get(proposal.id).state == State.ROLLED_BACK
    spec = node.cluster.spec("checkout", "prod")
    assert spec is not None and spec.min_replicas == 3
    engine.deliver(chat)
    assert chat.sent[-1].kind == "rolled_back"
    assert chat.sent[-1].text == (
        f"{proposal.id} rolled back: {revert.id} is applied, so checkout/prod has "
        "autoscaling.minReplicas 3 again"
    )
    assert status(engine, revert.id) == "skipped"  # reverts are not watched
    chat.assert_each_once()
    assert audit.verify(engine.store).ok


def test_the_proposer_of_a_revert_still_cannot_approve_it(node: Node, clock: Clock) -> None:
    engine = node.engine
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))
    revert = engine.rollbacks.request(proposal.id, actor=BOB, why="bob said so").proposal
    assert revert is not None and revert.quorum == 1

    with pytest.raises(Exception, match="nobody approves their own change"):
        engine.approve(revert.id, actor=BOB)


def test_missing_data_is_could_not_verify_and_nothing_is_reverted(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    engine = watching(node, FakeMeter(after={"latency_p95": None}))
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))

    clock.advance(WINDOW)
    engine.reconcile()

    assert status(engine, proposal.id) == "unverified"
    assert engine.get(proposal.id).state == State.APPLIED
    assert engine.proposals() == []
    engine.deliver(chat)
    assert chat.sent[-1].kind == "unverified"
    assert chat.sent[-1].text == (
        f"{proposal.id} could not be verified: latency_p95: no data after the change. It stays "
        "applied; check checkout/staging by hand."
    )


def test_a_degraded_signal_wins_over_a_missing_one(node: Node, clock: Clock) -> None:
    engine = watching(node, FakeMeter(after={"latency_p95": None, "cpu": 140.0}))
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))
    clock.advance(WINDOW)
    engine.reconcile()
    assert status(engine, proposal.id) == "degraded"


def test_a_metrics_source_that_is_down_is_retried_then_could_not_verify(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    meter = FakeMeter()
    engine = watching(node, meter)
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))
    meter.down = True

    clock.advance(WINDOW)
    engine.reconcile()
    assert status(engine, proposal.id) == "watching"  # tried, will try again

    clock.advance(WINDOW)  # a second window: it gives up
    engine.reconcile()

    assert status(engine, proposal.id) == "unverified"
    engine.deliver(chat)
    assert chat.sent[-1].text.startswith(
        f"{proposal.id} could not be verified: the metrics source failed: prometheus is "
        "unreachable."
    )


def test_the_source_coming_back_within_the_grace_still_verifies(node: Node, clock: Clock) -> None:
    meter = FakeMeter()
    engine = watching(node, meter)
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))
    meter.down = True
    clock.advance(WINDOW)
    engine.reconcile()
    meter.down = False
    clock.advance(timedelta(minutes=1))
    engine.reconcile()
    assert status(engine, proposal.id) == "verified"


def test_a_later_change_inside_the_window_makes_the_first_unverifiable(
    node: Node, clock: Clock
) -> None:
    meter = FakeMeter(after={"error_ratio": 0.5})
    engine = watching(node, meter)
    first = applied(engine, "checkout", "staging", ("min_replicas", 4))
    clock.advance(timedelta(minutes=5))
    second = applied(engine, "checkout", "staging", ("target_cpu", 60))
    meter.change_at = clock.now  # the errors come with the second change

    clock.advance(WINDOW)
    engine.reconcile()

    found = engine.verifier.get(first.id)
    assert found is not None and found.status == "unverified"
    assert found.note == (
        f"{second.id} changed checkout/staging inside the window, so what came after is not "
        f"{first.id}'s alone"
    )
    assert status(engine, second.id) == "degraded"  # judged on its own window


def test_a_restart_in_the_middle_of_the_window_resumes_from_the_store(
    boot: Boot, clock: Clock, chat: Recorder
) -> None:
    meter = FakeMeter(after={"error_ratio": 0.3})
    first = boot()
    proposal = applied(watching(first, meter), "checkout", "staging", ("min_replicas", 4))
    first.engine.deliver(chat)
    first.close()

    clock.advance(WINDOW / 2)
    second = boot()
    watching(second, meter).reconcile()
    assert status(second.engine, proposal.id) == "watching"
    second.close()

    clock.advance(WINDOW / 2)
    third = boot()
    watching(third, meter).reconcile()
    third.engine.reconcile()

    assert status(third.engine, proposal.id) == "degraded"
    assert [p.id for p in third.engine.proposals()] == ["rollback-2"]
    third.engine.deliver(chat)
    chat.assert_each_once()
    assert chat.kinds(proposal.id) == [
        "opened",
        "approved",
        "merged",
        "syncing",
        "applied",
        "degraded",
    ]


def test_no_meter_means_nothing_is_watched(node: Node, clock: Clock) -> None:
    proposal = applied(node.engine, "checkout", "staging", ("min_replicas", 4))
    clock.advance(WINDOW)
    node.engine.reconcile()
    assert node.engine.verifier.get(proposal.id) is None


def test_an_open_wish_on_the_target_gives_way_to_the_revert(
    node: Node, clock: Clock, chat: Recorder
) -> None:
    engine = watching(node, FakeMeter(after={"error_ratio": 0.3}))
    proposal = applied(engine, "checkout", "staging", ("min_replicas", 4))
    clock.advance(timedelta(minutes=5))
    holder = engine.propose(wish("checkout", "staging", ("target_cpu", 60)), actor=DAVE).proposal
    assert holder is not None

    clock.advance(WINDOW)
    engine.reconcile()

    assert status(engine, proposal.id) == "degraded"
    assert engine.get(holder.id).state.value == "superseded"
    [revert] = engine.proposals()
    assert revert.reverts == proposal.id
    found = engine.verifier.get(proposal.id)
    assert found is not None and found.revert_id == revert.id
    engine.deliver(chat)
    withdrawn = [a.text for a in chat.sent if a.proposal_id == holder.id][-1]
    assert withdrawn.startswith(f"{holder.id} withdrawn: the revert of {proposal.id} needs")
    chat.assert_each_once()
