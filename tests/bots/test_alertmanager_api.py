"""The Alertmanager API v2 client against a real Alertmanager, and its errors on the wire."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bots.alertmanager_api import (
    AlertmanagerClient,
    AlertmanagerError,
    AlertmanagerUnavailableError,
    Matcher,
)
from bots.errors import CommandError
from tests.alertmanager_server import AlertmanagerServer, running_alertmanager
from tests.prometheus_server import free_port

INHIBITING = """
route:
  receiver: nowhere
receivers:
  - name: nowhere
inhibit_rules:
  - source_matchers: ['severity="page"']
    target_matchers: ['severity="ticket"']
    equal: [alertname, service]
"""

BURST = {"alertname": "TrafficBurst", "service": "checkout", "env": "prod", "severity": "info"}


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AlertmanagerServer]:
    with running_alertmanager(tmp_path / "am", config=INHIBITING) as server:
        yield server


@pytest.fixture
def client(alertmanager: AlertmanagerServer) -> Iterator[AlertmanagerClient]:
    am = AlertmanagerClient(base_url=alertmanager.url, timeout=5)
    yield am
    am.close()


def test_alerts_with_labels_annotations_state_and_filters(
    alertmanager: AlertmanagerServer, client: AlertmanagerClient
) -> None:
    page = {"alertname": "ErrorBudgetBurn", "service": "cart", "severity": "page"}
    alertmanager.post(
        [
            {
                "labels": BURST,
                "annotations": {"runbook_url": "https://runbooks/traffic-burst.md"},
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up&g0.tab=1",
            },
            {"labels": page},
            {"labels": {**page, "severity": "ticket"}},
        ]
    )
    alerts = client.alerts()
    assert len(alerts) == 3
    burst = next(a for a in alerts if a.name == "TrafficBurst")
    assert burst.labels == BURST
    assert burst.annotations["runbook_url"] == "https://runbooks/traffic-burst.md"
    assert burst.generator_url.endswith("g0.expr=up&g0.tab=1")
    assert len(burst.fingerprint) == 16
    assert burst.starts_at <= datetime.now(UTC)
    ticket = next(a for a in alerts if a.labels["severity"] == "ticket")
    assert ticket.state == "suppressed"
    assert ticket.inhibited_by
    assert [a.name for a in client.alerts(matchers=[Matcher("service", "checkout")])] == [
        "TrafficBurst"
    ]
    assert len(client.alerts(inhibited=False)) == 2


def test_silence_created_listed_and_expired(
    alertmanager: AlertmanagerServer, client: AlertmanagerClient
) -> None:
    alertmanager.post([{"labels": BURST}])
    ends = datetime.now(UTC) + timedelta(hours=1)
    silence_id = client.create_silence(
        [Matcher("alertname", "TrafficBurst"), Matcher("env", "prod|staging", regex=True)],
        ends_at=ends,
        created_by="alice",
        comment="deploying",
    )
    silence = client.silence(silence_id)
    assert silence.state == "active"
    assert silence.created_by == "alice"
    assert silence.comment == "deploying"
    assert str(silence.matchers[1]) == 'env=~"prod|staging"'
    assert abs((silence.ends_at - ends).total_seconds()) < 1
    assert [s.id for s in client.silences()] == [silence_id]
    (alert,) = client.alerts()
    assert alert.silenced_by == (silence_id,)

    client.expire_silence(silence_id)
    assert client.silence(silence_id).state == "expired"
    client.expire_silence(silence_id)  # again: no error
    (alert,) = client.alerts()
    assert alert.silenced_by == ()


def test_refusals_are_permanent_errors_with_alertmanagers_words(
    client: AlertmanagerClient,
) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(AlertmanagerError, match=r"HTTP 400.*Failed to create silence") as refused:
        client.create_silence([Matcher("a", "b")], ends_at=past, created_by="x", comment="")
    assert not isinstance(refused.value, AlertmanagerUnavailableError)
    assert isinstance(refused.value, CommandError)  # the gateway shows its text
    with pytest.raises(AlertmanagerError, match="not found"):
        client.expire_silence("00000000-0000-0000-0000-000000000000")
    with pytest.raises(AlertmanagerError, match="at least one matcher"):
        client.create_silence([], ends_at=past, created_by="x", comment="")
    with pytest.raises(AlertmanagerError, match="bad matcher format"):
        client._json("GET", "/api/v2/alerts", "list alerts", params=[("filter", "bad")])


def test_no_alertmanager_is_a_temporary_error_that_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        AlertmanagerClient(base_url=url, timeout=2) as client,
        pytest.raises(AlertmanagerUnavailableError, match=r"cannot be reached") as down,
    ):
        client.alerts()
    assert url in str(down.value)
    assert "alerts.alertmanager_url" in str(down.value)


def _recording(
    status: int, headers: dict[str, str] | None = None
) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=[] if status == 200 else "busy", headers=headers)

    return seen, httpx.MockTransport(answer)


def test_bearer_and_basic_auth_are_sent_and_never_shown() -> None:
    seen, transport = _recording(200)
    token = SecretStr("s3cret-token")
    client = AlertmanagerClient(base_url="http://am:9093", token=token, transport=transport)
    assert client.alerts() == []
    assert seen[-1].headers["Authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in repr(client)
    basic = AlertmanagerClient(
        base_url="http://am:9093",
        token=SecretStr("ops:pa:ss"),
        auth="basic",
        transport=transport,
    )
    basic.silences()
    expected = base64.b64encode(b"ops:pa:ss").decode()
    assert seen[-1].headers["Authorization"] == f"Basic {expected}"
    assert seen[-1].url.path == "/api/v2/silences"


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (503, AlertmanagerUnavailableError, "HTTP 503"),
        (429, AlertmanagerUnavailableError, "try again shortly"),
        (401, AlertmanagerError, "OPSGATE_ALERTMANAGER_API_TOKEN"),
        (403, AlertmanagerError, "HTTP 403"),
    ],
)
def test_http_failures(status: int, kind: type[Exception], words: str) -> None:
    _, transport = _recording(status, headers={"Retry-After": "7"})
    client = AlertmanagerClient(base_url="http://am:9093", transport=transport)
    with pytest.raises(kind, match=words) as failed:
        client.alerts()
    if isinstance(failed.value, AlertmanagerUnavailableError):
        assert failed.value.retry_after == 7.0
    else:
        assert not isinstance(failed.value, AlertmanagerUnavailableError)


def test_an_answer_that_is_not_alertmanagers() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"no": "fingerprint"}])

    client = AlertmanagerClient(base_url="http://am:9093", transport=httpx.MockTransport(answer))
    with pytest.raises(AlertmanagerError, match="does not answer like Alertmanager"):
        client.alerts()
