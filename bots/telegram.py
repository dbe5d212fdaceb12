"""The Telegram adapter: Bot API updates → ChatEvent → gateway → Reply → HTML messages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import html
import logging
import re
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import RetryAfter
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters
from telegram.warnings import PTBDeprecationWarning

from bots.gateway import Gateway
from bots.render import render_table
from bots.types import ChatEvent, Reply

__all__ = ["SECRET_HEADER", "TelegramAdapter", "render_html"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096  # Telegram's limit per message, in UTF-16 code units
MAX_ANSWER = 200  # answerCallbackQuery text
MAX_SEND_ATTEMPTS = 5
EXPIRED = "This button has expired"
_COMMAND = re.compile(r"/(?P<name>[A-Za-z0-9_]+)(?:@(?P<bot>[A-Za-z0-9_]+))?(?=\s|$)")

T = TypeVar("T")
_App = Application[Any, Any, Any, Any, Any, Any]


class TelegramAdapter:
    """One bot: long polling (`start_polling`) or a webhook (`webhook_router`), never both.

    `base_url` is the Bot API server's root (say http://127.0.0.1:8081 for a local Bot API
    server); `/bot<token>/` and `/file/bot<token>/` are added to it. `allowed_chats=None`
    allows every chat; `webhook_secret=None` makes the webhook refuse every request.
    """

    def __init__(
        self,
        *,
        gateway: Gateway,
        token: str,
        base_url: str | None = None,
        allowed_chats: frozenset[int] | None = None,
        webhook_secret: str | None = None,
        bot_username: str | None = None,
        min_send_interval: float = 1.0,
        button_ttl: float = 24 * 3600,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        builder = Application.builder().token(token)
        if base_url is not None:
            root = base_url.rstrip("/")
            builder = builder.base_url(f"{root}/bot").base_file_url(f"{root}/file/bot")
        self.application: _App = builder.build()
        self.gateway = gateway
        self.allowed_chats = allowed_chats
        self._webhook_secret = webhook_secret
        self._bot_username = bot_username
        self._buttons = ButtonStore(ttl=button_ttl)
        self._sender = ChatSender(min_interval=min_send_interval, sleep=sleep)
        self._refused: set[int] = set()
        self._started = False
        self.application.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT, self._on_message)
        )
        self.application.add_handler(CallbackQueryHandler(self._on_callback))
        self.application.add_error_handler(self._on_error)

    # --- lifecycle ------------------------------------------------------------------------

    def started(self) -> bool:
        """True once getMe answered; for `bots.web.register_adapter`."""
        return self._started

    async def start(self) -> None:
        """Connect (getMe) and start handling updates, without fetching any."""
        await self.application.initialize()
        if self._bot_username is None:
            self._bot_username = self.application.bot.username
        await self.application.start()
        self._started = True

    async def start_polling(self) -> None:
        await self.start()
        updater = self.application.updater
        if updater is None:
            raise RuntimeError("this Application was built without an updater")
        await updater.start_polling(allowed_updates=["message", "callback_query"])

    async def stop(self) -> None:
        self._started = False
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def process(self, data: Mapping[str, Any]) -> None:
        """Handle one Update as JSON and wait until its replies are sent."""
        update = Update.de_json(dict(data), self.application.bot)
        await self.application.process_update(update)

    def webhook_router(self) -> APIRouter:
        """`POST /telegram/webhook`; the router's lifespan starts and stops the bot."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        router = APIRouter(lifespan=lifespan)

        @router.post("/telegram/webhook")
        async def webhook(request: Request) -> Response:
            if not self._secret_matches(request.headers.get(SECRET_HEADER)):
                return Response(status_code=403)
            if not self.application.running:
                return Response(status_code=503)
            try:
                data = await request.json()
            except ValueError:
                return Response(status_code=400)
            if not isinstance(data, dict):
                return Response(status_code=400)
            # Acknowledge now; the application works through its queue one update at a time.
            await self.application.update_queue.put(Update.de_json(data, self.application.bot))
            return Response(status_code=200)

        return router

    def _secret_matches(self, given: str | None) -> bool:
        if self._webhook_secret is None or given is None:
            return False  # no secret configured means nobody may post updates
        return hmac.compare_digest(given.encode(), self._webhook_secret.encode())

    # --- handlers -------------------------------------------------------------------------

    async def _on_message(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        chat = message.chat
        text = self._addressed(message.text, private=chat.type == ChatType.PRIVATE)
        if text is None:
            return
        if not self._allowed(chat.id):
            if chat.id not in self._refused:  # once per chat, so a busy group is not spammed
                self._refused.add(chat.id)
                await self.send(chat.id, Reply(text=_refusal(chat.id), error=True))
            return
        event = ChatEvent(
            platform="telegram",
            principal=f"telegram:{user.id}",
            channel=str(chat.id),
            text=text,
            display_name=user.full_name,
        )
        reply = await asyncio.to_thread(self.gateway.handle, event)
        await self.send(chat.id, reply)
        await asyncio.to_thread(self.gateway.tick)

    async def _on_callback(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        answer, show_alert = EXPIRED, False
        reply: Reply | None = None
        try:
            chat = query.message.chat if query.message is not None else None
            command = self._buttons.get(query.data or "", chat_id=chat.id if chat else None)
            if chat is None or command is None:
                return
            if not self._allowed(chat.id):
                answer, show_alert = _refusal(chat.id), True
                return
            event = ChatEvent(
                platform="telegram",
                principal=f"telegram:{query.from_user.id}",  # whoever pressed, not the author
                channel=str(chat.id),
                text=command,
                display_name=query.from_user.full_name,
            )
            reply = await asyncio.to_thread(self.gateway.handle, event)
            answer, show_alert = _answer_text(reply), reply.error
        finally:
            await query.answer(answer[:MAX_ANSWER], show_alert=show_alert)
        if reply is None or chat is None:
            return
        await self.send(chat.id, reply)
        await asyncio.to_thread(self.gateway.tick)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("handling a Telegram update failed: %r", update, exc_info=context.error)

    def _allowed(self, chat_id: int) -> bool:
        return self.allowed_chats is None or chat_id in self.allowed_chats

    def _addressed(self, text: str, *, private: bool) -> str | None:
        """The command for us, `@ourbot` removed; None when it is for another bot or chatter."""
        found = _COMMAND.match(text)
        if found is None:
            return text if private else None
        bot = found.group("bot")
        if bot is None:
            return text
        if self._bot_username is None or bot.lower() != self._bot_username.lower():
            return None
        return f"/{found.group('name')}{text[found.end() :]}"

    # --- sending --------------------------------------------------------------------------

    async def send(self, chat_id: int, reply: Reply) -> None:
        """Every part of the reply, in order, through the chat's flood-controlled queue."""
        bot = self.application.bot
        messages = render_html(reply)
        markup = self._keyboard(chat_id, reply)
        if markup is not None and not messages:
            messages = ["Choose:"]
        for i, text in enumerate(messages):
            keyboard = markup if i == len(messages) - 1 else None
            await self._sender.run(
                chat_id, functools.partial(self._send_text, chat_id, text, keyboard)
            )
        if reply.image_png is not None:
            photo = reply.image_png
            await self._sender.run(chat_id, lambda: bot.send_photo(chat_id, photo))

    async def _send_text(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> object:
        return await self.application.bot.send_message(
            chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup
        )

    def _keyboard(self, chat_id: int, reply: Reply) -> InlineKeyboardMarkup | None:
        if not reply.buttons:
            return None
        row = [
            InlineKeyboardButton(b.label, callback_data=self._buttons.put(chat_id, b.command))
            for b in reply.buttons
        ]
        return InlineKeyboardMarkup([row])


# --- buttons --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pressable:
    chat_id: int
    command: str
    expires: float


class ButtonStore:
    """Commands behind short random ids, since callback_data holds at most 64 bytes.

    In memory: ids die with the process (presses then answer "expired") and are not shared
    between replicas.
    """

    def __init__(self, *, ttl: float, limit: int = 10_000) -> None:
        self._ttl, self._limit = ttl, limit
        self._entries: dict[str, _Pressable] = {}

    def put(self, chat_id: int, command: str) -> str:
        if len(self._entries) >= self._limit:
            del self._entries[next(iter(self._entries))]  # oldest first
        key = "b:" + secrets.token_urlsafe(12)
        self._entries[key] = _Pressable(chat_id, command, time.monotonic() + self._ttl)
        return key

    def get(self, key: str, *, chat_id: int | None) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry.chat_id != chat_id or entry.expires < time.monotonic():
            return None
        return entry.command


# --- flood control --------------------------------------------------------------------------


class ChatSender:
    """One send at a time per chat, `min_interval` apart, waiting out RetryAfter."""

    def __init__(
        self, *, min_interval: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self._min_interval, self._sleep = min_interval, sleep
        self._locks: dict[int, asyncio.Lock] = {}
        self._last: dict[int, float] = {}

    async def run(self, chat_id: int, call: Callable[[], Awaitable[T]]) -> T:
        async with self._locks.setdefault(chat_id, asyncio.Lock()):
            since = time.monotonic() - self._last.get(chat_id, float("-inf"))
            if since < self._min_interval:
                await self._sleep(self._min_interval - since)
            for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
                try:
                    result = await call()
                    break
                except RetryAfter as e:
                    if attempt == MAX_SEND_ATTEMPTS:
                        raise
                    wait = _retry_after(e)
                    log.warning("Telegram flood control in chat %s: waiting %gs", chat_id, wait)
                    await self._sleep(wait)
            self._last[chat_id] = time.monotonic()
            return result


def _retry_after(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --- rendering ------------------------------------------------------------------------------


def render_html(reply: Reply) -> list[str]:
    """The reply as Telegram HTML messages, each within MAX_TEXT; nothing is cut off."""
    blocks: list[list[str]] = []
    if reply.text:
        blocks.append(_chunks(reply.text, html.escape))
    for table in reply.tables:
        blocks.append(_chunks(render_table(table), _pre))
    if reply.code:
        blocks.append(_chunks(reply.code.rstrip("\n"), _pre))
    for line in reply.footer:
        blocks.append(_chunks(line, lambda s: f"<i>{html.escape(s)}</i>"))
    messages: list[str] = []
    for chunk in (c for block in blocks for c in block):
        if messages and _size(f"{messages[-1]}\n{chunk}") <= MAX_TEXT:
            messages[-1] = f"{messages[-1]}\n{chunk}"
        else:
            messages.append(chunk)
    return messages


def _pre(raw: str) -> str:
    return f"<pre>{html.escape(raw)}</pre>"


def _size(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _chunks(raw: str, wrap: Callable[[str], str]) -> list[str]:
    """`raw` wrapped, split at line ends (or inside a line only when it alone is too long)."""
    out: list[str] = []
    current: str | None = None
    for line in raw.split("\n"):
        for piece in _hard_split(line, wrap):
            joined = piece if current is None else f"{current}\n{piece}"
            if _size(wrap(joined)) <= MAX_TEXT:
                current = joined
            else:
                if current is not None:
                    out.append(current)
                current = piece
    if current is not None:
        out.append(current)
    return [wrap(c) for c in out if c.strip()]


def _hard_split(line: str, wrap: Callable[[str], str]) -> Iterator[str]:
    if _size(wrap(line)) <= MAX_TEXT:
        yield line
        return
    room = MAX_TEXT - _size(wrap(""))
    start, used = 0, 0
    for i, char in enumerate(line):
        cost = _size(wrap(char)) - _size(wrap(""))
        if used + cost > room:
            yield line[start:i]
            start, used = i, 0
        used += cost
    yield line[start:]


def _answer_text(reply: Reply) -> str:
    first = (reply.text.strip().splitlines() or ["Done."])[0]
    return first if len(first) <= MAX_ANSWER else first[: MAX_ANSWER - 1] + "…"


def _refusal(chat_id: int) -> str:
    return f"This chat is not allowed to use opsgate; ask an admin to add chat {chat_id}."
