"""The real python-telegram-bot against FakeTelegram: it must answer as the Bot API does."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.telegram_api import (
    ApiError,
    FakeChat,
    FakeTelegram,
    FakeUser,
    callback_update,
    message_update,
    parse_html,
)

T = TypeVar("T")


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(max_poll_timeout=0.3) as fake:
        yield fake


def with_bot(fake: FakeTelegram, scenario: Callable[[Bot], Awaitable[T]]) -> T:
    async def run() -> T:
        bot = Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url)
        async with bot:
            return await scenario(bot)

    return asyncio.run(run())


def alice_chat(fake: FakeTelegram) -> tuple[FakeUser, FakeChat]:
    alice = fake.new_user("alice")
    return alice, fake.private_chat(alice)


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_get_me_is_the_bot_the_token_names(telegram: FakeTelegram) -> None:
    me = with_bot(telegram, lambda bot: bot.get_me())

    assert (me.id, me.username, me.is_bot) == (123456789, "opsgate_bot", True)
    assert telegram.calls[0].method == "getMe"


def test_a_wrong_token_is_unauthorized(telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        async with Bot("42:wrong", base_url=telegram.base_url) as bot:
            await bot.get_me()

    with pytest.raises(InvalidToken):
        asyncio.run(scenario())


def test_html_is_parsed_into_text_and_entities_then_edited(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)

    async def scenario(bot: Bot) -> None:
        sent = await bot.send_message(chat.id, "<b>Plan</b> for a &lt; b & c", parse_mode="HTML")
        assert sent.text == "Plan for a < b & c"
        assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 0, 4)]
        edited = await bot.edit_message_text(
            "<i>Applied</i>", chat.id, sent.message_id, parse_mode="HTML"
        )
        assert isinstance(edited, type(sent)) and edited.edit_date is not None
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text(
                "<i>Applied</i>", chat.id, sent.message_id, parse_mode="HTML"
            )

    with_bot(telegram, scenario)
    [message] = telegram.messages[chat.id]
    assert (message.text, message.raw_text, message.parse_mode) == (
        "Applied",
        "<i>Applied</i>",
        "HTML",
    )
    assert [edit.text for edit in message.edits] == ["Applied"]


def test_editing_only_the_keyboard_away_is_a_change(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:42")]])

    async def scenario(bot: Bot) -> None:
        sent = await bot.send_message(chat.id, "Plan 42", reply_markup=keyboard)
        await bot.edit_message_text("Plan 42", chat.id, sent.message_id)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", chat.id, 999)

    with_bot(telegram, scenario)
    [message] = telegram.messages[chat.id]
    assert message.reply_markup is None and len(message.edits) == 1


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<blink>x</blink>", 'Unsupported start tag "blink" at byte offset 0'),
        ("p99 < 250ms", 'Unsupported start tag "" at byte offset 4'),
        ("é <x>", 'Unsupported start tag "x" at byte offset 3'),
        ("<a href=x/y>t</a>", "Unexpected end of name token at byte offset 9"),
        ('<a href="x" ="y">t</a>', 'Empty attribute name in the tag "a" at byte offset 0'),
        ("<span>s</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("1 <2", "Unclosed start tag at byte offset 2"),
    ],
)
def test_html_errors_are_telegrams(html: str, error: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_html(html)
    assert raised.value.code == 400
    assert raised.value.description.startswith("Bad Request: can't parse entities: ")
    assert error in raised.value.description


def test_bare_ampersands_pass_as_on_telegram() -> None:
    assert parse_html("AT&T &amp; R&D &#33; &#x41; &bogus;") == ("AT&T & R&D ! A &bogus;", [])


def test_markup_that_telegram_refuses_raises_bad_request(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)
    long_data = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="x" * 65)]])
    text_only = {"inline_keyboard": [[{"text": "no action"}]]}

    async def scenario(bot: Bot) -> list[str]:
        failures = []
        for kwargs in (
            {"text": "<b>oops</i>", "parse_mode": "HTML"},
            {"text": "a < b", "parse_mode": "HTML"},
            {"text": "x" * 4097},
            {"text": "go", "reply_markup": long_data},
            {"text": "go", "api_kwargs": {"reply_markup": json.dumps(text_only)}},
            {"text": "   "},
        ):
            with pytest.raises(BadRequest) as raised:
                await bot.send_message(chat.id, **kwargs)
            failures.append(raised.value.message.lower())
        await bot.send_message(chat.id, "y" * 4096)
        await bot.send_message(chat.id, "<b>" + "y" * 4096 + "</b>", parse_mode="HTML")
        return failures

    failures = with_bot(telegram, scenario)
    assert failures[0].startswith("can't parse entities: unmatched end tag")
    assert failures[1].startswith("can't parse entities: unsupported start tag")
    assert failures[2:] == [
        "message is too long",
        "button_data_invalid",
        "can't parse inline keyboard button: text buttons are unallowed in the inline keyboard",
        "message text is empty",
    ]
    assert len(telegram.messages[chat.id]) == 2
    assert [call.status for call in telegram.calls if call.method == "sendMessage"] == [400] * 6 + [
        200
    ] * 2


def test_send_photo_uploads_the_bytes(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)
    image = png(1000, 400)

    async def scenario(bot: Bot) -> bytes:
        sent = await bot.send_photo(chat.id, image, caption="<b>CPU</b> 7d", parse_mode="HTML")
        assert [(p.width, p.height) for p in sent.photo] == [
            (90, 36),
            (320, 128),
            (800, 320),
            (1000, 400),
        ]
        assert sent.caption == "CPU 7d" and sent.caption_entities[0].type == "bold"
        again = await bot.send_photo(chat.id, sent.photo[-1].file_id)  # reuse, no upload
        assert again.photo[-1].file_id == sent.photo[-1].file_id
        with pytest.raises(BadRequest, match="Image_process_failed"):
            await bot.send_photo(chat.id, b"not an image")
        file = await bot.get_file(sent.photo[-1].file_id)
        return bytes(await file.download_as_bytearray())

    assert with_bot(telegram, scenario) == image
    first, second = telegram.messages[chat.id]
    assert first.photo == image and first.caption == "CPU 7d" and second.photo == image
    assert telegram.calls[1].files == {"photo": image}


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_flood_control_answers_429_with_retry_after(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)
    telegram.rate_limit("sendMessage", times=1, retry_after=7)

    async def scenario(bot: Bot) -> RetryAfter:
        with pytest.raises(RetryAfter) as raised:
            await bot.send_message(chat.id, "first")
        await bot.send_message(chat.id, "second")
        return raised.value

    error = with_bot(telegram, scenario)
    assert error.retry_after in (7, timedelta(seconds=7))  # int until PTB_TIMEDELTA is the default
    assert [m.text for m in telegram.messages[chat.id]] == ["second"]
    assert [c.status for c in telegram.calls if c.method == "sendMessage"] == [429, 200]


def test_blocked_user_and_unknown_chat(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)
    group = telegram.group_chat("ops")
    telegram.block(chat)
    telegram.block(group)

    async def scenario(bot: Bot) -> None:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(chat.id, "hello")
        with pytest.raises(Forbidden, match="bot was kicked from the supergroup chat"):
            await bot.send_message(group.id, "hello")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(555, "hello")
        telegram.unblock(chat)
        await bot.send_message(chat.id, "hello again")

    with_bot(telegram, scenario)
    assert [m.text for m in telegram.messages[chat.id]] == ["hello again"]


def test_get_updates_returns_injected_updates_and_honours_offset(telegram: FakeTelegram) -> None:
    alice = telegram.new_user("alice")
    group = telegram.group_chat("ops")
    telegram.say(group, alice, "/approve@opsgate_bot burst-42")
    telegram.say(group, alice, "thanks")

    async def scenario(bot: Bot) -> None:
        first = await bot.get_updates(timeout=5)
        assert [u.message.text for u in first if u.message] == [
            "/approve@opsgate_bot burst-42",
            "thanks",
        ]
        command = first[0].message
        assert command is not None and command.chat.type == "supergroup"
        assert command.parse_entities(["bot_command"]) == {
            command.entities[0]: "/approve@opsgate_bot"
        }
        again = await bot.get_updates(timeout=0)  # unconfirmed: delivered again
        assert [u.update_id for u in again] == [u.update_id for u in first]
        rest = await bot.get_updates(offset=first[0].update_id + 1, timeout=0)
        assert [u.message.text for u in rest if u.message] == ["thanks"]
        started = time.monotonic()
        assert await bot.get_updates(offset=first[-1].update_id + 1, timeout=30) == ()
        assert time.monotonic() - started < 2  # capped by max_poll_timeout

    with_bot(telegram, scenario)
    assert telegram.pending_updates == []


def test_long_poll_wakes_when_an_update_arrives(telegram: FakeTelegram) -> None:
    alice, chat = alice_chat(telegram)
    telegram.max_poll_timeout = 5.0
    threading.Timer(0.2, telegram.say, (chat, alice, "late")).start()

    async def scenario(bot: Bot) -> tuple[Update, ...]:
        return await bot.get_updates(timeout=5)

    started = time.monotonic()
    [update] = with_bot(telegram, scenario)
    assert update.message is not None and update.message.text == "late"
    assert time.monotonic() - started < 2


def test_a_second_poller_terminates_the_first(telegram: FakeTelegram) -> None:
    telegram.max_poll_timeout = 5.0

    async def scenario(bot: Bot) -> None:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.2)
        async with Bot(telegram.token, base_url=telegram.base_url) as other_instance:
            assert await other_instance.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await first

    with_bot(telegram, scenario)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, Any], str | None]]]
    status: ClassVar[int]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((body, self.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/telegram", handler
    server.shutdown()
    server.server_close()


def test_webhook_blocks_get_updates_and_receives_posts(
    telegram: FakeTelegram, receiver: tuple[str, type[_Receiver]]
) -> None:
    url, handler = receiver
    alice, chat = alice_chat(telegram)

    async def set_hook(bot: Bot) -> None:
        assert await bot.set_webhook(url, secret_token="s3cret", allowed_updates=["message"])
        info = await bot.get_webhook_info()
        assert (info.url, info.allowed_updates) == (url, ("message",))
        with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
            await bot.get_updates()

    with_bot(telegram, set_hook)
    assert telegram.webhook is not None and telegram.webhook.secret_token == "s3cret"
    update = telegram.say(chat, alice, "/status")

    handler.status = 500
    assert telegram.deliver_to_webhook() == 500
    assert telegram.pending_updates == [update]
    handler.status = 200
    assert telegram.deliver_to_webhook() == 200
    assert telegram.pending_updates == []
    assert [secret for _, secret in handler.received] == ["s3cret", "s3cret"]
    assert handler.received[-1][0] == update

    async def after(bot: Bot) -> None:
        parsed = Update.de_json(handler.received[-1][0], bot)
        assert parsed.message is not None and parsed.message.text == "/status"
        info = await bot.get_webhook_info()
        assert (
            info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        )
        assert await bot.delete_webhook()
        assert await bot.get_updates(timeout=0) == ()

    with_bot(telegram, after)


def test_callback_query_answer_is_recorded_once(telegram: FakeTelegram) -> None:
    alice, chat = alice_chat(telegram)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:42")]])

    async def scenario(bot: Bot) -> None:
        sent = await bot.send_message(chat.id, "Plan 42", reply_markup=keyboard)
        with pytest.raises(ValueError, match="no button"):
            telegram.press(chat, alice, sent.message_id, "reject:42")
        telegram.press(chat, alice, sent.message_id, "approve:42")
        [update] = await bot.get_updates()
        query = update.callback_query
        assert query is not None and query.data == "approve:42" and query.message is not None
        assert query.message.message_id == sent.message_id and query.from_user.id == alice.id
        assert await query.answer("Approved", show_alert=True)
        with pytest.raises(BadRequest, match="Query is too old"):
            await query.answer("again")

    with_bot(telegram, scenario)
    [answer] = telegram.callback_answers
    assert (answer["text"], answer["show_alert"]) == ("Approved", True)


def test_set_my_commands_is_stored_and_checked(telegram: FakeTelegram) -> None:
    async def scenario(bot: Bot) -> None:
        assert await bot.set_my_commands([("approve", "Approve a plan"), ("status", "Show status")])
        assert [c.command for c in await bot.get_my_commands()] == ["approve", "status"]
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([("Approve-Now", "nope")])

    with_bot(telegram, scenario)
    assert telegram.my_commands()[0] == {"command": "approve", "description": "Approve a plan"}


def test_update_builders_make_updates_ptb_parses(telegram: FakeTelegram) -> None:
    alice = FakeUser(7, "Alice", "alice")
    group = FakeChat(-100123, "supergroup", title="ops")
    command = message_update(group, alice, "see /plan@opsgate_bot now", update_id=5, message_id=9)
    press = callback_update(group, alice, 9, "approve:42", update_id=6)

    bot = Bot(telegram.token, base_url=telegram.base_url)
    message = Update.de_json(command, bot).message
    assert message is not None and message.entities[0].offset == 4
    assert message.parse_entities(["bot_command"]) == {message.entities[0]: "/plan@opsgate_bot"}
    query = Update.de_json(press, bot).callback_query
    assert query is not None and query.data == "approve:42" and query.from_user.username == "alice"


def test_application_polls_commands_and_button_presses(telegram: FakeTelegram) -> None:
    bob = telegram.new_user("bob")
    group = telegram.group_chat("ops")

    async def approve(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        [plan] = context.args or ["?"]
        button = InlineKeyboardButton("Apply", callback_data=f"apply:{plan}")
        await update.effective_message.reply_html(
            f"<b>{plan}</b> approved", reply_markup=InlineKeyboardMarkup([[button]])
        )

    async def apply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Applying")
        await query.edit_message_text(f"Applied by @{query.from_user.username}")

    async def wait_for(condition: Callable[[], bool]) -> None:
        for _ in range(100):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the bot did not answer in time")

    async def scenario() -> None:
        app = (
            Application.builder()
            .token(telegram.token)
            .base_url(telegram.base_url)
            .base_file_url(telegram.base_file_url)
            .build()
        )
        app.add_handler(CommandHandler("approve", approve))
        app.add_handler(CallbackQueryHandler(apply))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
            telegram.say(group, bob, "/approve@opsgate_bot burst-42")
            await wait_for(lambda: bool(telegram.messages[group.id]))
            sent = telegram.messages[group.id][0]
            telegram.press(group, bob, sent.message_id, "apply:burst-42")
            await wait_for(lambda: bool(sent.edits))
            await app.updater.stop()
            await app.stop()

    asyncio.run(scenario())
    [message] = telegram.messages[group.id]
    assert message.text == "Applied by @bob" and message.reply_markup is None
    assert message.edits[0].text == "Applied by @bob"
    assert [e["text"] for e in telegram.callback_answers] == ["Applying"]


def test_any_client_may_use_query_strings_or_json_bodies(telegram: FakeTelegram) -> None:
    _, chat = alice_chat(telegram)
    endpoint = f"{telegram.base_url}{telegram.token}"

    def call(request: str | urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as e:
            answer = json.load(e)
        return answer

    by_get = call(f"{endpoint}/SENDMESSAGE?chat_id={chat.id}&text=from+GET")
    as_json = json.dumps({"chat_id": chat.id, "text": "x" * 4097}).encode()
    headers = {"Content-Type": "application/json"}
    too_long = call(urllib.request.Request(f"{endpoint}/sendMessage", as_json, headers))
    unknown = call(f"{endpoint}/sendTelepathy")

    assert by_get["ok"] and by_get["result"]["text"] == "from GET"
    assert too_long == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message is too long",
    }
    assert unknown == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert [c.method for c in telegram.calls] == ["sendMessage", "sendMessage"]


def test_updates_the_bot_did_not_subscribe_to_are_dropped(telegram: FakeTelegram) -> None:
    alice, chat = alice_chat(telegram)

    async def scenario(bot: Bot) -> None:
        assert await bot.get_updates(timeout=0, allowed_updates=["callback_query"]) == ()
        telegram.say(chat, alice, "ignored")
        assert await bot.get_updates(timeout=0) == ()
        assert await bot.get_updates(timeout=0, allowed_updates=[]) == ()
        telegram.say(chat, alice, "delivered")
        [update] = await bot.get_updates(timeout=0)
        assert update.message is not None and update.message.text == "delivered"

    with_bot(telegram, scenario)
