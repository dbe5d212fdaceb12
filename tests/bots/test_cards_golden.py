"""Proposal cards as people read them in Slack (Block Kit) and Telegram (HTML), golden."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bots._telegram_html import render_html
from bots.commands.proposals import proposal_card
from bots.slack import render_blocks
from bots.testing import FakeChat
from bots.types import Reply

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data", clock=lambda: NOON)
    yield fake
    fake.close()


def _slack(reply: Reply) -> str:
    messages = [{"text": m.text, "blocks": m.blocks} for m in render_blocks(reply)]
    return json.dumps(messages, indent=2, ensure_ascii=False) + "\n"


def _telegram(reply: Reply) -> str:
    buttons = "  ".join(f"[{b.label}]" for b in reply.buttons)
    return (
        "\n---\n".join(render_html(reply)) + (f"\n--- buttons: {buttons}" if buttons else "") + "\n"
    )


def test_an_open_prod_card(chat: FakeChat, golden: Callable[[str, str], None]) -> None:
    chat.say("/scale checkout 6 prod", as_="alice")
    card = proposal_card(chat.runtime.engine.get("scale-1"))
    golden("cards/slack-open.json", _slack(card))
    golden("cards/telegram-open.html", _telegram(card))


def test_an_applied_card_has_no_buttons(chat: FakeChat, golden: Callable[[str, str], None]) -> None:
    chat.say("/scale checkout 4", as_="alice")
    chat.say("/approve scale-1", as_="bob")
    card = proposal_card(chat.runtime.engine.get("scale-1"))
    assert not card.buttons
    golden("cards/slack-applied.json", _slack(card))
    golden("cards/telegram-applied.html", _telegram(card))
