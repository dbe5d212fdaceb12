"""POST /alertmanager under real uvicorn: credentials, validation, storage before the 200."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bots.alert_routes import RoutesConfig
from bots.alerts_setup import AlertWiring, connect_alerts
from bots.settings import PROJECT_ROOT, RuntimeSettings
from tests.bots.alert_support import RecordingSurface, alert, later, payload
from tests.bots.test_web import Served, demo_runtime, say, scrape, serving, value, wait_for

TOKEN = "am-token-6f1c0e2b9d"
PASSWORD = "am-password-51d2"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Receiver:
    served: Served
    wiring: AlertWiring
    slack: RecordingSurface

    def post(self, body: Any, headers: dict[str, str] | None = None) -> Any:
        content = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.served.client.post(
            "/alertmanager", content=content, headers=BEARER if headers is None else headers
        )

    def posted(self, alertname: str) -> list[Any]:
        return [p for p in self.slack.top("C0OPS") if f" {alertname} " in p.reply.text]

    def idle(self) -> bool:
        unrouted, pending = self.wiring.store.backlog()
        return unrouted == 0 and not any(pending.values())


def _serve(tmp_path: Path, **secrets: Any) -> Iterator[Receiver]:
    runtime = demo_runtime(tmp_path / "data")
    routes = RoutesConfig.model_validate(
        {
            "default": {
                "changes_channels": False,
                "destinations": [{"platform": "slack", "channel": "C0OPS"}],
            },
            "delivery": {"poll": 0.05, "slack_interval": 0},
        }
    )
    config = dataclasses.replace(runtime.config, routes=routes)
    settings = RuntimeSettings(
        data_dir=tmp_path / "data", config_dir=PROJECT_ROOT / "config", **secrets
    )
    slack = RecordingSurface("slack")
    wiring = connect_alerts(settings, config, runtime, surfaces={"slack": slack})
    with serving(runtime, routers=wiring.routers) as served:
        yield Receiver(served, wiring, slack)
    wiring.store.close()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """One server for the module: tests use alerts of their own and compare counts."""
    yield from _serve(
        tmp_path_factory.mktemp("receiver"),
        alertmanager_token=SecretStr(TOKEN),
        alertmanager_password=SecretStr(PASSWORD),
    )


Families = dict[str, list[tuple[dict[str, str], float]]]


def _value(families: Families, name: str, **labels: str) -> float:
    return value(families, name, **labels) if name.removesuffix("_total") in families else 0.0


def _delta(before: Families, after: Families, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_alerts_are_stored_before_the_200_and_then_posted(receiver: Receiver) -> None:
    before = receiver.wiring.store.count()
    answer = receiver.post(payload([alert("Stored", pod="a"), alert("Stored", pod="b")]))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "stored",
        "group": answer.json()["group"],
        "new": 2,
        "repeated": 0,
    }
    assert receiver.wiring.store.count() == before + 2
    wait_for(lambda: bool(receiver.posted("Stored")), what="the group's message")
    assert "2 firing" in receiver.posted("Stored")[0].reply.text


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        (BEARER, True),
        ({"Authorization": f"bearer  {TOKEN}"}, True),
        (_basic("alertmanager", PASSWORD), True),
        ({"Authorization": f"Bearer {TOKEN}x"}, False),
        ({"Authorization": TOKEN}, False),
        (_basic("alertmanager", "guess"), False),
        (_basic("someone", PASSWORD), False),
        ({"Authorization": "Basic !!!notbase64"}, False),
        ({}, False),
    ],
)
def test_only_the_configured_credentials_are_accepted(
    receiver: Receiver, headers: dict[str, str], accepted: bool
) -> None:
    before = receiver.wiring.store.count()
    answer = receiver.post(payload([alert("Auth", pod=str(headers))]), headers=headers)
    assert answer.status_code == (200 if accepted else 401)
    assert receiver.wiring.store.count() == before + (1 if accepted else 0)
    if not accepted:
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert TOKEN not in answer.text


def test_without_configured_credentials_every_request_is_refused(tmp_path: Path) -> None:
    for receiver in _serve(tmp_path):
        assert receiver.post(payload([alert()])).status_code == 401
        assert (
            receiver.post(payload([alert()]), headers={"Authorization": "Bearer x"}).status_code
            == 401
        )
        assert receiver.wiring.store.count() == 0


def _broken(change: Any) -> dict[str, Any]:
    body = payload([alert(), alert(service="cart")])
    change(body)
    return body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "the body is not JSON"),
        ([1, 2], "(top level): Input should be a valid dictionary"),
        (_broken(lambda b: b.update(version="3")), "version: Input should be '4'"),
        (_broken(lambda b: b.pop("groupKey")), "groupKey: Field required"),
        (_broken(lambda b: b.update(alerts=[])), "alerts: List should have at least 1 item"),
        (
            _broken(lambda b: b["alerts"][1].pop("fingerprint")),
            "alerts.1.fingerprint: Field required",
        ),
        (_broken(lambda b: b["alerts"][1].update(status="pending")), "alerts.1.status"),
        (_broken(lambda b: b["alerts"][1].update(startsAt="yesterday")), "alerts.1.startsAt"),
        (_broken(lambda b: b["alerts"][1]["labels"].update(n=1)), "alerts.1.labels.n"),
    ],
)
def test_a_bad_payload_gets_400_with_the_reason_and_nothing_is_stored(
    receiver: Receiver, body: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = receiver.wiring.store.count()
    answer = receiver.post(body)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert receiver.wiring.store.count() == before  # the valid first alert is not stored either
    assert any("refused a payload" in r.getMessage() for r in caplog.records)


def test_a_retry_is_stored_once_and_a_resolution_is_new(receiver: Receiver) -> None:
    before = scrape(receiver.served.client)
    body = payload([alert("Retried")])
    assert receiver.post(body).json()["new"] == 1
    again = receiver.post(body).json()
    assert (again["new"], again["repeated"]) == (0, 1)
    resolved = payload([alert("Retried", status="resolved", ends_at=later(20))])
    assert receiver.post(resolved).json()["new"] == 1
    assert [a.status for a in receiver.wiring.store.alerts(limit=2)] == ["resolved", "firing"]
    after = scrape(receiver.served.client)
    for name, status, more in (
        ("opsgate_alerts_received_total", "firing", 2),
        ("opsgate_alerts_received_total", "resolved", 1),
        ("opsgate_alerts_repeated_total", "firing", 1),
    ):
        assert value(after, name, status=status) - _value(before, name, status=status) == more
    wait_for(  # an edit, or the first post if the sender saw both at once
        lambda: any(
            "resolved, fired for 20m" in receiver.slack.current(p.message_id).text
            for p in receiver.posted("Retried")
        ),
        what="the message to show the resolution",
    )


def test_a_chat_that_is_down_loses_nothing(receiver: Receiver) -> None:
    wait_for(receiver.idle, what="earlier tests' messages")
    before = scrape(receiver.served.client)
    receiver.slack.fail = 1
    assert receiver.post(payload([alert("Down")])).status_code == 200
    wait_for(lambda: bool(receiver.posted("Down")), what="the retry after the failure", timeout=10)
    wait_for(receiver.idle, what="the notice to be settled")
    after = scrape(receiver.served.client)
    slack = {"platform": "slack"}
    assert (
        _delta(before, after, "opsgate_alert_notifications_total", outcome="failed", **slack) == 1
    )
    assert _delta(before, after, "opsgate_alert_notifications_total", outcome="sent", **slack) == 1
    assert _delta(before, after, "opsgate_alert_chat_calls_total", kind="post", **slack) == 1
    assert _delta(before, after, "opsgate_alertmanager_webhooks_total", outcome="accepted") == 1
    assert value(after, "opsgate_alert_queue_depth", destination="slack:C0OPS") == 0
    assert value(after, "opsgate_alerts_unrouted") == 0


def test_commands_are_counted_and_timed_by_name_and_outcome(receiver: Receiver) -> None:
    say(receiver.served.runtime, "/help", as_="alice")
    say(receiver.served.runtime, "/scale nosuch 3", as_="alice")
    say(receiver.served.runtime, "/frobnicate", as_="alice")
    families = scrape(receiver.served.client)
    commands = "opsgate_chat_commands_total"
    assert value(families, commands, command="help", outcome="ok") == 1
    assert value(families, commands, command="scale", outcome="refused") == 1
    assert value(families, commands, command="unknown", outcome="refused") == 1
    counts = [
        v
        for labels, v in families["opsgate_chat_command_duration_seconds"]
        if labels.get("command") == "help" and "le" not in labels
    ]
    assert 1 in counts
