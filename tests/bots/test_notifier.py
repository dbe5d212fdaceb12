"""The chat notifier: cards in the changes channels, edited and threaded, each sent once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bots.notifier import ChatNotifier
from bots.testing import FakeChat
from bots.types import Reply


class PlatformDownError(Exception):
    pass


@dataclass
class Surface:
    """A chat platform in memory: what was posted where, and every edit."""

    platform: str
    down: bool = False
    failures: int = 0  # the next calls that fail, then it works again
    posts: list[tuple[str, str, str | None]] = field(default_factory=list)  # channel, text, thread
    edits: list[tuple[str, str, str]] = field(default_factory=list)  # channel, id, text
    buttons: dict[str, list[str]] = field(default_factory=dict)  # message id → commands

    def _check(self) -> None:
        if self.failures:
            self.failures -= 1
            raise PlatformDownError(f"{self.platform} had a hiccup")
        if self.down:
            raise PlatformDownError(f"{self.platform} is down")

    def post(self, channel: str, reply: Reply, *, thread: str | None = None) -> str:
        self._check()
        self.posts.append((channel, reply.text, thread))
        message_id = str(len(self.posts))
        self.buttons[message_id] = [b.command for b in reply.buttons]
        return message_id

    def edit(self, channel: str, message_id: str, reply: Reply) -> None:
        self._check()
        self.edits.append((channel, message_id, reply.text))
        self.buttons[message_id] = [b.command for b in reply.buttons]

    def thread(self, message_id: str) -> list[str]:
        return [text for _, text, thread in self.posts if thread == message_id]


@dataclass
class Setup:
    chat: FakeChat
    slack: Surface
    telegram: Surface

    def restart(self, data_dir: Path) -> None:
        self.chat.close()
        self.chat = FakeChat(data_dir, resume=False)
        _connect(self.chat, self.slack, self.telegram)


def _connect(chat: FakeChat, slack: Surface, telegram: Surface) -> None:
    runtime = chat.runtime
    runtime.gateway.notifier = ChatNotifier(
        engine=runtime.engine,
        store=runtime.chat,
        surfaces={"slack": slack, "telegram": telegram},
        changes_channels={"slack": "C0CHANGES", "telegram": "-100200"},
        clock=runtime.engine.clock,
    )


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    chat = FakeChat(tmp_path / "data")
    slack, telegram = Surface("slack"), Surface("telegram")
    _connect(chat, slack, telegram)
    both = Setup(chat, slack, telegram)
    yield both
    both.chat.close()


def test_an_opened_proposal_gets_one_card_per_changes_channel(setup: Setup) -> None:
    assert not setup.chat.say("/scale checkout 4", as_="alice").error
    for surface, channel in ((setup.slack, "C0CHANGES"), (setup.telegram, "-100200")):
        assert len(surface.posts) == 1
        where, text, thread = surface.posts[0]
        assert (where, thread) == (channel, None)
        assert text.startswith("scale-1: scale: checkout/staging")
        assert surface.buttons["1"] == ["/approve scale-1", "/reject scale-1", "/diff scale-1"]
    cards = setup.chat.runtime.chat.cards("scale-1")
    assert {(c.platform, c.channel, c.message_id) for c in cards} == {
        ("slack", "C0CHANGES", "1"),
        ("telegram", "-100200", "1"),
    }


def test_each_later_state_edits_the_cards_and_replies_in_their_threads(setup: Setup) -> None:
    setup.chat.say("/scale checkout 4", as_="alice")
    setup.chat.say("/approve scale-1", as_="bob")
    assert setup.chat.runtime.engine.get("scale-1").state.value == "applied"
    for surface in (setup.slack, setup.telegram):
        assert surface.edits[-1][1] == "1"
        assert "State: applied" in surface.edits[-1][2]
        assert surface.buttons["1"] == []  # nothing left to decide
        thread = surface.thread("1")
        assert [t.split(" ")[0] for t in thread] == ["scale-1"] * len(thread)
        assert any("applied" in t for t in thread)
        assert len([p for p in surface.posts if p[2] is None]) == 1  # still the one card


def test_a_platform_that_is_down_gets_what_it_missed_and_the_other_nothing_twice(
    setup: Setup, tmp_path: Path
) -> None:
    setup.chat.say("/scale checkout 4", as_="alice")
    setup.telegram.down = True
    setup.chat.say("/approve scale-1", as_="bob")
    slack_seen = (list(setup.slack.posts), list(setup.slack.edits))
    assert any("applied" in t for t in setup.slack.thread("1"))  # Slack is not held back
    assert not setup.telegram.thread("1")

    # opsgate restarts while Telegram is still down, then Telegram comes back.
    setup.restart(tmp_path / "data")
    setup.chat.runtime.gateway.tick()
    setup.telegram.down = False
    setup.chat.runtime.gateway.tick()

    assert (setup.slack.posts, setup.slack.edits) == slack_seen  # nothing sent twice
    thread = setup.telegram.thread("1")
    assert any("approved" in t for t in thread) and any("applied" in t for t in thread)
    assert "State: applied" in setup.telegram.edits[-1][2]
    assert len(thread) == len(setup.slack.thread("1"))


def test_a_hiccup_delays_a_platform_but_keeps_its_order(setup: Setup) -> None:
    setup.chat.say("/scale checkout 4", as_="alice")
    setup.telegram.failures = 1  # the "approved" edit fails; the next announcements must wait
    setup.chat.say("/approve scale-1", as_="bob")
    assert not setup.telegram.thread("1")
    setup.chat.runtime.gateway.tick()
    assert setup.telegram.thread("1") == setup.slack.thread("1")
    assert "approved by bob" in setup.telegram.thread("1")[0]


def test_news_without_a_proposal_goes_to_every_changes_channel(setup: Setup) -> None:
    notifier = setup.chat.runtime.gateway.notifier
    assert notifier is not None
    from approval_engine.notify import Announcement

    notifier.announce(Announcement(kind="finding", text="[CostWatcher] warning: budget"))
    assert setup.slack.posts == [("C0CHANGES", "[CostWatcher] warning: budget", None)]
    assert setup.telegram.posts == [("-100200", "[CostWatcher] warning: budget", None)]


def test_changes_channels_need_an_adapter(setup: Setup) -> None:
    runtime = setup.chat.runtime
    with pytest.raises(ValueError, match="without an adapter"):
        ChatNotifier(
            engine=runtime.engine,
            store=runtime.chat,
            surfaces={"slack": setup.slack},
            changes_channels={"telegram": "-100200"},
            clock=runtime.engine.clock,
        )
