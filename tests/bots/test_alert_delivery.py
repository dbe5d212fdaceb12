"""Routing stored alerts and telling each chat: one message per group, edits, digests, acks."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from approval_engine import audit
from bots.alert_delivery import AlertDelivery
from bots.alert_metrics import AlertMetrics
from bots.alert_pacer import Pacer
from bots.alert_payload import WebhookPayload
from bots.alert_routes import RoutesConfig
from bots.alert_store import AlertStore
from bots.alert_types import Enrichment
from bots.app import Runtime
from bots.render import render_text
from tests.bots.alert_support import T0, RecordingSurface, alert, later, payload
from tests.bots.test_web import demo_runtime, say

OPS, PAY, TG = "slack:C0OPS", "slack:C0PAY", "telegram:-1001"


@dataclass
class Rig:
    runtime: Runtime
    store: AlertStore
    delivery: AlertDelivery
    slack: RecordingSurface
    telegram: RecordingSurface
    metrics: AlertMetrics
    now: list[datetime]
    graph: Graph | None
    data_dir: Path

    def receive(self, *alerts: dict[str, Any], at: datetime = T0) -> None:
        self.store.ingest(WebhookPayload.model_validate(payload(alerts)), at=at)

    def run(self) -> None:
        """Route everything, then send until every destination is done."""
        while self.delivery.route_pending():
            pass
        while any(self.delivery.send_step(d) for d in self.delivery.destinations):
            pass

    def states(self) -> dict[tuple[str, str], int]:
        return self.store.notice_counts()


class Graph:
    def __init__(self) -> None:
        self.calls = 0

    def enrich(self, **_: Any) -> Enrichment:
        self.calls += 1
        return Enrichment(graph_png=b"\x89PNG fake", lines=("checkout was scaled 2 → 4 at 09:40",))


def _rig(tmp_path: Path, routes: dict[str, Any], *, enricher: Graph | None = None) -> Rig:
    runtime = demo_runtime(tmp_path / "data")
    store = AlertStore(runtime.store.engine)
    runtime.services.alerts = store
    config = RoutesConfig.model_validate(routes)
    slack, telegram = RecordingSurface("slack"), RecordingSurface("telegram")
    keys = [d.key for r in config.routes for d in r.destinations] + [OPS]
    metrics = AlertMetrics.create(store)
    now = [T0]
    delivery = AlertDelivery(
        store=store,
        routes=config,
        surfaces={"slack": slack, "telegram": telegram},
        default=(OPS,),
        pacers={k: Pacer(interval=0) for k in keys},
        metrics=metrics,
        enricher=enricher,
        clock=lambda: now[0],
    )
    return Rig(runtime, store, delivery, slack, telegram, metrics, now, enricher, tmp_path / "data")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    routes = {
        "routes": [
            {
                "name": "payments",
                "matchers": ['service=~"checkout|cart"'],
                "severities": ["page"],
                "destinations": [{"platform": "slack", "channel": "C0PAY"}],
                "continue": True,
            },
            {
                "name": "telegram pages",
                "severities": ["page"],
                "destinations": [{"platform": "telegram", "channel": -1001}],
                "mute": [{"days": ["sat", "sun"]}],
            },
        ]
    }
    made = _rig(tmp_path, routes, enricher=Graph())
    yield made
    made.store.close()
    made.runtime.close()


def test_a_group_is_one_message_per_destination_edited_as_alerts_join_and_resolve(
    rig: Rig,
) -> None:
    rig.receive(alert(instance="a"))
    rig.run()
    [first] = rig.slack.top("C0PAY")
    assert rig.telegram.top("-1001")  # continue: the next route matched too
    assert not rig.slack.top("C0OPS")  # matched, so not the default
    text = render_text(first.reply)
    assert "🔥 ErrorBudgetBurn · checkout/prod · page: 1 firing" in text
    assert "Runbook: https://runbooks.example/ErrorBudgetBurn.md" in text
    assert "checkout was scaled 2 → 4" in text
    assert first.reply.image_png == b"\x89PNG fake"
    labels = [b.label for b in first.reply.buttons]
    assert labels == ["Silence 1h", "Silence 4h", "Silence 24h", "Analyze", "Ack"]
    assert first.reply.buttons[0].command.startswith("/silence ")  # by fingerprint
    assert first.reply.buttons[3].command == "/agent AnomalyDetector analyze"

    # A second alert joins the group: the same message is edited, the news is in its thread.
    rig.receive(alert(instance="a"), alert(instance="b", starts_at=later(3)))
    rig.run()
    assert len(rig.slack.top("C0PAY")) == 1
    joined = render_text(rig.slack.current(first.message_id))
    assert "2 firing" in joined and "instance=b: firing since" in joined
    assert "/silence ErrorBudgetBurn 1h env=prod service=checkout" in joined
    [news] = rig.slack.thread(first.message_id)
    assert news.reply.text.startswith("Firing: instance=b")

    # One resolves: it says how long it fired.
    rig.receive(
        alert(instance="a", status="resolved", ends_at=later(14)),
        alert(instance="b", starts_at=later(3)),
    )
    rig.run()
    now = render_text(rig.slack.current(first.message_id))
    assert "1 firing, 1 resolved" in now
    assert "instance=a: resolved, fired for 14m" in now
    assert rig.slack.thread(first.message_id)[-1].reply.text == "Resolved: instance=a, after 14m."
    assert rig.graph is not None and rig.graph.calls == 1  # once per group, not per chat

    # The other resolves too: no buttons left.
    rig.receive(alert(instance="b", status="resolved", starts_at=later(3), ends_at=later(63)))
    rig.run()
    final = rig.slack.current(first.message_id)
    assert render_text(final).startswith("✅ ErrorBudgetBurn · checkout/prod · page: resolved")
    assert "fired for 1h" in render_text(final)
    assert final.buttons == ()
    assert len(rig.slack.top("C0PAY")) == 1 and len(rig.telegram.top("-1001")) == 1


def test_unmatched_alerts_go_to_the_default_and_muted_ones_are_stored_not_sent(rig: Rig) -> None:
    rig.receive(alert("TrafficBurst", service="search", severity="info"))
    rig.now[0] = datetime(2026, 11, 28, 12, 0, tzinfo=T0.tzinfo)  # a Saturday: telegram muted
    rig.receive(alert("PodCrashLooping", service="search", severity="page"))
    rig.run()
    [burst] = rig.slack.top("C0OPS")
    assert "TrafficBurst" in burst.reply.text
    assert burst.reply.buttons[3].command == "/agent BurstPredictor analyze"
    assert not rig.telegram.posts
    assert rig.states() == {(OPS, "sent"): 1, (TG, "muted"): 1}
    assert rig.store.count() == 2


def test_a_retry_stores_and_sends_nothing_twice(rig: Rig) -> None:
    body = WebhookPayload.model_validate(payload([alert(), alert(service="cart")]))
    first = rig.store.ingest(body, at=T0)
    again = rig.store.ingest(body, at=later(1))
    assert (first.new, again.new, again.repeated) == (2, 0, {"firing": 2})
    rig.run()
    rig.store.ingest(body, at=later(2))
    rig.run()
    assert rig.store.count() == 2
    assert len(rig.slack.top("C0PAY")) == 1 and not rig.slack.edits


def test_a_chat_that_fails_loses_nothing_and_gets_it_later(rig: Rig) -> None:
    rig.telegram.fail = 1
    rig.receive(alert())
    rig.delivery.route_pending()
    with pytest.raises(ConnectionError):
        rig.delivery.send_step(TG)
    assert rig.states()[(TG, "pending")] == 1
    rig.run()
    assert len(rig.telegram.top("-1001")) == 1
    assert rig.states()[(TG, "sent")] == 1


def test_a_destination_that_falls_behind_gets_a_digest_with_the_counts(tmp_path: Path) -> None:
    routes = {"routes": [], "delivery": {"fold_after": 3}}
    rig = _rig(tmp_path, routes)
    try:
        for service, count in (("checkout", 200), ("cart", 100)):
            for i in range(count):
                rig.receive(alert("HighErrorRate", service=service, severity="page", pod=f"p{i}"))
        for i in range(5):
            rig.receive(alert("PodCrashLooping", service=f"s{i}", severity="ticket"))
        rig.run()
        [digest] = rig.slack.top("C0OPS")
        assert digest.reply.text.startswith(
            "📦 305 alerts folded: HighErrorRate×300 (checkout 200, cart 100), "
            "PodCrashLooping×5 (s0 1, s1 1, s2 1, s3 1, 1 more services)."
        )
        assert rig.states() == {(OPS, "folded"): 305}
        # Calm again: the next change of a group is a message of its own, with its state.
        rig.receive(
            alert(
                "PodCrashLooping",
                service="s0",
                severity="ticket",
                status="resolved",
                ends_at=later(5),
            )
        )
        rig.run()
        latest = rig.slack.top("C0OPS")[-1]
        assert latest.reply.text.startswith("✅ PodCrashLooping · s0/prod · ticket: resolved")
    finally:
        rig.store.close()
        rig.runtime.close()


def test_ack_records_who_audits_and_edits_every_message_of_the_group(rig: Rig) -> None:
    rig.receive(alert())
    rig.run()
    message = rig.slack.top("C0PAY")[0]
    group = message.reply.buttons[-1].command.split()[-1]
    carol = say(rig.runtime, f"/ack {group}", as_="carol")
    assert carol.error and "operator" in carol.text  # viewers may not ack
    reply = say(rig.runtime, f"/ack {group}", as_="alice")
    assert not reply.error, reply.text
    again = say(rig.runtime, f"/ack {group}", as_="bob")
    assert again.error and "acked by alice" in again.text
    assert say(rig.runtime, "/ack 999", as_="bob").text == "There is no alert group 999."
    rig.run()
    for surface, channel in ((rig.slack, "C0PAY"), (rig.telegram, "-1001")):
        shown = surface.current(surface.top(channel)[0].message_id)
        assert re.search(r"Acked by alice at \d\d \w+ \d\d:\d\d UTC\.", shown.text)
        assert "Ack" not in [b.label for b in shown.buttons]
    entry = audit.tail(rig.runtime.store, limit=1)[0]
    assert (entry.actor, entry.action, entry.subject) == ("alice", "acked", f"alert-group-{group}")
    assert audit.verify(rig.runtime.store).ok


def test_an_ack_while_the_first_message_is_posted_is_shown_by_an_edit(rig: Rig) -> None:
    rig.receive(alert())
    rig.slack.before_post = lambda: say(rig.runtime, "/ack 1", as_="alice")
    rig.run()
    [message] = rig.slack.top("C0PAY")
    assert "Acked" not in message.reply.text  # rendered before the ack
    assert "Acked by alice" in rig.slack.current(message.message_id).text


def test_opsgate_alerts_list_shows_every_stored_alert_and_where_it_went(rig: Rig) -> None:
    rig.receive(alert(), alert(service="cart"))
    rig.receive(alert("TrafficBurst", service="search", severity="info"))
    rig.run()
    opsgate = str(Path(sys.executable).parent / "opsgate")
    listed = subprocess.run(
        [opsgate, "alerts", "list", "--data-dir", str(rig.data_dir), "--status", "firing"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    assert (
        "TrafficBurst" in lines[0] and "search/prod" in lines[0] and "slack:C0OPS sent" in lines[0]
    )
    assert "slack:C0PAY sent, telegram:-1001 sent" in lines[1]
