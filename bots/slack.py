"""The Slack adapter: signed Slack requests become ChatEvents; Replies go back as Block Kit."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from slack_bolt import Ack, App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bots.gateway import Gateway
from bots.render import render_table
from bots.types import Button, ChatEvent, Reply

__all__ = ["MAX_BLOCKS", "MAX_SECTION_CHARS", "SlackAdapter", "SlackMessage", "render_blocks"]

log = logging.getLogger(__name__)

# Block Kit limits: a section's text, blocks per message, elements per actions/context block.
MAX_SECTION_CHARS = 3000
MAX_BLOCKS = 50
MAX_ACTIONS = 25
MAX_CONTEXT = 10
MAX_FALLBACK_CHARS = 3000
BUTTON_ACTION = re.compile(r"^opsgate:button:\d+$")
MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[\s:,]*")

JSON = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage worth of a Reply: at most MAX_BLOCKS blocks and a fallback text."""

    blocks: list[JSON]
    text: str


class SlackAdapter:
    """One Slack workspace: its bolt App, the `/slack/events` route, and posting Replies."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        bot_token: str,
        signing_secret: str,
        api_base_url: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.client = WebClient(token=bot_token, base_url=api_base_url or WebClient.BASE_URL)
        # Slack answers 429 with Retry-After; the handler sleeps that long and tries again.
        self.client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
        self.app = App(
            client=self.client,
            signing_secret=signing_secret,
            token_verification_enabled=False,  # start() checks the token, not the constructor
            name="opsgate",
        )
        self.bot_user_id: str | None = None
        self._started = threading.Event()
        self._register()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Check the token with auth.test; readiness waits for this."""
        answer = self.client.auth_test()
        self.bot_user_id = answer.get("user_id")
        self._started.set()
        log.info("slack: connected to %s as %s", answer.get("team"), answer.get("user"))

    def started(self) -> bool:
        return self._started.is_set()

    def stop(self) -> None:
        self._started.clear()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/slack/events")
        async def slack_events(request: Request) -> Response:
            body = await request.body()
            # bolt's dispatch blocks until ack(); run it off the event loop.
            answer = await anyio.to_thread.run_sync(
                self.app.dispatch, to_bolt_request(request, body)
            )
            return to_starlette_response(answer)

        return router

    # -- sending -----------------------------------------------------------------------------

    def send(self, reply: Reply, *, channel: str, thread: str | None = None) -> None:
        """Post a Reply as one or more messages, then its graph as a file."""
        where = reply.channel or channel
        thread_ts = reply.thread or thread
        for message in render_blocks(reply):
            self.client.chat_postMessage(
                channel=where, text=message.text, blocks=message.blocks, thread_ts=thread_ts
            )
        if reply.image_png is not None:
            self.client.files_upload_v2(
                channel=where, file=reply.image_png, filename="graph.png", thread_ts=thread_ts
            )

    # -- listeners ---------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app

        @app.command("/opsgate")
        def slash_command(ack: Ack, body: JSON) -> None:
            ack()
            self._dispatch(
                user=body["user_id"],
                channel=body["channel_id"],
                text=body.get("text", ""),
                display_name=body.get("user_name", ""),
            )

        @app.event("app_mention")
        def app_mention(ack: Ack, event: JSON) -> None:
            ack()
            self._dispatch(
                user=event["user"],
                channel=event["channel"],
                text=MENTION.sub("", event.get("text", ""), count=1),
                thread=event.get("thread_ts"),
            )

        @app.event("message")
        def direct_message(ack: Ack, event: JSON) -> None:
            ack()
            if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
                return
            self._dispatch(
                user=event["user"],
                channel=event["channel"],
                text=event.get("text", ""),
                thread=event.get("thread_ts"),
            )

        @app.action(BUTTON_ACTION)
        def button_pressed(ack: Ack, body: JSON, action: JSON) -> None:
            ack()
            # The value is only what the presser could have typed; the gateway checks them.
            container = body.get("container") or {}
            self._dispatch(
                user=body["user"]["id"],
                channel=(body.get("channel") or {}).get("id") or container["channel_id"],
                text=str(action.get("value", "")),
                display_name=body["user"].get("username", ""),
                thread=container.get("thread_ts"),
            )

        @app.error
        def failed(error: Exception, body: JSON) -> None:
            log.error("slack: handling a %s failed", body.get("type", "request"), exc_info=error)

    def _dispatch(
        self,
        *,
        user: str,
        channel: str,
        text: str,
        display_name: str = "",
        thread: str | None = None,
    ) -> None:
        event = ChatEvent(
            platform="slack",
            principal=f"slack:{user}",
            channel=channel,
            text=as_command(text),
            display_name=display_name,
            thread=thread,
        )
        self.gateway.dispatch(event, lambda reply: self.send(reply, channel=channel, thread=thread))


def as_command(text: str) -> str:
    """`status` and `/status` both mean the /status command."""
    text = text.strip()
    return text if not text or text.startswith("/") else f"/{text}"


# -- rendering -------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack's mrkdwn control characters: only &, < and > are escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_blocks(reply: Reply) -> list[SlackMessage]:
    """A Reply as Block Kit messages; long parts are split across sections and messages."""
    blocks: list[tuple[JSON, str]] = []  # each block with its escaped plain-text fallback
    if reply.text:
        text = f"⚠️ {reply.text}" if reply.error else reply.text
        blocks += [(_section(chunk), chunk) for chunk in _chunks(text, limit=MAX_SECTION_CHARS)]
    for table in reply.tables:
        blocks += _preformatted(render_table(table))
    if reply.code:
        blocks += _preformatted(reply.code.rstrip("\n"))
    for start in range(0, len(reply.buttons), MAX_ACTIONS):
        row = reply.buttons[start : start + MAX_ACTIONS]
        plain = escape("  ".join(f"[{b.label}: {b.command}]" for b in row))
        blocks.append((_actions(row, first=start), plain))
    for start in range(0, len(reply.footer), MAX_CONTEXT):
        lines = reply.footer[start : start + MAX_CONTEXT]
        elements = [{"type": "mrkdwn", "text": escape(line)} for line in lines]
        blocks.append(({"type": "context", "elements": elements}, escape("\n".join(lines))))
    return [
        SlackMessage(
            blocks=[block for block, _ in part],
            text=_fallback("\n".join(plain for _, plain in part)),
        )
        for part in _batches(blocks, MAX_BLOCKS)
    ]


def _section(escaped: str) -> JSON:
    return {"type": "section", "text": {"type": "mrkdwn", "text": escaped}}


def _preformatted(text: str) -> list[tuple[JSON, str]]:
    fence = "```\n", "\n```"
    limit = MAX_SECTION_CHARS - len(fence[0]) - len(fence[1])
    return [
        (_section(f"{fence[0]}{chunk}{fence[1]}"), chunk) for chunk in _chunks(text, limit=limit)
    ]


def _actions(buttons: Iterable[Button], *, first: int) -> JSON:
    elements = []
    for number, button in enumerate(buttons, start=first):
        element: JSON = {
            "type": "button",
            "action_id": f"opsgate:button:{number}",
            "text": {"type": "plain_text", "text": button.label[:75], "emoji": True},
            "value": button.command,
        }
        if button.style in ("primary", "danger"):
            element["style"] = button.style
        elements.append(element)
    return {"type": "actions", "elements": elements}


def _chunks(text: str, *, limit: int) -> Iterator[str]:
    """Escaped pieces of at most `limit` characters, cut at line ends where possible."""
    current = ""
    for line in _escaped_lines(text, limit=limit):
        joined = f"{current}\n{line}" if current else line
        if len(joined) <= limit:
            current = joined
            continue
        if current:
            yield current
        current = line
    if current:
        yield current


def _escaped_lines(text: str, *, limit: int) -> Iterator[str]:
    for line in text.split("\n"):
        piece = ""
        for char in line:
            escaped = escape(char)
            if len(piece) + len(escaped) > limit:
                yield piece
                piece = ""
            piece += escaped
        yield piece


def _batches(blocks: list[tuple[JSON, str]], size: int) -> Iterator[list[tuple[JSON, str]]]:
    for start in range(0, len(blocks), size):
        yield blocks[start : start + size]


def _fallback(escaped: str) -> str:
    """Notifications and old clients show this; the blocks carry the whole reply."""
    text = escaped.strip() or "opsgate"
    if len(text) <= MAX_FALLBACK_CHARS:
        return text
    cut = text[: MAX_FALLBACK_CHARS - 1]
    if cut.rfind("&") > cut.rfind(";"):  # never end inside an &amp; entity
        cut = cut[: cut.rfind("&")]
    return cut + "…"
