"""The Telegram adapter: Bot API updates → ChatEvent → gateway → Reply → HTML messages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, RetryAfter
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from approval_engine.engine import utc_now
from bots._telegram_html import MAX_ANSWER, MAX_TEXT, answer_text, one_message, render_html
from bots.chat_store import Card, ChatStore
from bots.gateway import Gateway
from bots.send_queue import ChatSender
from bots.types import ChatEvent, Reply

__all__ = ["MAX_TEXT", "SECRET_HEADER", "TelegramAdapter", "render_html"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
EXPIRED = "This button has expired"
ALLOWED_UPDATES = ["message", "callback_query"]
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
        store: ChatStore,
        token: str,
        base_url: str | None = None,
        allowed_chats: frozenset[int] | None = None,
        webhook_secret: str | None = None,
        bot_username: str | None = None,
        min_send_interval: float = 1.0,
        group_messages_per_minute: int = 20,
        button_ttl: timedelta = timedelta(days=7),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        builder = Application.builder().token(token)
        if base_url is not None:
            root = base_url.rstrip("/")
            builder = builder.base_url(f"{root}/bot").base_file_url(f"{root}/file/bot")
        self.application: _App = builder.build()
        self.platform = "telegram"
        self.gateway = gateway
        self.store = store
        self.clock = clock
        self.allowed_chats = allowed_chats
        self._webhook_secret = webhook_secret
        self._bot_username = bot_username
        self._button_ttl = button_ttl
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender = ChatSender(
            min_interval=min_send_interval,
            retry_after=_retry_after,
            group_per_minute=group_messages_per_minute,
            sleep=sleep,
        )
        self._refused: set[int] = set()
        self._started = False
        self.application.add_handler(TypeHandler(Update, self._once), group=-1)
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
        self._loop = asyncio.get_running_loop()
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
        await updater.start_polling(allowed_updates=ALLOWED_UPDATES)

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

    def polling_router(self) -> APIRouter:
        """No routes: its lifespan long-polls getUpdates while the web app runs."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start_polling()
            try:
                yield
            finally:
                await self.stop()

        return APIRouter(lifespan=lifespan)

    def webhook_router(self, *, register_url: str | None = None) -> APIRouter:
        """`POST /telegram/webhook`; the router's lifespan starts and stops the bot.

        With `register_url`, start-up tells Telegram (setWebhook) to post updates there,
        with the secret token and only the update types the bot handles.
        """

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                if register_url is not None:
                    await self.application.bot.set_webhook(
                        register_url,
                        secret_token=self._webhook_secret,
                        allowed_updates=ALLOWED_UPDATES,
                    )
                    log.info("telegram: webhook registered at %s", register_url)
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

    async def _once(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Telegram re-sends an update it thinks was not received; handle each id once."""
        key = f"telegram:{self.application.bot.id}:{update.update_id}"
        if not await asyncio.to_thread(self.store.first_time, key, at=self.clock()):
            log.info("telegram: update %s was already handled; dropped", update.update_id)
            raise ApplicationHandlerStop

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
            if chat is None:
                return
            command = await asyncio.to_thread(
                self.store.button,
                query.data or "",
                platform=self.platform,
                channel=str(chat.id),
                at=self.clock(),
            )
            if command is None:
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
            answer, show_alert = answer_text(reply), reply.error
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

    async def send(self, chat_id: int, reply: Reply, *, thread: int | None = None) -> int:
        """Every part of the reply, in order, through the chat's flood-controlled queue.

        Returns the first message's id; a proposal card is remembered by it.
        """
        bot = self.application.bot
        messages = render_html(reply)
        markup = await self._keyboard(chat_id, reply)
        if markup is not None and not messages:
            messages = ["Choose:"]
        first = 0
        for i, text in enumerate(messages):
            keyboard = markup if i == len(messages) - 1 else None
            sent = await self._sender.run(
                chat_id, functools.partial(self._send_text, chat_id, text, keyboard, thread)
            )
            first = first or sent.message_id
        if reply.image_png is not None:
            photo = reply.image_png
            await self._sender.run(chat_id, lambda: bot.send_photo(chat_id, photo))
        if reply.card is not None and first:
            card = Card(reply.card, self.platform, str(chat_id), str(first))
            await asyncio.to_thread(self.store.add_card, card, at=self.clock())
        return first

    async def _send_text(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None, thread: int | None
    ) -> Message:
        message: Message = await self.application.bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            reply_parameters=(
                ReplyParameters(thread, allow_sending_without_reply=True) if thread else None
            ),
        )
        return message

    async def _edit(self, chat_id: int, message_id: int, reply: Reply) -> None:
        text = render_html(reply)[0] if reply.text or reply.code else "…"
        markup = await self._keyboard(chat_id, reply)

        async def edit() -> object:
            try:
                return await self.application.bot.edit_message_text(
                    text, chat_id, message_id, parse_mode=ParseMode.HTML, reply_markup=markup
                )
            except BadRequest as e:
                if "not modified" in str(e).lower():  # the card already shows this
                    return None
                raise

        await self._sender.run(chat_id, edit)

    async def _keyboard(self, chat_id: int, reply: Reply) -> InlineKeyboardMarkup | None:
        if not reply.buttons:
            return None
        row = []
        for button in reply.buttons:
            key = await asyncio.to_thread(
                self.store.put_button,
                platform=self.platform,
                channel=str(chat_id),
                command=button.command,
                at=self.clock(),
                ttl=self._button_ttl,
            )
            row.append(InlineKeyboardButton(button.label, callback_data=key))
        return InlineKeyboardMarkup([row])

    # --- the notifier's CardSurface (called from worker threads, never the bot's loop) -----

    def post(self, channel: str, reply: Reply, *, thread: str | None = None) -> str:
        card = one_message(reply)
        return str(
            self._call(self.send(int(channel), card, thread=int(thread) if thread else None))
        )

    def edit(self, channel: str, message_id: str, reply: Reply) -> None:
        self._call(self._edit(int(channel), int(message_id), one_message(reply)))

    def _call(self, work: Coroutine[Any, Any, T], *, timeout: float = 120.0) -> T:
        loop = self._loop
        if loop is None or not self._started:
            work.close()
            raise RuntimeError("the Telegram adapter is not started")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            work.close()
            raise RuntimeError("CardSurface calls block; call them from a worker thread")
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout)


# --- flood control --------------------------------------------------------------------------


def _retry_after(error: Exception) -> float | None:
    """Seconds Telegram asked us to wait (RetryAfter), or None for any other error."""
    if not isinstance(error, RetryAfter):
        return None
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _refusal(chat_id: int) -> str:
    return f"This chat is not allowed to use opsgate; ask an admin to add chat {chat_id}."
