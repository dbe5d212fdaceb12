"""The Telegram adapter: real python-telegram-bot against FakeTelegram, a real demo runtime."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from bots.app import Runtime, build_runtime
from bots.config import load_config
from bots.router import Context
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.telegram import MAX_TEXT, TelegramAdapter
from bots.types import Reply
from tests.bots.test_web import serving, wait_for
from tests.fakes.telegram_api import (
    FakeChat,
    FakeMessage,
    FakeTelegram,
    FakeUser,
    callback_update,
    message_update,
)

pytestmark = pytest.mark.anyio

SECRET = "s3cret-webhook-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    fake: FakeTelegram
    runtime: Runtime
    alice: FakeUser
    bob: FakeUser
    group: FakeChat
    adapter: TelegramAdapter

    def sent(self, chat: FakeChat) -> list[FakeMessage]:
        return self.fake.messages[chat.id]

    async def say(self, chat: FakeChat, user: FakeUser, text: str) -> list[FakeMessage]:
        """The user writes; returns what the bot sent in reply."""
        before = len(self.sent(chat))
        await self.adapter.process(self.fake.say(chat, user, text))
        return self.sent(chat)[before:]

    async def press(self, chat: FakeChat, user: FakeUser, message: FakeMessage, label: str) -> Any:
        """The user presses a button; returns the callback answer."""
        answers = len(self.fake.callback_answers)
        await self.adapter.process(
            self.fake.press(chat, user, message.message_id, callback_data(message, label))
        )
        assert len(self.fake.callback_answers) == answers + 1, "the callback was not answered"
        return self.fake.callback_answers[-1]


def telegram_config(tmp: Path, people: dict[str, FakeUser]) -> Path:
    """The project's config, with each person's Telegram identity added to users.yaml."""
    config_dir = tmp / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    users_file = config_dir / "users.yaml"
    users = yaml.safe_load(users_file.read_text())
    for name, user in people.items():
        users["people"][name]["identities"].append(f"telegram:{user.id}")
    users_file.write_text(yaml.safe_dump(users))
    return config_dir


def demo_runtime(tmp: Path, config_dir: Path) -> Runtime:
    settings = RuntimeSettings(data_dir=tmp / "data", config_dir=config_dir)
    config = load_config(config_dir, repo_root=PROJECT_ROOT)
    return build_runtime(settings, config, notifier=None, demo=True)


# One fake and one runtime for the module (building a runtime takes most of a second); each
# test gets its own group chat and adapter, and asserts on what changed.
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture(scope="module")
def people(fake: FakeTelegram) -> dict[str, FakeUser]:
    return {"alice": fake.new_user("alice"), "bob": fake.new_user("bob")}


@pytest.fixture(scope="module")
def runtime(
    tmp_path_factory: pytest.TempPathFactory, people: dict[str, FakeUser]
) -> Iterator[Runtime]:
    tmp = tmp_path_factory.mktemp("telegram")
    runtime = demo_runtime(tmp, telegram_config(tmp, people))
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
async def world(
    fake: FakeTelegram, runtime: Runtime, people: dict[str, FakeUser]
) -> AsyncIterator[World]:
    group = fake.group_chat("sre")
    adapter = TelegramAdapter(
        gateway=runtime.gateway,
        store=runtime.chat,
        token=fake.token,
        base_url=fake.url,
        allowed_chats=frozenset({group.id, people["alice"].id, people["bob"].id}),
        min_send_interval=0,
    )
    await adapter.start()
    try:
        yield World(fake, runtime, people["alice"], people["bob"], group, adapter)
    finally:
        await adapter.stop()


def callback_data(message: FakeMessage, label: str) -> str:
    keyboard = (message.reply_markup or {}).get("inline_keyboard", [])
    found = [b["callback_data"] for row in keyboard for b in row if b["text"] == label]
    assert found, f"no {label!r} button on {message.text!r}"
    return str(found[0])


def card(messages: list[FakeMessage]) -> FakeMessage:
    with_buttons = [m for m in messages if m.reply_markup]
    assert len(with_buttons) == 1, [m.text for m in messages]
    return with_buttons[0]


def opened(messages: list[FakeMessage]) -> str:
    found = re.search(r"Opened (\S+):", "\n".join(m.text or "" for m in messages))
    assert found is not None, [m.text for m in messages]
    return found.group(1)


# --- commands and buttons -------------------------------------------------------------------


async def test_a_scale_command_in_a_group_gets_a_card_with_buttons(world: World) -> None:
    sent = await world.say(world.group, world.alice, "/scale checkout 4")

    proposal = opened(sent)
    message = card(sent)
    keyboard = message.reply_markup["inline_keyboard"]  # type: ignore[index]
    labels = [b["text"] for row in keyboard for b in row]
    assert {"Approve", "Show diff"} <= set(labels)
    for button in (b for row in keyboard for b in row):
        assert len(button["callback_data"].encode()) <= 64
        assert proposal not in button["callback_data"], "callback data must not carry commands"
    assert any(e["type"] == "pre" for m in sent for e in m.entities), "the diff is in <pre>"
    assert world.runtime.engine.get(proposal).state.value == "open"


async def test_another_approver_pressing_approve_applies_the_proposal(world: World) -> None:
    sent = await world.say(world.group, world.alice, "/scale cart 3")
    proposal = opened(sent)

    answer = await world.press(world.group, world.bob, card(sent), "Approve")

    assert "Approved" in answer["text"], answer
    assert world.runtime.engine.get(proposal).state.value == "applied"


async def test_approving_your_own_proposal_is_refused_and_still_answered(world: World) -> None:
    sent = await world.say(world.group, world.alice, "/scale search 4")
    proposal = opened(sent)

    answer = await world.press(world.group, world.alice, card(sent), "Approve")

    assert "nobody approves their own change" in answer["text"], answer
    assert answer.get("show_alert") is True
    assert world.runtime.engine.get(proposal).state.value == "open"


async def test_an_unknown_button_id_has_expired(world: World) -> None:
    proposal = opened(await world.say(world.group, world.alice, "/scale checkout 6 prod"))
    before = len(world.sent(world.group))
    forged = callback_update(world.group, world.bob, 1, f"/approve {proposal}", query_id="q-forged")

    await world.adapter.process(world.fake.push_update(forged))

    assert world.fake.callback_answers[-1]["text"] == "This button has expired"
    assert world.runtime.engine.get(proposal).state.value == "open"
    assert len(world.sent(world.group)) == before


async def test_a_button_pressed_in_another_chat_has_expired(world: World) -> None:
    sent = await world.say(world.group, world.alice, "/scale cart 4")
    data = callback_data(card(sent), "Approve")
    elsewhere = world.fake.private_chat(world.bob)
    moved = callback_update(elsewhere, world.bob, 1, data, query_id="q-moved")

    await world.adapter.process(world.fake.push_update(moved))

    assert world.fake.callback_answers[-1]["text"] == "This button has expired"
    assert world.runtime.engine.get(opened(sent)).state.value == "open"


async def test_commands_addressed_to_us_work_and_to_another_bot_are_ignored(world: World) -> None:
    active = len(world.runtime.engine.proposals(active_only=True))
    ours = await world.say(world.group, world.alice, "/status@opsgate_bot")
    assert ours and "simulated cluster" in "\n".join(m.text or "" for m in ours)

    assert await world.say(world.group, world.alice, "/status@other_bot") == []
    assert await world.say(world.group, world.alice, "/scale@other_bot checkout 4") == []
    assert len(world.runtime.engine.proposals(active_only=True)) == active


async def test_chatter_in_a_group_is_ignored_but_a_private_chat_gets_answers(world: World) -> None:
    assert await world.say(world.group, world.alice, "good morning") == []
    private = world.fake.private_chat(world.alice)
    replies = await world.say(private, world.alice, "good morning")
    assert replies and "/help" in (replies[0].text or "")


async def test_a_chat_outside_the_allowlist_gets_one_refusal_and_nothing_runs(
    world: World,
) -> None:
    other = world.fake.group_chat("strangers")
    active = len(world.runtime.engine.proposals(active_only=True))

    first = await world.say(other, world.bob, "/scale checkout 4")
    again = await world.say(other, world.bob, "/status")

    assert [m.text for m in first] == [
        f"This chat is not allowed to use opsgate; ask an admin to add chat {other.id}."
    ]
    assert again == []
    assert len(world.runtime.engine.proposals(active_only=True)) == active


# --- rendering ------------------------------------------------------------------------------


async def test_markup_in_a_reply_is_escaped_and_accepted_by_telegram(world: World) -> None:
    sent = await world.say(world.group, world.alice, "/scale <script>&x 4")

    assert len(sent) == 1
    assert "unknown service '<script>&x'" in (sent[0].text or "")
    assert "&lt;script&gt;&amp;x" in (sent[0].raw_text or "")
    assert sent[0].parse_mode == "HTML"


async def test_a_long_reply_arrives_in_several_messages_without_losing_a_line(
    world: World,
) -> None:
    lines = [f"line {i:04d} <&> " + "x" * 40 for i in range(300)]

    @world.runtime.gateway.router.command("long")
    def long(_context: Context) -> Reply:
        return Reply(text="A long one:", code="\n".join(lines))

    sent = await world.say(world.group, world.alice, "/long")

    assert len(sent) >= 4
    assert all(len(m.text or "") <= MAX_TEXT for m in sent)
    shown = "\n".join(m.text or "" for m in sent)
    assert shown.splitlines() == ["A long one:", *lines]


async def test_an_image_is_sent_as_a_photo(world: World) -> None:
    data = _tiny_png()

    @world.runtime.gateway.router.command("picture")
    def picture(_context: Context) -> Reply:
        return Reply(text="load", image_png=data)

    sent = await world.say(world.group, world.alice, "/picture")

    assert sent[0].text == "load"
    assert sent[-1].photo == data


def _tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# --- flood control --------------------------------------------------------------------------


async def test_a_429_from_send_message_is_waited_out_and_the_message_delivered(
    world: World,
) -> None:
    world.fake.rate_limit("sendMessage", times=1, retry_after=1)
    started = time.monotonic()

    sent = await world.say(world.group, world.alice, "/status")

    assert time.monotonic() - started >= 1.0
    assert sent and "simulated cluster" in "\n".join(m.text or "" for m in sent)
    statuses = [c.status for c in world.fake.calls if c.method == "sendMessage"]
    assert 429 in statuses and statuses[-1] == 200


async def test_sends_to_one_chat_keep_the_minimum_interval(
    fake: FakeTelegram, runtime: Runtime, people: dict[str, FakeUser]
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    adapter = TelegramAdapter(
        gateway=runtime.gateway,
        store=runtime.chat,
        token=fake.token,
        base_url=fake.url,
        sleep=sleep,
    )
    chat = fake.private_chat(people["alice"])
    before = len(fake.messages[chat.id])
    await adapter.start()
    try:
        await adapter.send(chat.id, Reply(text="one"))
        await adapter.send(chat.id, Reply(text="two"))
        await adapter.send(fake.private_chat(people["bob"]).id, Reply(text="elsewhere"))
    finally:
        await adapter.stop()

    assert [m.text for m in fake.messages[chat.id][before:]] == ["one", "two"]
    assert len(waits) == 1 and 0.5 < waits[0] <= 1.0


# --- modes ----------------------------------------------------------------------------------


async def test_long_polling_answers_a_command(
    fake: FakeTelegram, runtime: Runtime, people: dict[str, FakeUser]
) -> None:
    adapter = TelegramAdapter(
        gateway=runtime.gateway,
        store=runtime.chat,
        token=fake.token,
        base_url=fake.url,
        min_send_interval=0,
    )
    assert not adapter.started()
    chat = fake.private_chat(people["alice"])
    before = len(fake.messages[chat.id])
    await adapter.start_polling()
    try:
        assert adapter.started()
        fake.say(chat, people["alice"], "/status")
        await until(lambda: len(fake.messages[chat.id]) > before, what="the reply")
    finally:
        await adapter.stop()
    assert "simulated cluster" in "\n".join(m.text or "" for m in fake.messages[chat.id][before:])


async def until(condition: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextmanager
def webhook_removed_after(fake: FakeTelegram) -> Iterator[None]:
    """The fake is shared by the module: later tests poll, which a set webhook forbids."""
    try:
        yield
    finally:
        fake.webhook = None


def test_the_webhook_handles_updates_only_with_the_right_secret(
    fake: FakeTelegram, people: dict[str, FakeUser], tmp_path: Path
) -> None:
    """A plain test: uvicorn runs the adapter in its own loop, and closes the runtime."""
    runtime = demo_runtime(tmp_path, telegram_config(tmp_path, people))
    alice = people["alice"]
    chat = fake.private_chat(alice)
    before = len(fake.messages[chat.id])
    adapter = TelegramAdapter(
        gateway=runtime.gateway,
        store=runtime.chat,
        token=fake.token,
        base_url=fake.url,
        webhook_secret=SECRET,
        min_send_interval=0,
    )
    with (
        serving(runtime, tick_every=60, routers=[adapter.webhook_router()]) as served,
        webhook_removed_after(fake),
    ):
        assert adapter.started()
        url = str(served.client.base_url.join("/telegram/webhook"))

        def set_webhook(secret: str | None) -> None:
            params = {"url": url} | ({"secret_token": secret} if secret else {})
            httpx.post(f"{fake.base_url}{fake.token}/setWebhook", json=params).raise_for_status()

        forged = message_update(chat, alice, "/scale checkout 4", update_id=1)
        set_webhook(None)
        assert fake.deliver_to_webhook(forged) == 403
        set_webhook("wrong-secret")
        assert fake.deliver_to_webhook(forged) == 403

        set_webhook(SECRET)
        fake.say(chat, alice, "/status")
        assert fake.deliver_to_webhook() == 200
        wait_for(lambda: len(fake.messages[chat.id]) > before, what="the webhook's reply")

    assert "simulated cluster" in "\n".join(m.text or "" for m in fake.messages[chat.id][before:])
    assert runtime.engine.proposals(active_only=True) == [], "a forged update ran"


# --- once only, and after a restart ---------------------------------------------------------


async def test_an_update_delivered_twice_is_handled_once(world: World) -> None:
    update = world.fake.say(world.group, world.alice, "/scale cart 7 prod")
    active = len(world.runtime.engine.proposals(active_only=True))
    before = len(world.sent(world.group))

    await world.adapter.process(update)
    after_first = len(world.sent(world.group))
    await world.adapter.process(update)  # Telegram re-sends what it thinks was not received

    assert len(world.runtime.engine.proposals(active_only=True)) == active + 1
    assert after_first > before
    assert len(world.sent(world.group)) == after_first


async def test_a_button_still_works_for_a_new_adapter_after_a_restart(
    world: World, people: dict[str, FakeUser]
) -> None:
    sent = await world.say(world.group, world.alice, "/scale search 7 prod")
    proposal, message = opened(sent), card(sent)
    await world.adapter.stop()
    world.adapter = TelegramAdapter(  # what a restarted (or another) replica builds
        gateway=world.runtime.gateway,
        store=world.runtime.chat,
        token=world.fake.token,
        base_url=world.fake.url,
        allowed_chats=frozenset({world.group.id}),
        min_send_interval=0,
    )
    await world.adapter.start()

    answer = await world.press(world.group, world.bob, message, "Approve")

    assert answer["text"].startswith(f"Approved {proposal} (1 of 2"), answer
    assert [a.approver for a in world.runtime.engine.get(proposal).approvals] == ["bob"]


async def test_webhook_mode_registers_the_url_and_secret_with_telegram(
    fake: FakeTelegram, runtime: Runtime
) -> None:
    adapter = TelegramAdapter(
        gateway=runtime.gateway,
        store=runtime.chat,
        token=fake.token,
        base_url=fake.url,
        webhook_secret=SECRET,
    )
    url = "https://opsgate.example.com/telegram/webhook"
    app = FastAPI()
    app.include_router(adapter.webhook_router(register_url=url))
    with webhook_removed_after(fake):
        async with app.router.lifespan_context(app):  # what uvicorn runs at start-up
            assert fake.webhook is not None
            assert (fake.webhook.url, fake.webhook.secret_token) == (url, SECRET)
            assert fake.webhook.allowed_updates == ["message", "callback_query"]
