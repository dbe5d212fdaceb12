"""FakeSocketMode against the real slack_sdk Socket Mode client: hello, envelopes, acks, refresh."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from tests.bots.test_web import wait_for
from tests.fakes.slack_api import APP_ID, BOB, FakeSlack, app_mention_event
from tests.fakes.slack_socket_mode import FakeSocketMode


@dataclass
class App:
    """A bare Socket Mode app: records what it got and acks, echoing slash commands' text."""

    client: SocketModeClient
    requests: list[SocketModeRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def on_request(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        self.requests.append(request)
        payload = None
        if request.type == "slash_commands":
            payload = {"text": f"got {request.payload['text']}"}
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload))

    def on_message(
        self, _client: BaseSocketModeClient, message: dict[str, Any], _raw: str | None
    ) -> None:
        self.messages.append(message)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack) as fake:
        yield fake


@pytest.fixture
def app(slack: FakeSlack, socket_mode: FakeSocketMode) -> Iterator[App]:
    web = WebClient(token=slack.bot_token, base_url=slack.api_url)
    app = App(SocketModeClient(app_token=slack.add_app_token(), web_client=web))
    app.client.socket_mode_request_listeners.append(app.on_request)
    app.client.message_listeners.append(app.on_message)
    app.client.connect()
    socket_mode.wait_connected()
    yield app
    app.client.close()


def test_apps_connections_open_hands_out_a_loopback_ticket_for_an_app_token(
    slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    web = WebClient(token=slack.bot_token, base_url=slack.api_url)

    url = web.apps_connections_open(app_token=slack.add_app_token())["url"]

    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == ("ws", "127.0.0.1", "/link/")
    assert "ticket=" in parts.query and f"app_id={APP_ID}" in parts.query


@pytest.mark.parametrize(
    ("token", "method", "error"),
    [
        ("bot", "apps.connections.open", "not_allowed_token_type"),
        ("app", "chat.postMessage", "not_allowed_token_type"),
        ("app without connections:write", "apps.connections.open", "missing_scope"),
    ],
)
def test_tokens_of_the_wrong_type_or_scope_are_refused(
    slack: FakeSlack, socket_mode: FakeSocketMode, token: str, method: str, error: str
) -> None:
    chosen = {
        "bot": slack.bot_token,
        "app": slack.add_app_token(),
        "app without connections:write": slack.add_app_token(scopes=()),
    }[token]
    web = WebClient(token=chosen, base_url=slack.api_url)

    with pytest.raises(SlackApiError) as refused:
        web.api_call(method, params={"channel": "#ops", "text": "hi"})

    assert refused.value.response["error"] == error


def test_without_socket_mode_the_app_gets_no_url(slack: FakeSlack) -> None:
    web = WebClient(token=slack.bot_token, base_url=slack.api_url)

    with pytest.raises(SlackApiError) as refused:
        web.apps_connections_open(app_token=slack.add_app_token())

    assert refused.value.response["error"] == "access_denied"


def test_the_client_is_greeted_and_its_acks_come_back(
    app: App, socket_mode: FakeSocketMode
) -> None:
    wait_for(lambda: any(m.get("type") == "hello" for m in app.messages), what="hello")
    hello = next(m for m in app.messages if m.get("type") == "hello")
    assert hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": APP_ID}

    ack = socket_mode.send_slash_command("status", user_id=BOB)

    assert ack.envelope_type == "slash_commands"
    assert ack.payload == {"text": "got status"}
    (request,) = app.requests
    assert request.payload["user_id"] == BOB and request.payload["command"] == "/opsgate"
    assert request.accepts_response_payload


def test_events_carry_their_retry_fields_and_interactive_payloads_are_json(
    app: App, socket_mode: FakeSocketMode
) -> None:
    socket_mode.send_event(app_mention_event("hi"), retry_attempt=2, retry_reason="timeout")
    ack = socket_mode.send_interactive("opsgate:button:0", "/approve x-1", user_id=BOB)

    event, action = app.requests
    assert (event.type, event.retry_attempt, event.retry_reason) == ("events_api", 2, "timeout")
    assert event.payload["type"] == "event_callback"
    assert event.payload["event"]["type"] == "app_mention"
    assert action.type == "interactive" and action.payload["type"] == "block_actions"
    assert action.payload["actions"][0]["value"] == "/approve x-1"
    assert ack.payload is None and len(socket_mode.acks) == 2


def test_a_missing_ack_fails_loudly(app: App, socket_mode: FakeSocketMode) -> None:
    app.client.socket_mode_request_listeners.clear()

    with pytest.raises(AssertionError, match="ack of events_api envelope"):
        socket_mode.send_event(app_mention_event("hi"), timeout=0.3)


def test_refresh_requested_moves_the_client_to_a_new_connection(
    slack: FakeSlack, app: App, socket_mode: FakeSocketMode
) -> None:
    old = socket_mode.wait_connected()

    new = socket_mode.disconnect("refresh_requested")

    assert new.id > old.id and new.ticket != old.ticket
    assert len(slack.calls_to("apps.connections.open")) == 2
    wait_for(lambda: old.closed, what="the old connection to close")
    assert socket_mode.send_slash_command("help").link == new.id


def test_pings_are_answered(app: App, socket_mode: FakeSocketMode) -> None:
    socket_mode.ping()


def test_a_ticket_opens_one_connection_only(slack: FakeSlack, socket_mode: FakeSocketMode) -> None:
    url = urlsplit(socket_mode.new_url())
    assert _handshake(url.port or 80, f"{url.path}?{url.query}").startswith(b"HTTP/1.1 101")

    again = _handshake(url.port or 80, f"{url.path}?{url.query}")

    assert again.startswith(b"HTTP/1.1 401")
    assert socket_mode.refused == [f"unknown or used ticket {url.query.split('&')[0][7:]!r}"]


def _handshake(port: int, target: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(request.encode())
        return sock.recv(1024)
