"""The Slack adapter: HTTP or Socket Mode requests become ChatEvents; Replies go as Block Kit."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.socket_mode.client import BaseSocketModeClient

from approval_engine.engine import utc_now
from bots._slack_blocks import (
    MAX_BLOCKS,
    MAX_SECTION_CHARS,
    SlackMessage,
    one_message,
    render_blocks,
)
from bots.chat_store import Card, ChatStore
from bots.errors import BotError
from bots.gateway import Gateway
from bots.types import ChatEvent, Reply

__all__ = ["MAX_BLOCKS", "MAX_SECTION_CHARS", "SlackAdapter", "SlackMessage", "render_blocks"]

log = logging.getLogger(__name__)

BUTTON_ACTION = re.compile(r"^opsgate:button:\d+$")
SINGLE_COMMAND = re.compile(r"^/(?!opsgate$)[a-z][a-z0-9_-]*$")
MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[\s:,]*")

JSON = dict[str, Any]

# What apps.connections.open's refusals of an app-level token mean for whoever set it.
APP_TOKEN_ADVICE = {
    "not_allowed_token_type": "it is not an app-level token; create one (xapp-…) under Basic "
    "Information → App-Level Tokens, with the connections:write scope",
    "invalid_auth": "Slack does not know it; it was revoked or mistyped",
    "missing_scope": "it lacks the connections:write scope",
    "access_denied": "Socket Mode is not turned on for the app (Settings → Socket Mode)",
}


class SlackAdapter:
    """One Slack workspace: its bolt App, fed over HTTP or (with `app_token`) Socket Mode."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        store: ChatStore,
        bot_token: str,
        signing_secret: str | None = None,
        app_token: str | None = None,
        api_base_url: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.platform = "slack"
        self.gateway = gateway
        self.store = store
        self.clock = clock
        self.client = WebClient(token=bot_token, base_url=api_base_url or WebClient.BASE_URL)
        # Slack answers 429 with Retry-After; the handler sleeps that long and tries again.
        self.client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
        self.signing_secret = signing_secret
        self.app = App(
            client=self.client,
            signing_secret=signing_secret or "",  # bolt skips the check for Socket Mode
            token_verification_enabled=False,  # start() checks the token, not the constructor
            name="opsgate",
        )
        self.app_token = app_token
        self.bot_user_id: str | None = None
        self._started = threading.Event()
        self._socket: SocketModeHandler | None = None
        self._socket_url: str | None = None
        self._hello = threading.Event()
        self._closing = threading.Event()
        self._register()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Check the token with auth.test; readiness waits for this."""
        answer = self.client.auth_test()
        self.bot_user_id = answer.get("user_id")
        self._started.set()
        log.info("slack: connected to %s as %s", answer.get("team"), answer.get("user"))

    def started(self) -> bool:
        """Token checked; in Socket Mode also connected, and greeted by Slack's `hello`."""
        if self.app_token is None:
            return self._started.is_set()
        socket = self._socket
        return (
            self._started.is_set()
            and self._hello.is_set()
            and socket is not None
            and socket.client.is_connected()
        )

    def stop(self) -> None:
        self._started.clear()
        self._closing.set()
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.client.close()

    def router(self) -> APIRouter:
        """HTTP mode: `POST /slack/events`, every request checked against the signing secret."""
        if not self.signing_secret:
            raise BotError("HTTP mode needs the signing secret to verify Slack's requests")
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

    # -- Socket Mode -------------------------------------------------------------------------

    def check_app_token(self) -> None:
        """Ask apps.connections.open for a Socket Mode URL now, so that a bad token stops start-up.

        The method is rate-limited (Tier 1): the first connection uses the URL fetched here.
        """
        if self.app_token is None:
            raise BotError("Socket Mode needs an app-level token (xapp-…)")
        try:
            answer = self.client.apps_connections_open(app_token=self.app_token)
        except SlackApiError as e:
            code = str(e.response.get("error", ""))
            raise BotError(f"{code}: {APP_TOKEN_ADVICE.get(code, e)}") from e
        self._socket_url = str(answer["url"])

    def connect_socket(self) -> None:
        """Open the Socket Mode connection from a background thread; started() says when."""
        if self.app_token is None:
            raise BotError("Socket Mode needs an app-level token (xapp-…)")
        # web_client: apps.connections.open goes to api_base_url, like every other call.
        handler = SocketModeHandler(self.app, app_token=self.app_token, web_client=self.client)
        handler.client.message_listeners.append(self._on_socket_message)
        handler.client.wss_uri, self._socket_url = self._socket_url, None
        self._closing.clear()
        self._hello.clear()
        self._socket = handler
        threading.Thread(
            target=self._connect, args=(handler,), name="slack-socket-mode", daemon=True
        ).start()

    def socket_router(self) -> APIRouter:
        """Socket Mode: no routes; its lifespan holds the connection while the web app runs."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            self.connect_socket()
            try:
                yield
            finally:
                await anyio.to_thread.run_sync(self.stop)

        return APIRouter(lifespan=lifespan)

    def _connect(self, handler: SocketModeHandler) -> None:
        # connect() raises only when apps.connections.open fails; once connected, the client
        # itself reconnects on `disconnect` messages and dropped connections.
        delay = 1.0
        while not self._closing.is_set():
            try:
                handler.client.connect()
                if self._closing.is_set():  # stop() came while connecting
                    handler.client.close()
                return
            except Exception as e:
                log.warning("slack: Socket Mode did not connect (%s); again in %gs", e, delay)
                self._closing.wait(delay)
                delay = min(delay * 2, 60.0)

    def _on_socket_message(
        self, _client: BaseSocketModeClient, message: dict[str, Any], _raw: str | None
    ) -> None:
        if message.get("type") == "hello":
            self._hello.set()
            log.info("slack: Socket Mode connected (%s)", message.get("num_connections"))

    # -- sending -----------------------------------------------------------------------------

    def send(self, reply: Reply, *, channel: str, thread: str | None = None) -> str:
        """Post a Reply as one or more messages, then its graph as a file; the first's ts.

        A proposal card is remembered by its first message, which later states edit.
        """
        where = reply.channel or channel
        thread_ts = reply.thread or thread
        first = ""
        for message in render_blocks(reply):
            answer = self.client.chat_postMessage(
                channel=where, text=message.text, blocks=message.blocks, thread_ts=thread_ts
            )
            first = first or str(answer["ts"])
            where = str(answer.get("channel") or where)  # a DM posted to a user id gets a D…
        if reply.image_png is not None:
            self.client.files_upload_v2(
                channel=where, file=reply.image_png, filename="graph.png", thread_ts=thread_ts
            )
        if reply.card is not None and first:
            self.store.add_card(Card(reply.card, self.platform, where, first), at=self.clock())
        return first

    # -- the notifier's CardSurface ----------------------------------------------------------

    def post(self, channel: str, reply: Reply, *, thread: str | None = None) -> str:
        return self.send(one_message(reply), channel=channel, thread=thread)

    def edit(self, channel: str, message_id: str, reply: Reply) -> None:
        message = render_blocks(one_message(reply))[0]
        self.client.chat_update(
            channel=channel, ts=message_id, text=message.text, blocks=message.blocks
        )

    # -- listeners ---------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app

        @app.middleware
        def once_per_event(req: BoltRequest, resp: BoltResponse, next: Callable[[], None]) -> Any:
            # Slack retries an event it believes was not acknowledged (X-Slack-Retry-Num); a
            # command typed once must run once, whichever replica the retry reaches.
            event_id = (
                req.body.get("event_id") if req.body.get("type") == "event_callback" else None
            )
            if event_id and not self.store.first_time(f"slack:{event_id}", at=self.clock()):
                log.info("slack: event %s was already handled; retry dropped", event_id)
                return BoltResponse(status=200, body="")
            # The signature covers the timestamp, so Slack never sends one twice (a retry is
            # signed anew): a second sighting is someone replaying a captured request.
            signature = (req.headers.get("x-slack-signature") or [""])[0]
            if signature and not self.store.first_time(f"slack-sig:{signature}", at=self.clock()):
                log.warning("slack: a replayed request was refused")
                return BoltResponse(status=401, body="")
            next()
            return None

        @app.command("/opsgate")
        def slash_command(ack: Ack, body: JSON) -> None:
            ack()
            self._dispatch(
                user=body["user_id"],
                channel=body["channel_id"],
                text=body.get("text", ""),
                display_name=body.get("user_name", ""),
            )

        @app.command(SINGLE_COMMAND)
        def single_command(ack: Ack, body: JSON) -> None:
            # A workspace may also register /status, /approve, … as slash commands of their own.
            ack()
            self._dispatch(
                user=body["user_id"],
                channel=body["channel_id"],
                text=f"{body['command']} {body.get('text', '')}".strip(),
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
