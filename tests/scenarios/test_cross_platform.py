"""Slack and Telegram at once: an agent's card in both, approved from each, applied in both.

The real slack-bolt and python-telegram-bot talk to FakeSlack and FakeTelegram; opsgate runs
as `opsgate serve` wires it (connect_chat), under uvicorn, with the tick loop moving proposals.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from approval_engine import audit
from approval_engine.model import State
from bots.agent_bridge import announce_run
from bots.app import Runtime, build_runtime
from bots.chat_setup import connect_chat
from bots.config import load_config
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.web import register_adapter
from tests.bots.test_web import Served, serving, wait_for
from tests.fakes.slack_api import (
    ALICE,
    BOB,
    BOT_USER_ID,
    OPS,
    FakeSlack,
    Message,
    block_actions_body,
    signed_headers,
    slash_command_body,
)
from tests.fakes.telegram_api import FakeChat, FakeMessage, FakeTelegram, FakeUser

# Sunday noon: BurstPredictor sees Monday's 10:00 burst on checkout/prod coming.
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECRET = "5ce7b1a1d2e3f4a5b6c7d8e9f0a1b2c3"
CAROL = "U0CAROL01"


@dataclass
class World:
    runtime: Runtime
    served: Served
    slack: FakeSlack
    telegram: FakeTelegram
    group: FakeChat
    dave: FakeUser
    erin: FakeUser

    def slack_post(self, body: str) -> int:
        headers = signed_headers(body, SECRET)
        return self.served.client.post("/slack/events", content=body, headers=headers).status_code

    def slack_cards(self, proposal_id: str) -> list[Message]:
        """The Slack messages that are the proposal's cards, as the store remembers them."""
        cards = self.runtime.chat.cards(proposal_id)
        found = [
            self.slack.message(c.channel, c.message_id) for c in cards if c.platform == "slack"
        ]
        return [m for m in found if m is not None]

    def telegram_cards(self, proposal_id: str) -> list[FakeMessage]:
        ids = {
            int(c.message_id)
            for c in self.runtime.chat.cards(proposal_id)
            if c.platform == "telegram" and c.channel == str(self.group.id)
        }
        return [m for m in self.telegram.messages[self.group.id] if m.message_id in ids]

    def cards_shown(self, proposal_id: str) -> tuple[int, int]:
        """How many top-level messages in each chat show the proposal's card."""
        slack = [
            m
            for m in self.slack.channel_messages(OPS)
            if m.user == BOT_USER_ID and m.thread_ts is None and m.text.startswith(proposal_id)
        ]
        telegram = [
            m
            for m in self.telegram.messages[self.group.id]
            if m.reply_to is None and (m.text or "").startswith(proposal_id)
        ]
        return len(slack), len(telegram)

    def bot_messages(self) -> tuple[int, int]:
        slack = [m for m in self.slack.channel_messages(OPS) if m.user == BOT_USER_ID]
        return len(slack), len(self.telegram.messages[self.group.id])

    def telegram_thread(self, card: FakeMessage) -> list[str]:
        return [
            m.text or ""
            for m in self.telegram.messages[self.group.id]
            if m.reply_to is not None and m.reply_to.message_id == card.message_id
        ]


def _config(
    tmp: Path, slack: FakeSlack, telegram: FakeTelegram, group: FakeChat, **people: str
) -> Path:
    config_dir = tmp / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    users_file = config_dir / "users.yaml"
    users = yaml.safe_load(users_file.read_text())
    for name, identity in people.items():
        users["people"][name]["identities"].append(identity)
    users_file.write_text(yaml.safe_dump(users))
    settings_file = config_dir / "settings.yaml"
    general = yaml.safe_load(settings_file.read_text())
    general["chat"] = {
        "slack": {"enabled": True, "api_base_url": slack.api_url, "changes_channel": OPS},
        "telegram": {
            "enabled": True,
            "mode": "polling",
            "api_base_url": telegram.url,
            "allowed_chats": [group.id],
            "changes_chat": group.id,
            "send_interval": 0.01,  # the fake has no flood limit; the pacing has its own test
        },
        "command_channels": {"approve": [f"slack:{OPS}", f"telegram:{group.id}"]},
    }
    settings_file.write_text(yaml.safe_dump(general))
    return config_dir


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with FakeSlack() as slack, FakeTelegram() as telegram:
        slack.add_user("carol", id=CAROL)
        dave, erin = telegram.new_user("dave"), telegram.new_user("erin")
        group = telegram.group_chat("prod-changes")
        config_dir = _config(
            tmp_path,
            slack,
            telegram,
            group,
            alice=f"slack:{ALICE}",
            bob=f"slack:{BOB}",
            carol=f"slack:{CAROL}",
            dave=f"telegram:{dave.id}",
        )
        settings = RuntimeSettings(
            data_dir=tmp_path / "data",
            config_dir=config_dir,
            slack_bot_token=SecretStr(slack.bot_token),
            slack_signing_secret=SecretStr(SECRET),
            telegram_bot_token=SecretStr(telegram.token),
            scheduler=False,
        )
        config = load_config(config_dir, repo_root=PROJECT_ROOT)
        runtime = build_runtime(settings, config, notifier=None, demo=False, clock=lambda: SUNDAY)
        chat = connect_chat(settings, config, runtime)
        assert chat.platforms == ["slack", "telegram"]
        with serving(runtime, tick_every=0.05, routers=chat.routers) as served:
            for name, started in chat.readiness:
                register_adapter(served.app, name, started)
            wait_for(lambda: served.client.get("/readyz").status_code == 200, what="readiness")
            yield World(runtime, served, slack, telegram, group, dave, erin)


def _burst_card(world: World) -> str:
    """The scheduler's path: BurstPredictor runs, its proposal is announced."""
    result = world.runtime.agents.run("BurstPredictor", mode="optimize")
    assert result.outcome == "ok", result.message
    announce_run(world.runtime.gateway, result)
    proposal = next(p for p in world.runtime.engine.proposals() if p.kind == "burst")
    return proposal.id


def _button(blocks: list[dict[str, Any]] | None, label: str) -> dict[str, Any]:
    for block in blocks or []:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                return dict(element)
    raise AssertionError(f"no {label!r} button in {blocks}")


def _callback(message: FakeMessage, label: str) -> str:
    for row in (message.reply_markup or {}).get("inline_keyboard", []):
        for button in row:
            if button["text"] == label:
                return str(button["callback_data"])
    raise AssertionError(f"no {label!r} button on message {message.message_id}")


def test_an_agents_card_is_approved_in_slack_and_telegram_and_both_cards_follow(
    world: World,
) -> None:
    proposal_id = _burst_card(world)
    wait_for(
        lambda: world.slack_cards(proposal_id) and world.telegram_cards(proposal_id),
        what="both cards",
    )
    slack_card, telegram_card = (
        world.slack_cards(proposal_id)[0],
        world.telegram_cards(proposal_id)[0],
    )
    assert f"{proposal_id}: burst: checkout/prod" in slack_card.text
    assert "approvals 0 of 2" in slack_card.text
    assert "approvals 0 of 2" in (telegram_card.text or "")
    assert world.cards_shown(proposal_id) == (1, 1)

    # Bob presses Approve on the Slack card: the same path as typing /approve.
    approve = _button(slack_card.blocks, "Approve")
    body = block_actions_body(
        approve["action_id"],
        approve["value"],
        user_id=BOB,
        user_name="bob",
        message=slack_card.to_json(),
    )
    assert world.slack_post(body) == 200
    wait_for(
        lambda: "approvals 1 of 2 (bob)" in (world.telegram_cards(proposal_id)[0].text or ""),
        what="the Telegram card to show Bob's approval",
    )
    assert "approvals 1 of 2 (bob)" in world.slack.message(OPS, slack_card.ts).text  # type: ignore[union-attr]
    wait_for(
        lambda: any("approved by bob (1 of 2" in t for t in world.telegram_thread(telegram_card)),
        what="Bob's approval in the Telegram card's thread",
    )

    # Dave presses Approve on the Telegram card; the quorum is met and the change applies.
    world.telegram.press(
        world.group,
        world.dave,
        telegram_card.message_id,
        _callback(world.telegram_cards(proposal_id)[0], "Approve"),
    )
    wait_for(
        lambda: world.runtime.engine.get(proposal_id).state == State.APPLIED,
        what="the proposal to be applied",
        timeout=20,
    )
    wait_for(
        lambda: (
            "State: applied" in (world.telegram_cards(proposal_id)[0].text or "")
            and "State: applied" in world.slack.message(OPS, slack_card.ts).text
        ),  # type: ignore[union-attr]
        what="both cards to say applied",
    )
    final_slack = world.slack.message(OPS, slack_card.ts)
    assert final_slack is not None
    assert not [b for b in final_slack.blocks or [] if b["type"] == "actions"]  # no buttons left
    assert world.telegram_cards(proposal_id)[0].reply_markup is None
    thread = [m.text for m in world.slack.thread(OPS, slack_card.ts)]
    assert any("applied" in text for text in thread), thread
    wait_for(
        lambda: any("applied" in text for text in world.telegram_thread(telegram_card)),
        what="the apply in the Telegram card's thread",
    )
    approvers = [a.approver for a in world.runtime.engine.get(proposal_id).approvals]
    assert sorted(approvers) == ["bob", "dave"]
    # Still one card per chat: every state edited it rather than posting another.
    assert world.cards_shown(proposal_id) == (1, 1)


def test_approve_is_refused_outside_the_changes_channels_and_audited(world: World) -> None:
    proposal_id = _burst_card(world)
    elsewhere = world.telegram.private_chat(world.dave)
    denied = "/approve may only be used in"
    body = slash_command_body(text=f"approve {proposal_id}", user_id=BOB, channel_id="C0GENERAL")
    assert world.slack_post(body) == 200
    wait_for(
        lambda: any(denied in m.text for m in world.slack.channel_messages("C0GENERAL")),
        what="the refusal in #general",
    )
    assert not world.runtime.engine.get(proposal_id).approvals
    last = audit.tail(world.runtime.store, limit=1)[0]
    assert (last.actor, last.action, last.subject) == ("bob", "denied", "slack:C0GENERAL")
    # The private chat is not in allowed_chats: Telegram refuses before any command runs.
    world.telegram.say(elsewhere, world.dave, f"/approve {proposal_id}")
    wait_for(
        lambda: any(
            "not allowed to use opsgate" in (m.text or "")
            for m in world.telegram.messages[elsewhere.id]
        ),
        what="the Telegram refusal",
    )
    assert not world.runtime.engine.get(proposal_id).approvals


def test_a_tick_after_delivery_sends_nothing_again(world: World) -> None:
    proposal_id = _burst_card(world)
    wait_for(
        lambda: world.slack_cards(proposal_id) and world.telegram_cards(proposal_id),
        what="both cards",
    )
    before = world.bot_messages()
    world.runtime.gateway.tick()
    world.runtime.gateway.tick()
    assert world.bot_messages() == before
    assert world.cards_shown(proposal_id) == (1, 1)
