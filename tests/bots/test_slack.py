"""The Slack adapter end to end: signed requests into uvicorn, replies out to a fake Slack API."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bots.app import Runtime, build_runtime
from bots.config import load_config
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.slack import MAX_SECTION_CHARS, SlackAdapter, render_blocks
from bots.types import Button, Reply, Table
from bots.web import register_adapter
from tests.bots.test_web import Served, serving, wait_for
from tests.fakes.slack_api import (
    ALICE,
    BOB,
    BOT_USER_ID,
    OPS,
    FakeSlack,
    Message,
    UploadedFile,
    app_mention_event,
    block_actions_body,
    event_body,
    message_im_event,
    signed_headers,
    slash_command_body,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
STRANGER = "U0STRANGER"


@dataclass
class Slack:
    """The served app and the fake workspace, seen from one test's own channel."""

    fake: FakeSlack
    adapter: SlackAdapter
    served: Served
    channel: str

    @property
    def runtime(self) -> Runtime:
        return self.served.runtime

    def post(self, body: str, *, secret: str = SECRET, timestamp: int | None = None) -> int:
        headers = signed_headers(body, secret, timestamp)
        return self.served.client.post("/slack/events", content=body, headers=headers).status_code

    def command(self, text: str, *, user: str = ALICE) -> int:
        return self.post(slash_command_body(text=text, user_id=user, channel_id=self.channel))

    def posted(self, channel: str | None = None) -> list[Message]:
        messages = self.fake.channel_messages(channel or self.channel)
        return [m for m in messages if m.user == BOT_USER_ID]

    def next_reply(self, before: int, channel: str | None = None) -> Message:
        wait_for(lambda: len(self.posted(channel)) > before, what="a reply in Slack")
        return self.posted(channel)[before]

    def proposals(self) -> int:
        return len(list(self.runtime.engine.proposals()))


def slack_config(tmp_path: Path) -> Path:
    """The project's config, with Alice's and Bob's Slack users added to their people."""
    config_dir = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    users_file = config_dir / "users.yaml"
    users = yaml.safe_load(users_file.read_text())
    users["people"]["alice"]["identities"].append(f"slack:{ALICE}")
    users["people"]["bob"]["identities"].append(f"slack:{BOB}")
    users_file.write_text(yaml.safe_dump(users))
    return config_dir


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slack]:
    tmp_path = tmp_path_factory.mktemp("slack")
    config_dir = slack_config(tmp_path)
    settings = RuntimeSettings(data_dir=tmp_path / "data", config_dir=config_dir)
    config = load_config(config_dir, repo_root=PROJECT_ROOT)
    runtime = build_runtime(settings, config, notifier=None, demo=True)
    with FakeSlack() as fake:
        adapter = SlackAdapter(
            gateway=runtime.gateway,
            store=runtime.chat,
            bot_token=fake.bot_token,
            signing_secret=SECRET,
            api_base_url=fake.api_url,
        )
        with serving(runtime, tick_every=0.05, routers=[adapter.router()]) as served:
            register_adapter(served.app, "slack", adapter.started)
            assert served.client.get("/readyz").status_code == 503
            adapter.start()
            assert served.client.get("/readyz").status_code == 200
            yield Slack(fake=fake, adapter=adapter, served=served, channel=OPS)


@pytest.fixture
def slack(workspace: Slack, request: pytest.FixtureRequest) -> Slack:
    """A fresh channel per test, so each test sees only its own replies."""
    channel = workspace.fake.add_channel(request.node.name[:60].lower().replace("_", "-"))
    return replace(workspace, channel=channel.id)


def section_texts(message: Message) -> str:
    return "\n".join(b["text"]["text"] for b in message.blocks or [] if b["type"] == "section")


def buttons(message: Message) -> dict[str, dict[str, Any]]:
    return {
        element["text"]["text"]: element
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    }


def press(slack: Slack, card: Message, label: str, *, user: str) -> int:
    button = buttons(card)[label]
    body = block_actions_body(
        button["action_id"],
        button["value"],
        user_id=user,
        channel_id=slack.channel,
        message=card.to_json(),
    )
    return slack.post(body)


def open_proposal(slack: Slack, command: str) -> tuple[str, Message]:
    """Each test scales its own target: the runtime is shared by the module's tests."""
    assert slack.command(command) == 200
    card = slack.next_reply(0)
    proposal = section_texts(card).split("Opened ", 1)[1].split(":", 1)[0]
    return proposal, card


# --- commands, buttons and who pressed them -------------------------------------------------


def test_a_slash_command_posts_a_proposal_card_with_buttons(slack: Slack) -> None:
    proposal, card = open_proposal(slack, "scale cart 5 prod")

    assert slack.runtime.engine.get(proposal).state.value == "open"
    assert "cart/prod" in section_texts(card)
    assert card.text, "a fallback text is always set"
    assert {"Approve", "Show diff"} <= set(buttons(card))
    assert buttons(card)["Approve"]["value"] == f"/approve {proposal}"
    assert slack.fake.calls_to("auth.test"), "start() checks the token"


def test_another_approver_pressing_approve_applies_the_proposal(slack: Slack) -> None:
    proposal, card = open_proposal(slack, "scale checkout 4")

    assert press(slack, card, "Approve", user=BOB) == 200

    reply = slack.next_reply(1)
    assert f"Approved {proposal}" in section_texts(reply)
    wait_for(
        lambda: slack.runtime.engine.get(proposal).state.value == "applied",
        what="the approved proposal to be applied",
    )


def test_pressing_approve_on_your_own_proposal_is_refused_by_the_policy(slack: Slack) -> None:
    proposal, card = open_proposal(slack, "scale cart 4")

    assert press(slack, card, "Approve", user=ALICE) == 200

    reply = slack.next_reply(1)
    assert "nobody approves their own change" in section_texts(reply)
    assert slack.runtime.engine.get(proposal).state.value == "open"


def test_a_button_press_from_an_unknown_user_is_refused(slack: Slack) -> None:
    proposal, card = open_proposal(slack, "scale search 4")

    assert press(slack, card, "Approve", user=STRANGER) == 200

    assert f"I don't know slack:{STRANGER}" in section_texts(slack.next_reply(1))
    assert slack.runtime.engine.get(proposal).state.value == "open"


def test_an_unknown_slack_user_gets_the_gateways_refusal(slack: Slack) -> None:
    assert slack.command("status", user=STRANGER) == 200

    text = section_texts(slack.next_reply(0))
    assert f"I don't know slack:{STRANGER}" in text
    assert "config/users.yaml" in text


def test_a_mention_runs_the_command_after_it(slack: Slack) -> None:
    body = event_body(
        app_mention_event(f"<@{BOT_USER_ID}> status", user=BOB, channel=slack.channel)
    )

    assert slack.post(body) == 200

    reply = slack.next_reply(0)
    assert "```" in section_texts(reply), "the status tables are preformatted"
    assert "checkout" in section_texts(reply)


def test_an_event_slack_retries_runs_once(slack: Slack) -> None:
    body = event_body(
        app_mention_event(f"<@{BOT_USER_ID}> scale search 6 prod", user=BOB, channel=slack.channel),
        event_id="Ev0RETRY01",
    )
    before = slack.proposals()

    assert slack.post(body) == 200
    slack.next_reply(0)
    retry = signed_headers(body, SECRET) | {
        "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout",
    }
    answer = slack.served.client.post("/slack/events", content=body, headers=retry)

    assert answer.status_code == 200
    assert slack.proposals() == before + 1
    time.sleep(0.3)  # a second run would have posted its reply by now
    assert len(slack.posted()) == 1


def test_a_direct_message_is_answered_in_the_same_conversation(slack: Slack) -> None:
    im = slack.fake.open_im(ALICE).id

    assert slack.post(event_body(message_im_event("help", channel=im))) == 200
    reply = slack.next_reply(0, channel=im)

    assert "You are alice" in section_texts(reply)


def test_a_graph_is_uploaded_as_a_png(slack: Slack) -> None:
    assert slack.command("predict checkout prod") == 200

    def uploaded() -> list[UploadedFile]:
        return [f for f in slack.fake.files.values() if slack.channel in f.channels]

    wait_for(lambda: bool(uploaded()), what="the graph to be uploaded")
    (graph,) = uploaded()
    assert graph.name == "graph.png"
    assert graph.content is not None and graph.content.startswith(b"\x89PNG")
    assert len(slack.posted()) == 2, "the forecast text, then the graph"


def test_a_rate_limited_post_is_retried_after_retry_after(slack: Slack) -> None:
    earlier = len(slack.fake.calls_to("chat.postMessage"))
    slack.fake.rate_limit("chat.postMessage", retry_after=1)

    assert slack.command("help") == 200

    reply = slack.next_reply(0)
    assert "Commands you may run" in section_texts(reply)
    statuses = [c.status for c in slack.fake.calls_to("chat.postMessage")[earlier:]]
    assert statuses[:2] == [429, 200]


# --- request verification -------------------------------------------------------------------


def test_a_request_signed_with_the_wrong_secret_is_rejected(slack: Slack) -> None:
    assert slack.command("status") == 200  # the same request, correctly signed, is served
    slack.next_reply(0)
    posts, proposals = len(slack.fake.calls_to("chat.postMessage")), slack.proposals()

    body = slash_command_body(text="scale checkout 4", channel_id=slack.channel)
    assert slack.post(body, secret="not-the-signing-secret") == 401

    time.sleep(0.3)
    assert len(slack.fake.calls_to("chat.postMessage")) == posts
    assert slack.proposals() == proposals


def test_a_request_older_than_five_minutes_is_rejected(slack: Slack) -> None:
    posts, proposals = len(slack.fake.calls_to("chat.postMessage")), slack.proposals()
    body = slash_command_body(text="scale checkout 4", channel_id=slack.channel)

    assert slack.post(body, timestamp=int(time.time()) - 6 * 60) == 401

    time.sleep(0.3)
    assert len(slack.fake.calls_to("chat.postMessage")) == posts
    assert slack.proposals() == proposals


def test_a_replayed_request_is_rejected(slack: Slack) -> None:
    body = slash_command_body(text="status", channel_id=slack.channel)
    headers = signed_headers(body, SECRET)

    first = slack.served.client.post("/slack/events", content=body, headers=headers)
    slack.next_reply(0)
    replayed = slack.served.client.post("/slack/events", content=body, headers=headers)

    assert (first.status_code, replayed.status_code) == (200, 401)
    time.sleep(0.3)
    assert len(slack.posted()) == 1


def test_a_command_registered_on_its_own_works_like_opsgate_command(slack: Slack) -> None:
    body = slash_command_body("/status", "", user_id=BOB, channel_id=slack.channel)

    assert slack.post(body) == 200

    assert "checkout" in section_texts(slack.next_reply(0))


def test_a_tampered_button_press_is_rejected(slack: Slack) -> None:
    proposal, card = open_proposal(slack, "scale checkout 6 prod")
    button = buttons(card)["Approve"]
    signed = block_actions_body(
        button["action_id"], button["value"], user_id=ALICE, channel_id=slack.channel
    )
    headers = signed_headers(signed, SECRET)
    forged = signed.replace(ALICE, BOB)

    answer = slack.served.client.post("/slack/events", content=forged, headers=headers)

    assert answer.status_code == 401
    time.sleep(0.3)
    assert slack.runtime.engine.get(proposal).state.value == "open"


# --- rendering ------------------------------------------------------------------------------


def test_long_text_is_split_across_sections_and_messages_not_cut() -> None:
    lines = [f"line {n:05d} <x> & y" for n in range(10_000)]
    reply = Reply(
        text="\n".join(lines),
        tables=(Table(columns=("a",), rows=tuple((str(n),) for n in range(2000))),),
        buttons=(Button("Approve", "/approve x-1", style="primary"),),
        footer=("see <docs>",),
    )

    messages = render_blocks(reply)

    assert len(messages) > 1
    blocks = [b for m in messages for b in m.blocks]
    assert all(len(m.blocks) <= 50 and m.text for m in messages)
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(text) <= MAX_SECTION_CHARS for text in sections)
    shown = "\n".join(t for t in sections if not t.startswith("```"))
    assert shown == "\n".join(
        line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for line in lines
    )
    table_rows = "\n".join(t.strip("`\n") for t in sections if t.startswith("```"))
    assert table_rows.splitlines()[-1] == "1999"
    assert blocks[-2]["type"] == "actions" and blocks[-2]["elements"][0]["style"] == "primary"
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "see &lt;docs&gt;"}],
    }


def test_an_error_reply_is_marked_and_escaped() -> None:
    (message,) = render_blocks(Reply(text="no <b> & such", error=True))

    assert message.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "⚠️ no &lt;b&gt; &amp; such"}}
    ]
    assert message.text == "⚠️ no &lt;b&gt; &amp; such"


def test_the_help_reply_posts_every_command(slack: Slack) -> None:
    assert slack.command("/help") == 200

    reply = slack.next_reply(0)
    for name in ("/status", "/scale", "/approve"):
        assert name in section_texts(reply)
    assert json.dumps(reply.blocks).count("```") >= 2
