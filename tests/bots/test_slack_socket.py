"""Slack in Socket Mode: envelopes over a WebSocket into the real slack-bolt, replies to a fake API.

opsgate is wired as `opsgate serve` wires it (connect_chat with chat.slack.mode: socket), under
uvicorn; the Socket Mode connection lives in the web app's lifespan.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from bots.app import Runtime, build_runtime
from bots.chat_setup import connect_chat
from bots.config import ConfigBundle, load_config
from bots.errors import StartupError
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.slack import SlackAdapter
from bots.web import register_adapter
from tests.bots.test_slack import buttons, section_texts, slack_config
from tests.bots.test_web import Served, serving, wait_for
from tests.fakes.slack_api import (
    ALICE,
    BOB,
    BOT_USER_ID,
    OPS,
    FakeSlack,
    Message,
    app_mention_event,
)
from tests.fakes.slack_socket_mode import Ack, FakeSocketMode

NAMES = {ALICE: "alice", BOB: "bob"}


@dataclass
class Workspace:
    fake: FakeSlack
    socket: FakeSocketMode
    served: Served
    settings: RuntimeSettings
    config: ConfigBundle
    channel: str

    @property
    def runtime(self) -> Runtime:
        return self.served.runtime

    def command(self, text: str, *, user: str = ALICE) -> Ack:
        return self.socket.send_slash_command(
            text, user_id=user, user_name=NAMES.get(user, "someone"), channel_id=self.channel
        )

    def press(self, card: Message, label: str, *, user: str) -> Ack:
        button = buttons(card)[label]
        return self.socket.send_interactive(
            button["action_id"],
            button["value"],
            user_id=user,
            user_name=NAMES.get(user, "someone"),
            channel_id=self.channel,
            message=card.to_json(),
        )

    def posted(self) -> list[Message]:
        return [m for m in self.fake.channel_messages(self.channel) if m.user == BOT_USER_ID]

    def next_reply(self, before: int) -> Message:
        wait_for(lambda: len(self.posted()) > before, what="a reply in Slack")
        return self.posted()[before]

    def open_proposal(self, command: str) -> tuple[str, Message]:
        self.command(command)
        card = self.next_reply(0)
        return section_texts(card).split("Opened ", 1)[1].split(":", 1)[0], card


def socket_config(tmp_path: Path, api_url: str) -> Path:
    config_dir = slack_config(tmp_path)
    settings_file = config_dir / "settings.yaml"
    general = yaml.safe_load(settings_file.read_text())
    general["chat"] = {"slack": {"enabled": True, "mode": "socket", "api_base_url": api_url}}
    settings_file.write_text(yaml.safe_dump(general))
    return config_dir


def with_slack(config: ConfigBundle, **changes: Any) -> ConfigBundle:
    chat = config.general.chat
    slack = chat.slack.model_copy(update=changes)
    general = config.general.model_copy(update={"chat": chat.model_copy(update={"slack": slack})})
    return dataclasses.replace(config, general=general)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    tmp_path = tmp_path_factory.mktemp("slack-socket")
    with FakeSlack() as fake, FakeSocketMode(fake) as socket:
        config_dir = socket_config(tmp_path, fake.api_url)
        settings = RuntimeSettings(
            data_dir=tmp_path / "data",
            config_dir=config_dir,
            slack_bot_token=SecretStr(fake.bot_token),
            slack_app_token=SecretStr(fake.add_app_token()),  # and no signing secret
            scheduler=False,
        )
        config = load_config(config_dir, repo_root=PROJECT_ROOT)
        runtime = build_runtime(settings, config, notifier=None, demo=True)
        chat = connect_chat(settings, config, runtime)
        with serving(runtime, tick_every=0.05, routers=chat.routers) as served:
            for name, started in chat.readiness:
                register_adapter(served.app, name, started)
            wait_for(lambda: served.client.get("/readyz").status_code == 200, what="readiness")
            yield Workspace(fake, socket, served, settings, config, OPS)


@pytest.fixture
def slack(workspace: Workspace, request: pytest.FixtureRequest) -> Workspace:
    """A fresh channel per test, so each test sees only its own replies."""
    channel = workspace.fake.add_channel(request.node.name[:60].lower().replace("_", "-"))
    return dataclasses.replace(workspace, channel=channel.id)


# --- commands, buttons and mentions over the socket -----------------------------------------


def test_a_slash_command_is_acked_at_once_and_answered_with_a_card(slack: Workspace) -> None:
    ack = slack.command("scale cart 5 prod")

    assert ack.payload is None, "an empty ack: the card is posted with chat.postMessage"
    assert ack.seconds < 1
    card = slack.next_reply(0)
    assert "cart/prod" in section_texts(card)
    assert {"Approve", "Show diff"} <= set(buttons(card))


def test_another_approver_pressing_approve_applies_the_proposal(slack: Workspace) -> None:
    proposal, card = slack.open_proposal("scale checkout 4")

    assert slack.press(card, "Approve", user=BOB).envelope_type == "interactive"

    assert f"Approved {proposal}" in section_texts(slack.next_reply(1))
    wait_for(
        lambda: slack.runtime.engine.get(proposal).state.value == "applied",
        what="the approved proposal to be applied",
    )


def test_pressing_approve_on_your_own_proposal_is_refused_by_the_policy(
    slack: Workspace,
) -> None:
    proposal, card = slack.open_proposal("scale cart 4")

    slack.press(card, "Approve", user=ALICE)

    assert "nobody approves their own change" in section_texts(slack.next_reply(1))
    assert slack.runtime.engine.get(proposal).state.value == "open"


def test_a_mention_runs_the_command_after_it(slack: Workspace) -> None:
    event = app_mention_event(f"<@{BOT_USER_ID}> status", user=BOB, channel=slack.channel)

    slack.socket.send_event(event)

    text = section_texts(slack.next_reply(0))
    assert "```" in text and "checkout" in text


def test_an_event_slack_redelivers_runs_once(slack: Workspace) -> None:
    event = app_mention_event(
        f"<@{BOT_USER_ID}> scale search 6 prod", user=BOB, channel=slack.channel
    )
    before = len(list(slack.runtime.engine.proposals()))

    slack.socket.send_event(event, event_id="Ev0SOCKET01")
    slack.next_reply(0)
    retry = slack.socket.send_event(
        event, event_id="Ev0SOCKET01", retry_attempt=1, retry_reason="timeout"
    )

    assert retry.envelope_type == "events_api", "a redelivery is acked too, or Slack retries"
    assert len(list(slack.runtime.engine.proposals())) == before + 1
    time.sleep(0.3)  # a second run would have posted its reply by now
    assert len(slack.posted()) == 1


# --- the connection ---------------------------------------------------------------------------


def test_refresh_requested_reconnects_and_keeps_working(slack: Workspace) -> None:
    opened = len(slack.fake.calls_to("apps.connections.open"))
    old = slack.socket.wait_connected()

    new = slack.socket.disconnect("refresh_requested")

    assert len(slack.fake.calls_to("apps.connections.open")) == opened + 1
    assert slack.command("help").link == new.id != old.id
    assert "Commands you may run" in section_texts(slack.next_reply(0))
    wait_for(lambda: slack.served.client.get("/readyz").status_code == 200, what="readiness")


def test_socket_mode_serves_no_unsigned_http_endpoint(slack: Workspace) -> None:
    answer = slack.served.client.post("/slack/events", content="command=/opsgate&text=status")

    assert answer.status_code == 404


def test_readiness_waits_for_slacks_hello(slack: Workspace) -> None:
    with FakeSlack() as fake, FakeSocketMode(fake) as socket:
        adapter = SlackAdapter(
            gateway=slack.runtime.gateway,
            store=slack.runtime.chat,
            bot_token=fake.bot_token,
            app_token=fake.add_app_token(),
            api_base_url=fake.api_url,
        )
        adapter.start()
        adapter.check_app_token()
        assert not adapter.started(), "tokens checked, but not connected"

        socket.hold_hellos()
        adapter.connect_socket()
        wait_for(lambda: bool(socket.links()), what="the WebSocket handshake")
        time.sleep(0.2)
        assert not adapter.started(), "connected, but Slack has not said hello"

        socket.release_hellos()
        wait_for(adapter.started, what="the adapter to be started")
        assert len(fake.calls_to("apps.connections.open")) == 1, "start-up's URL was used"
        adapter.stop()
        assert not adapter.started()
        wait_for(lambda: socket.links()[0].closed, what="the connection to close")


# --- start-up errors ------------------------------------------------------------------------


def test_a_bot_token_in_place_of_the_app_token_stops_start_up(slack: Workspace) -> None:
    settings = slack.settings.model_copy(
        update={"slack_app_token": SecretStr(slack.fake.bot_token)}
    )

    with pytest.raises(StartupError) as refused:
        connect_chat(settings, slack.config, slack.runtime)

    message = str(refused.value)
    assert "OPSGATE_SLACK_APP_TOKEN" in message and "not_allowed_token_type" in message
    assert "not an app-level token" in message and "connections:write" in message


def test_socket_mode_without_an_app_token_names_it_not_the_signing_secret(
    slack: Workspace,
) -> None:
    settings = slack.settings.model_copy(
        update={"slack_app_token": None, "slack_signing_secret": SecretStr("set-but-unused")}
    )

    with pytest.raises(StartupError) as refused:
        connect_chat(settings, slack.config, slack.runtime)

    message = str(refused.value)
    assert "OPSGATE_SLACK_BOT_TOKEN and OPSGATE_SLACK_APP_TOKEN are not both set" in message
    assert "OPSGATE_SLACK_SIGNING_SECRET" not in message


def test_http_mode_without_a_signing_secret_names_it(slack: Workspace) -> None:
    config = with_slack(slack.config, mode="http")

    with pytest.raises(StartupError) as refused:
        connect_chat(slack.settings, config, slack.runtime)  # an app token, no signing secret

    message = str(refused.value)
    assert "OPSGATE_SLACK_BOT_TOKEN and OPSGATE_SLACK_SIGNING_SECRET are not both set" in message
