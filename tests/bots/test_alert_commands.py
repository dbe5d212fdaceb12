"""/alerts, /silence and /unsilence typed in chat, against a real Alertmanager."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approval_engine import audit
from bots.settings import PROJECT_ROOT
from bots.testing import FakeChat
from tests.alertmanager_server import AlertmanagerServer, running_alertmanager
from tests.prometheus_server import free_port

CONFIG = """
route:
  receiver: nowhere
receivers:
  - name: nowhere
inhibit_rules:
  - source_matchers: ['severity="page"']
    target_matchers: ['severity="ticket"']
    equal: [alertname, service]
"""

BURST_CHECKOUT = {"alertname": "TrafficBurst", "service": "checkout", "env": "prod"}
BURST_CART = {"alertname": "TrafficBurst", "service": "cart", "env": "prod"}
BURN = {"alertname": "ErrorBudgetBurn", "service": "cart", "env": "prod"}


def config_dir(tmp_path: Path, alertmanager_url: str) -> Path:
    """The project's config/, with settings.yaml pointing at this Alertmanager."""
    directory = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", directory)
    settings = directory / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8")
        + f"\nalerts:\n  alertmanager_url: {alertmanager_url}\n  alertmanager_timeout: 5\n",
        encoding="utf-8",
    )
    return directory


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AlertmanagerServer]:
    with running_alertmanager(tmp_path / "am", config=CONFIG) as server:
        server.post(
            [
                {"labels": {**BURST_CHECKOUT, "severity": "info"}},
                {"labels": {**BURST_CART, "severity": "info"}},
                {"labels": {**BURN, "severity": "page"}},
                {"labels": {**BURN, "severity": "ticket"}},
            ]
        )
        yield server


@pytest.fixture
def chat(tmp_path: Path, alertmanager: AlertmanagerServer) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data", config_dir=config_dir(tmp_path, alertmanager.url))
    yield fake
    fake.close()


def fingerprint(alertmanager: AlertmanagerServer, labels: dict[str, str]) -> str:
    for alert in alertmanager.get("/api/v2/alerts"):
        if all(alert["labels"].get(k) == v for k, v in labels.items()):
            return str(alert["fingerprint"])
    raise AssertionError(f"no alert {labels}")


def silences(alertmanager: AlertmanagerServer) -> list[dict[str, Any]]:
    return [s for s in alertmanager.get("/api/v2/silences") if s["status"]["state"] == "active"]


def audited(chat: FakeChat, action: str) -> list[audit.Entry]:
    return [e for e in audit.tail(chat.runtime.store, limit=100) if e.action == action]


def test_alerts_lists_what_fires_with_severity_age_and_state(
    chat: FakeChat, alertmanager: AlertmanagerServer
) -> None:
    said = chat.say("/alerts", as_="carol")
    assert not said.error, said.text
    assert "4 alerts firing: 0 silenced, 1 inhibited." in said.text
    (table,) = said.reply.tables
    assert table.columns == ("alert", "where", "severity", "age", "state", "fingerprint")
    assert [row[2] for row in table.rows] == ["page", "ticket", "info", "info"]
    page, ticket = table.rows[0], table.rows[1]
    assert page[:3] == ("ErrorBudgetBurn", "cart/prod", "page")
    assert page[4] == "firing"
    assert ticket[4] == "inhibited"
    assert page[3].endswith("s")  # seconds old
    assert page[5] == fingerprint(alertmanager, {**BURN, "severity": "page"})


def test_alerts_by_service_or_severity(chat: FakeChat) -> None:
    by_service = chat.say("/alerts cart", as_="carol")
    assert {row[0] for row in by_service.reply.tables[0].rows} == {
        "TrafficBurst",
        "ErrorBudgetBurn",
    }
    assert "3 alerts firing for cart" in by_service.text
    by_severity = chat.say("/alerts info", as_="carol")
    assert {row[1] for row in by_severity.reply.tables[0].rows} == {"checkout/prod", "cart/prod"}
    nothing = chat.say("/alerts search", as_="carol")
    assert not nothing.error
    assert (
        "No alerts firing for search in Alertmanager. (4 fire elsewhere: /alerts)" in nothing.text
    )


def test_silence_a_fingerprint_matches_exactly_that_alert_and_is_audited(
    chat: FakeChat, alertmanager: AlertmanagerServer
) -> None:
    target = fingerprint(alertmanager, BURST_CHECKOUT)
    said = chat.say(f'/silence {target} 4h "load test until 16:00"', as_="alice")
    assert not said.error, said.text
    assert "Silenced TrafficBurst on checkout/prod for 4h" in said.text
    assert "(1 alert firing now)" in said.text

    (silence,) = silences(alertmanager)
    assert silence["createdBy"] == "alice"
    assert silence["comment"] == "load test until 16:00 (by alice via opsgate, console:alice)"
    matchers = {m["name"]: m["value"] for m in silence["matchers"]}
    assert matchers == {**BURST_CHECKOUT, "severity": "info"}
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"])
    assert said.reply.buttons[0].command == f"/unsilence {silence['id']}"
    assert silence["id"] in said.text

    (entry,) = audited(chat, "silenced")
    assert (entry.actor, entry.subject) == ("alice", silence["id"])
    assert entry.detail["comment"] == "load test until 16:00"
    assert entry.detail["duration"] == "4h"
    assert entry.detail["via"] == "console:alice"
    assert audit.verify(chat.runtime.store).ok

    listed = chat.say("/alerts checkout", as_="carol")
    assert listed.reply.tables[0].rows[0][4] == f"silenced ({silence['id'][:8]})"


def test_silence_an_alertname_everywhere_or_narrowed_by_labels(
    chat: FakeChat, alertmanager: AlertmanagerServer
) -> None:
    narrowed = chat.say("/silence TrafficBurst 30m service=cart scaling it up", as_="alice")
    assert not narrowed.error, narrowed.text
    assert 'Silenced TrafficBurst (service="cart") for 30m' in narrowed.text
    (silence,) = silences(alertmanager)
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {
        "alertname": "TrafficBurst",
        "service": "cart",
    }
    assert silence["comment"].startswith("scaling it up (by alice")

    everywhere = chat.say("/silence TrafficBurst 1h", as_="bob")
    assert "Silenced every TrafficBurst for 1h" in everywhere.text
    assert "(2 alerts firing now)" in everywhere.text
    newest = next(s for s in silences(alertmanager) if s["createdBy"] == "bob")
    assert newest["matchers"] == [
        {"name": "alertname", "value": "TrafficBurst", "isRegex": False, "isEqual": True}
    ]
    assert newest["comment"] == "silenced from chat (by bob via opsgate, console:bob)"


def test_unsilence_by_id_or_its_first_characters(
    chat: FakeChat, alertmanager: AlertmanagerServer
) -> None:
    chat.say("/silence ErrorBudgetBurn 1h", as_="alice")
    (silence,) = silences(alertmanager)
    said = chat.say(f"/unsilence {silence['id'][:8]}", as_="bob")
    assert not said.error, said.text
    assert f"Ended silence {silence['id']}" in said.text
    assert "created by alice" in said.text
    assert silences(alertmanager) == []
    (entry,) = audited(chat, "unsilenced")
    assert (entry.actor, entry.subject) == ("bob", silence["id"])
    assert entry.detail["created_by"] == "alice"

    again = chat.say(f"/unsilence {silence['id']}", as_="bob")
    assert not again.error
    assert "already ended" in again.text
    assert len(audited(chat, "unsilenced")) == 1


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        (
            "/silence TrafficBurts 1h",
            "No alert firing now has the name or fingerprint "
            "'TrafficBurts'. Did you mean TrafficBurst?",
        ),
        ("/silence 0123456789abcdef 1h", "No alert firing now has the name or fingerprint"),
        ("/silence TrafficBurst 1h service=search", 'No firing TrafficBurst has service="search"'),
        ("/silence TrafficBurst soon", "'soon' is not a duration like 30s, 15m, 24h or 7d"),
        ("/silence TrafficBurst 8d", "A silence from chat lasts between 1m and 7d, not 8d."),
        ("/silence TrafficBurst", "Usage: /silence <alertname|fingerprint> <duration>"),
        ("/unsilence 5e0d1a2b-0000-4000-8000-000000000000", "Alertmanager has no silence"),
        ("/unsilence", "Usage: /unsilence <silence id>"),
        ("/alerts cart page", "Usage: /alerts [service|severity]"),
    ],
)
def test_mistakes_get_clear_errors_and_change_nothing(
    chat: FakeChat, alertmanager: AlertmanagerServer, typed: str, words: str
) -> None:
    said = chat.say(typed, as_="alice")
    assert said.error
    assert words in said.text
    assert silences(alertmanager) == []
    assert audited(chat, "silenced") == []


def test_viewers_may_look_but_not_silence(chat: FakeChat, alertmanager: AlertmanagerServer) -> None:
    said = chat.say("/silence TrafficBurst 1h", as_="carol")
    assert said.error
    assert "/silence needs the operator role" in said.text
    assert silences(alertmanager) == []
    (denial,) = audited(chat, "denied")
    assert denial.detail["attempted"] == "silence"


def test_alertmanager_down_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    chat = FakeChat(tmp_path / "data", config_dir=config_dir(tmp_path, url))
    try:
        for typed in ("/alerts", "/silence TrafficBurst 1h", "/unsilence abcd1234"):
            said = chat.say(typed, as_="alice")
            assert said.error
            assert f"Alertmanager at {url} cannot be reached" in said.text
            assert "try again shortly" in said.text
            assert "reference" not in said.text  # not an apology: nothing went wrong inside
        assert audited(chat, "silenced") == []
    finally:
        chat.close()


def test_silence_pressed_after_the_alert_resolved_uses_the_stored_labels(
    chat: FakeChat, alertmanager: AlertmanagerServer
) -> None:
    from bots.alert_payload import WebhookPayload
    from bots.alert_store import AlertStore
    from tests.bots.alert_support import alert, payload

    store = AlertStore(chat.runtime.store.engine)
    gone = alert("PodCrashLooping", service="search", severity="ticket", pod="search-7")
    store.ingest(WebhookPayload.model_validate(payload([gone])), at=chat.runtime.engine.clock())
    chat.runtime.services.alerts = store

    said = chat.say(f"/silence {gone['fingerprint']} 1h", as_="alice")

    assert not said.error, said.text
    assert "PodCrashLooping on search/prod (not firing now)" in said.text
    (silence,) = silences(alertmanager)
    assert {m["name"]: m["value"] for m in silence["matchers"]} == gone["labels"]
    store.close()
