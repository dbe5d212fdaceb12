"""A fake Slack Web API on loopback that the real slack_sdk WebClient and slack_bolt App talk to.

    with FakeSlack() as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.api_url)
        client.chat_postMessage(channel="#ops", text="deploying")
        assert slack.channel_messages("ops")[-1].text == "deploying"

It answers as docs.slack.dev describes: every method replies HTTP 200 with `"ok": false` and an
error code when it refuses, except rate limiting, which is HTTP 429 with a `Retry-After` header
in seconds and `"error": "ratelimited"`. Form-encoded, JSON and query-string arguments are all
read; the token comes from `Authorization: Bearer` or a `token` argument. State lives in plain
attributes a test can read (`messages`, `files`, `calls`, ...); everything a handler touches is
guarded by one lock, so a test may read it while the server thread answers.

The second half builds what Slack sends *to* an app: slash commands (form body), Events API
callbacks (JSON) and interactivity (`payload=` form field), signed with Slack's v0 scheme.

Socket Mode: `add_app_token()` registers an app-level token, and a `FakeSocketMode` (in
slack_socket_mode.py) attached to the fake makes `apps.connections.open` hand out its URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import mimetypes
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes._loopback import Loopback

__all__ = [
    "ALICE",
    "APP_ID",
    "BOB",
    "BOT_ID",
    "BOT_SCOPES",
    "BOT_USER_ID",
    "CONNECTIONS_SCOPES",
    "GENERAL",
    "MAX_BLOCKS",
    "MAX_TEXT_CHARS",
    "OPS",
    "TEAM_DOMAIN",
    "TEAM_ID",
    "Call",
    "Channel",
    "Ephemeral",
    "FakeSlack",
    "Message",
    "ResponseUrlPost",
    "SocketModeLinks",
    "UploadedFile",
    "User",
    "app_mention_event",
    "block_actions_body",
    "event_body",
    "message_im_event",
    "sign",
    "signed_headers",
    "slash_command_body",
    "url_verification_body",
]

JSON = dict[str, Any]

TEAM_ID = "T0FAKE001"
TEAM_DOMAIN = "opsgate-test"
APP_ID = "A0FAKE001"
BOT_ID = "B0FAKE001"
BOT_USER_ID = "U0OPSGATE"
ALICE = "U0ALICE01"
BOB = "U0BOB0001"
GENERAL = "C0GENERAL"
OPS = "C0OPS0001"
BOT_SCOPES = (
    "app_mentions:read",
    "channels:read",
    "chat:write",
    "commands",
    "files:write",
    "groups:read",
    "im:history",
    "im:read",
    "users:read",
)
# An app-level token's scope for Socket Mode.
CONNECTIONS_SCOPES = ("connections:write",)
# chat.postMessage: "Provide no more than 40,000 characters"; Block Kit: up to 50 blocks.
MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50
_ALT_TXT_CHARS = 1000
_MAX_VIEW_BYTES = 250_000
# views.open: 'The expected format for the trigger_id argument is "132456.7890123.abcdef"'.
_TRIGGER_ID = re.compile(r"\d+\.\d+\.[0-9a-f]+")
_SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "users.info": "users:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "apps.connections.open": "connections:write",
}
# App-level tokens work "only with specific APIs"; of those the fake has this one.
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


class _ApiError(Exception):
    """A documented `"ok": false` answer: the error code plus any extra fields Slack adds."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Call:
    """One Web API request as the fake received it.

    `params` merges query string and body (JSON values keep their types, form values are
    strings) without the token; header names are title-cased (`Content-Type`).
    """

    method: str
    params: JSON
    headers: dict[str, str]
    token: str | None
    status: int = 200
    response: JSON = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when it arrived (rate-limit checks)


@dataclass
class User:
    id: str
    name: str
    real_name: str = ""
    is_admin: bool = False
    is_bot: bool = False
    bot_id: str | None = None
    email: str | None = None
    tz: str = "Europe/London"

    def to_json(self, team_id: str) -> JSON:
        profile: JSON = {
            "real_name": self.real_name,
            "display_name": self.name,
            "team": team_id,
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": self.tz,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1700000000,
        }


@dataclass
class Channel:
    id: str
    name: str
    members: set[str] = field(default_factory=set)
    is_private: bool = False
    is_archived: bool = False
    im_user: str | None = None  # set for a direct-message channel (D...)
    created: int = field(default_factory=lambda: int(time.time()))

    def to_json(self, *, caller: str, num_members: bool = False) -> JSON:
        if self.im_user is not None:
            out: JSON = {"id": self.id, "created": self.created, "is_im": True}
            out |= {"is_org_shared": False, "user": self.im_user, "is_open": True}
        else:
            out = {
                "id": self.id,
                "name": self.name,
                "is_channel": not self.is_private,
                "is_group": self.is_private,
                "is_im": False,
                "is_mpim": False,
                "is_private": self.is_private,
                "created": self.created,
                "is_archived": self.is_archived,
                "is_general": self.name == "general",
                "name_normalized": self.name,
                "is_shared": False,
                "is_ext_shared": False,
                "is_org_shared": False,
                "is_member": caller in self.members,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            }
        if num_members:
            out["num_members"] = len(self.members)
        return out


@dataclass
class Message:
    """A message in a channel's history; `edits` keeps the earlier versions, oldest first."""

    channel: str
    ts: str
    user: str
    text: str
    team: str = TEAM_ID
    blocks: list[JSON] | None = None
    attachments: list[JSON] | None = None
    thread_ts: str | None = None
    parent_user_id: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    files: list[JSON] = field(default_factory=list)
    edited: JSON | None = None
    edits: list[JSON] = field(default_factory=list)
    reply_users: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    def to_json(self) -> JSON:
        out: JSON = {"type": "message", "user": self.user, "text": self.text, "ts": self.ts}
        out["team"] = self.team
        if self.bot_id is not None:
            out |= {"bot_id": self.bot_id, "app_id": self.app_id}
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.attachments is not None:
            out["attachments"] = self.attachments
        if self.files:
            out |= {"files": self.files, "upload": True, "display_as_bot": False}
        if self.thread_ts is not None:
            out["thread_ts"] = self.thread_ts
            if self.parent_user_id is not None:
                out["parent_user_id"] = self.parent_user_id
        if self.replies:
            out |= {
                "thread_ts": self.ts,
                "reply_count": len(self.replies),
                "reply_users": self.reply_users,
                "reply_users_count": len(self.reply_users),
                "latest_reply": self.replies[-1],
            }
        if self.edited is not None:
            out["edited"] = self.edited
        return out


@dataclass
class Ephemeral:
    """An ephemeral message: seen by one user, never part of the channel's history."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[JSON] | None = None
    thread_ts: str | None = None


@dataclass
class UploadedFile:
    id: str
    name: str
    length: int
    user: str
    upload_key: str
    alt_txt: str | None = None
    snippet_type: str | None = None
    title: str | None = None
    content: bytes | None = None  # None until the bytes reach the upload URL
    channels: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def mimetype(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def to_json(self, *, base_url: str, team_id: str) -> JSON:
        private = f"{base_url}/files-pri/{team_id}-{self.id}/{self.name}"
        out: JSON = {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "filetype": self.name.rsplit(".", 1)[-1] if "." in self.name else "binary",
            "user": self.user,
            "user_team": team_id,
            "editable": False,
            "size": len(self.content or b""),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(self.channels),
            "public_url_shared": False,
            "url_private": private,
            "url_private_download": f"{private}?download=1",
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{self.user}/{self.id}/{self.name}",
            "comments_count": 0,
            "channels": list(self.channels),
            "groups": [],
            "ims": [],
        }
        if self.alt_txt is not None:
            out["alt_txt"] = self.alt_txt
        return out


@dataclass
class ResponseUrlPost:
    """A JSON body an app posted to a `response_url` the fake handed out."""

    url: str
    body: JSON


@dataclass(frozen=True)
class _Identity:
    user_id: str
    bot_id: str | None
    scopes: tuple[str, ...]
    kind: Literal["bot", "user", "app"] = "bot"


class SocketModeLinks(Protocol):
    """What apps.connections.open needs from a Socket Mode server: a fresh WebSocket URL."""

    def new_url(self) -> str: ...


@dataclass(frozen=True)
class _Fault:
    error: str
    status: int
    retry_after: int | None = None


_Handler = Callable[[_Identity, JSON], JSON]


class FakeSlack(Loopback):
    """Slack's Web API for one workspace, served on 127.0.0.1 until `stop()`."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-0000000001-fake-bot-token",
        scopes: Iterable[str] = BOT_SCOPES,
        team_id: str = TEAM_ID,
        team_name: str = "opsgate test",
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = BOT_USER_ID
        self.bot_id = BOT_ID
        self.app_id = APP_ID
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, list[Message]] = defaultdict(list)
        self.ephemerals: list[Ephemeral] = []
        self.files: dict[str, UploadedFile] = {}
        self.views: list[JSON] = []
        self.responses: list[ResponseUrlPost] = []
        self.calls: list[Call] = []
        self.socket_mode: SocketModeLinks | None = None  # set by FakeSocketMode
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._ts_base = int(time.time())
        self._ts_seq = itertools.count(1)
        self._tokens = {bot_token: _Identity(BOT_USER_ID, BOT_ID, tuple(scopes))}
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._uploads: dict[str, str] = {}  # upload URL key -> file id
        self._response_urls: set[str] = set()
        self._used_triggers: set[str] = set()
        self._methods: dict[str, _Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "views.open": self._views_open,
            "apps.connections.open": self._apps_connections_open,
        }
        self.add_user("opsgate", id=BOT_USER_ID, real_name="OpsGate", is_bot=True, bot_id=BOT_ID)
        self.add_user("alice", id=ALICE, real_name="Alice Admin", is_admin=True)
        self.add_user("bob", id=BOB, real_name="Bob Builder")
        self.add_channel("general", id=GENERAL)
        self.add_channel("ops", id=OPS)
        self._serve(_Server(self))

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # -- seeding -----------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        id: str | None = None,
        real_name: str = "",
        is_admin: bool = False,
        is_bot: bool = False,
        bot_id: str | None = None,
        email: str | None = None,
    ) -> User:
        """Add a workspace member; in the fake, members join every public channel."""
        with self._lock:
            user = User(id or self._new_id("U"), name, real_name or name, is_admin, is_bot, bot_id)
            user.email = email
            self.users[user.id] = user
            for channel in self.channels.values():
                if not channel.is_private and channel.im_user is None:
                    channel.members.add(user.id)
            return user

    def add_channel(
        self,
        name: str,
        *,
        id: str | None = None,
        is_private: bool = False,
        is_archived: bool = False,
        members: Iterable[str] | None = None,
    ) -> Channel:
        """Add a channel; by default every user (the bot included) is a member."""
        with self._lock:
            chosen = set(self.users) if members is None else set(members)
            channel = Channel(id or self._new_id("C"), name, chosen, is_private, is_archived)
            self.channels[channel.id] = channel
            return channel

    def open_im(self, user_id: str) -> Channel:
        """The app's direct-message channel with a user, created on first use."""
        with self._lock:
            for channel in self.channels.values():
                if channel.im_user == user_id:
                    return channel
            im = Channel(self._new_id("D"), user_id, {user_id, BOT_USER_ID}, im_user=user_id)
            self.channels[im.id] = im
            return im

    def add_user_token(
        self, token: str, user_id: str, *, scopes: Iterable[str] = BOT_SCOPES
    ) -> None:
        """Let `token` act as a person (an xoxp- user token) rather than as the bot."""
        with self._lock:
            self._tokens[token] = _Identity(user_id, None, tuple(scopes), kind="user")

    def add_app_token(
        self, token: str | None = None, *, scopes: Iterable[str] = CONNECTIONS_SCOPES
    ) -> str:
        """Register an app-level token (xapp-…); by default one with connections:write."""
        with self._lock:
            token = token or f"xapp-1-{self.app_id}-{next(self._ids)}-{secrets.token_hex(32)}"
            self._tokens[token] = _Identity("", None, tuple(scopes), kind="app")
            return token

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        thread_ts: str | None = None,
        blocks: list[JSON] | None = None,
    ) -> Message:
        """Put a message a person wrote into a channel, as if they had typed it."""
        with self._lock:
            target = self._channel(channel)
            message = Message(target.id, self._next_ts(), user, text, self.team_id, blocks)
            return self._append(target, message, thread_ts)

    # -- inspection --------------------------------------------------------------------------

    def channel_messages(self, channel: str) -> list[Message]:
        """A channel's history (thread replies included), oldest first; ID, name or #name."""
        with self._lock:
            return list(self.messages[self._channel(channel).id])

    def message(self, channel: str, ts: str) -> Message | None:
        with self._lock:
            return self._find(self._channel(channel).id, ts)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """A thread's parent followed by its replies."""
        with self._lock:
            channel_id = self._channel(channel).id
            return [
                m
                for m in self.messages[channel_id]
                if m.ts == ts or (m.thread_ts == ts and m.ts != ts)
            ]

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def new_response_url(self) -> str:
        """A `response_url` served by the fake; what the app posts to it lands in `responses`."""
        with self._lock:
            key = secrets.token_hex(8)
            self._response_urls.add(key)
            return f"{self.url}/response/{key}"

    # -- faults ------------------------------------------------------------------------------

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and `Retry-After`."""
        with self._lock:
            self._faults[method].extend(
                [_Fault("ratelimited", 429, retry_after)] * times,
            )

    def fail_next(self, method: str, error: str, *, times: int = 1, status: int = 200) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        with self._lock:
            self._faults[method].extend([_Fault(error, status)] * times)

    # -- HTTP routing ------------------------------------------------------------------------

    def _dispatch(
        self, verb: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        route, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        if route.startswith("/api/"):
            return self._api(route.removeprefix("/api/"), query, headers, body)
        if route.startswith("/upload/v1/") and verb == "POST":
            return self._receive_upload(route.removeprefix("/upload/v1/"), headers, body)
        if route.startswith("/response/") and verb == "POST":
            return self._receive_response(route.removeprefix("/response/"), body)
        if route.startswith("/files-pri/"):
            return self._download(route, headers)
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _api(
        self, method: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parse_error: str | None = None
        try:
            params: JSON = {**query, **_parse_body(headers, body)}
        except ValueError:
            params, parse_error = dict(query), "invalid_json"
        token = _bearer(headers)
        form_token = params.pop("token", None)
        token = token or (str(form_token) if form_token else None)
        call = Call(method, params, headers, token)
        with self._lock:
            self.calls.append(call)
            extra: dict[str, str] = {}
            if parse_error is not None:
                status, reply = 200, {"ok": False, "error": parse_error}
            else:
                status, reply, extra = self._answer(method, token, params)
            call.status, call.response = status, reply
        out = {"Content-Type": "application/json; charset=utf-8", **extra}
        return status, out, json.dumps(reply).encode()

    def _answer(
        self, method: str, token: str | None, params: JSON
    ) -> tuple[int, JSON, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        who = self._tokens.get(token)
        if who is None:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        headers = {"X-OAuth-Scopes": ",".join(who.scopes)}
        if method in _SCOPE_OF:
            headers["X-Accepted-OAuth-Scopes"] = _SCOPE_OF[method]
        if (who.kind == "app") != (method in _APP_TOKEN_METHODS):
            return 200, {"ok": False, "error": "not_allowed_token_type"}, headers
        faults = self._faults[method]
        if faults:
            fault = faults.popleft()
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return fault.status, {"ok": False, "error": fault.error}, headers
        try:
            _require_scope(who, _SCOPE_OF.get(method))
            return 200, {"ok": True, **handler(who, params)}, headers
        except _ApiError as refusal:
            return 200, {"ok": False, "error": refusal.error, **refusal.extra}, headers

    # -- Web API methods ---------------------------------------------------------------------

    def _auth_test(self, who: _Identity, params: JSON) -> JSON:
        user = self.users.get(who.user_id)
        out: JSON = {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": self.team_name,
            "user": user.name if user else who.user_id,
            "team_id": self.team_id,
            "user_id": who.user_id,
        }
        if who.bot_id is not None:
            out["bot_id"] = who.bot_id
        return out | {"is_enterprise_install": False}

    def _chat_post_message(self, who: _Identity, params: JSON) -> JSON:
        channel = self._post_target(params.get("channel"))
        text, blocks, attachments = _content(params)
        self._check_can_post(channel, who)
        message = self._authored(who, channel, text, blocks, attachments)
        message = self._append(channel, message, _opt_str(params.get("thread_ts")))
        return {"channel": channel.id, "ts": message.ts, "message": message.to_json()}

    def _chat_update(self, who: _Identity, params: JSON) -> JSON:
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        message = self._find(channel.id, str(params.get("ts", "")))
        if message is None:
            raise _ApiError("message_not_found")
        text, blocks, attachments = _content(params)
        if message.user != who.user_id:
            raise _ApiError("cant_update_message")
        edit_ts = self._next_ts()
        message.edits.append({"text": message.text, "blocks": message.blocks, "replaced": edit_ts})
        if "text" in params:
            message.text = text
        # "If you don't include this field, the message's previous blocks will be retained."
        if blocks is not None:
            message.blocks = blocks or None
        if attachments is not None:
            message.attachments = attachments or None
        message.edited = {"user": who.user_id, "ts": edit_ts}
        reply = message.to_json()
        return {"channel": channel.id, "ts": message.ts, "text": message.text, "message": reply}

    def _chat_post_ephemeral(self, who: _Identity, params: JSON) -> JSON:
        channel = self._post_target(params.get("channel"))
        user = str(params.get("user", ""))
        text, blocks, _ = _content(params)
        self._check_can_post(channel, who)
        if user not in channel.members:
            raise _ApiError("user_not_in_channel")
        thread_ts = _opt_str(params.get("thread_ts"))
        note = Ephemeral(channel.id, user, self._next_ts(), text, blocks, thread_ts)
        self.ephemerals.append(note)
        return {"message_ts": note.ts}

    def _conversations_info(self, who: _Identity, params: JSON) -> JSON:
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            raise _ApiError("channel_not_found")
        kind = "im" if channel.im_user else "groups" if channel.is_private else "channels"
        _require_scope(who, f"{kind}:read")
        counted = _flag(params.get("include_num_members"))
        return {"channel": channel.to_json(caller=who.user_id, num_members=counted)}

    def _users_info(self, who: _Identity, params: JSON) -> JSON:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user.to_json(self.team_id)}

    def _files_get_upload_url_external(self, who: _Identity, params: JSON) -> JSON:
        name, length = params.get("filename"), params.get("length")
        if not name or length is None or not str(length).isdigit():
            raise _ApiError("invalid_arguments")
        if int(length) == 0:
            raise _ApiError("missing_argument")
        alt_txt = _opt_str(params.get("alt_txt"))
        if alt_txt is not None and len(alt_txt) > _ALT_TXT_CHARS:
            raise _ApiError("alt_txt_too_large")
        key = secrets.token_urlsafe(12)
        upload = UploadedFile(self._new_id("F"), str(name), int(length), who.user_id, key)
        upload.alt_txt, upload.snippet_type = alt_txt, _opt_str(params.get("snippet_type"))
        self.files[upload.id] = upload
        self._uploads[key] = upload.id
        return {"upload_url": f"{self.url}/upload/v1/{key}", "file_id": upload.id}

    def _files_complete_upload_external(self, who: _Identity, params: JSON) -> JSON:
        wanted = _json_arg(params.get("files"), "invalid_arguments")
        if not isinstance(wanted, list) or not wanted:
            raise _ApiError("invalid_arguments")
        uploads: list[UploadedFile] = []
        for entry in wanted:
            upload = self.files.get(str(entry.get("id"))) if isinstance(entry, dict) else None
            if upload is None or upload.content is None or upload.user != who.user_id:
                raise _ApiError("file_not_found")
            upload.title = _opt_str(entry.get("title")) or upload.title
            uploads.append(upload)
        targets = [str(params["channel_id"])] if params.get("channel_id") else []
        targets += [c for c in str(params.get("channels") or "").split(",") if c]
        channels = [self.channels.get(c) for c in targets]
        for channel in channels:
            if channel is None:
                raise _ApiError("invalid_channel")
            if who.user_id not in channel.members:
                raise _ApiError("posting_to_channel_denied")
        comment = str(params.get("initial_comment") or "")
        for channel in cast(list[Channel], channels):
            for upload in uploads:
                upload.channels.append(channel.id)
            shown = [u.to_json(base_url=self.url, team_id=self.team_id) for u in uploads]
            message = self._authored(who, channel, comment, None, None)
            message.files = shown
            self._append(channel, message, _opt_str(params.get("thread_ts")))
        return {"files": [u.to_json(base_url=self.url, team_id=self.team_id) for u in uploads]}

    def _views_open(self, who: _Identity, params: JSON) -> JSON:
        trigger = _opt_str(params.get("trigger_id") or params.get("interactivity_pointer"))
        view = _json_arg(params.get("view"), "invalid_arguments")
        if not trigger or not isinstance(view, dict) or view.get("type") != "modal":
            raise _ApiError("invalid_arguments")
        if not _TRIGGER_ID.fullmatch(trigger):
            raise _ApiError("invalid_trigger_id")
        if trigger in self._used_triggers:
            raise _ApiError("exchanged_trigger_id")
        if len(json.dumps(view)) > _MAX_VIEW_BYTES:
            raise _ApiError("view_too_large")
        external_id = str(view.get("external_id") or "")
        if external_id and any(v["external_id"] == external_id for v in self.views):
            raise _ApiError("duplicate_external_id")
        self._used_triggers.add(trigger)
        view_id = self._new_id("V")
        opened = {
            "id": view_id,
            "team_id": self.team_id,
            "type": "modal",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": external_id,
            "state": {"values": {}},
            "hash": secrets.token_hex(8),
            "title": view.get("title"),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "bot_id": who.bot_id,
        }
        self.views.append(opened)
        return {"view": opened}

    def _apps_connections_open(self, who: _Identity, params: JSON) -> JSON:
        if self.socket_mode is None:  # Socket Mode is not turned on for the app
            raise _ApiError("access_denied")
        return {"url": self.socket_mode.new_url()}

    # -- non-API endpoints -------------------------------------------------------------------

    def _receive_upload(
        self, key: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        # "Files can be sent as raw bytes or can be multipart form encoded."
        with self._lock:
            file_id = self._uploads.get(key)
            if file_id is None:
                return 404, {"Content-Type": "text/plain"}, b"upload URL not found"
            content = _multipart_file(headers, body)
            self.files[file_id].content = body if content is None else content
            size = len(self.files[file_id].content or b"")
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, f"OK - {size}".encode()

    def _receive_response(self, key: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            if key not in self._response_urls:
                return 404, {"Content-Type": "text/plain"}, b"no_service"
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
            self.responses.append(ResponseUrlPost(f"{self.url}/response/{key}", payload))
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, b"ok"

    def _download(self, route: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            file_id = route.split("/")[2].removeprefix(f"{self.team_id}-")
            upload = self.files.get(file_id)
            if upload is None or upload.content is None or _bearer(headers) not in self._tokens:
                return 404, {"Content-Type": "text/plain"}, b"not found"
            return 200, {"Content-Type": upload.mimetype}, upload.content

    # -- helpers -----------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08X}"

    def _next_ts(self) -> str:
        seq = next(self._ts_seq)
        return f"{self._ts_base + seq // 1_000_000}.{seq % 1_000_000:06d}"

    def _channel(self, ref: str) -> Channel:
        found = self._lookup(ref)
        if found is None:
            raise KeyError(f"no channel {ref!r} in the fake workspace")
        return found

    def _lookup(self, ref: str) -> Channel | None:
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        return next(
            (c for c in self.channels.values() if c.name == name and c.im_user is None), None
        )

    def _post_target(self, ref: object) -> Channel:
        # "An encoded ID or channel name"; a user ID posts to the app's DM with that user.
        channel = self._lookup(str(ref or ""))
        if channel is not None:
            return channel
        if isinstance(ref, str) and ref in self.users:
            return self.open_im(ref)
        raise _ApiError("channel_not_found")

    def _check_can_post(self, channel: Channel, who: _Identity) -> None:
        if channel.is_archived:
            raise _ApiError("is_archived")
        public = not channel.is_private and channel.im_user is None
        if who.user_id not in channel.members and not (
            public and "chat:write.public" in who.scopes
        ):
            raise _ApiError("not_in_channel")

    def _authored(
        self,
        who: _Identity,
        channel: Channel,
        text: str,
        blocks: list[JSON] | None,
        attachments: list[JSON] | None,
    ) -> Message:
        message = Message(channel.id, self._next_ts(), who.user_id, text, self.team_id, blocks)
        message.attachments = attachments
        if who.bot_id is not None:
            message.bot_id, message.app_id = who.bot_id, self.app_id
        return message

    def _append(self, channel: Channel, message: Message, thread_ts: str | None) -> Message:
        if thread_ts is not None:
            parent = self._find(channel.id, thread_ts)
            if parent is not None and parent.thread_ts not in (None, parent.ts):
                parent = self._find(channel.id, parent.thread_ts or "")
            message.thread_ts = parent.ts if parent is not None else thread_ts
            if parent is not None:
                message.parent_user_id = parent.user
                parent.replies.append(message.ts)
                if message.user not in parent.reply_users:
                    parent.reply_users.append(message.user)
        self.messages[channel.id].append(message)
        return message

    def _find(self, channel_id: str, ts: str) -> Message | None:
        return next((m for m in self.messages[channel_id] if m.ts == ts), None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.fake = fake


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSlack/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep pytest output quiet; `FakeSlack.calls` is the request log."""

    def _handle(self) -> None:
        fake = cast(_Server, self.server).fake
        headers = {name.title(): value for name, value in self.headers.items()}
        status, out, payload = fake._dispatch(self.command, self.path, headers, self._body())
        self.send_response(status)
        for name, value in out.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


# -- request parsing -------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "")


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = _header(headers, "authorization").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _parse_body(headers: Mapping[str, str], body: bytes) -> JSON:
    if not body:
        return {}
    content_type = _header(headers, "content-type").lower()
    if content_type.startswith("application/json"):
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ValueError("a JSON body must be an object")
        return parsed
    if content_type.startswith("multipart/form-data"):
        return {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in _multipart_parts(content_type, body)
        }
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def _multipart_parts(content_type: str, body: bytes) -> list[Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    return list(message.iter_parts()) if message.is_multipart() else []


def _multipart_file(headers: Mapping[str, str], body: bytes) -> bytes | None:
    content_type = _header(headers, "content-type")
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    for part in _multipart_parts(content_type, body):
        if part.get_filename() is not None or part.get_param(
            "name", header="content-disposition"
        ) in ("file", "filename"):
            return cast(bytes, part.get_payload(decode=True))
    return None


def _opt_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _flag(value: object) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _json_arg(value: object, error: str) -> Any:
    """Arguments documented as "JSON-based ... presented as a URL-encoded string"."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _ApiError(error) from None
    return value


def _blocks(value: object) -> list[JSON] | None:
    if value is None:
        return None
    blocks = _json_arg(value, "invalid_blocks_format")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
        raise _ApiError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise _ApiError("invalid_blocks")
    return blocks


def _content(params: JSON) -> tuple[str, list[JSON] | None, list[JSON] | None]:
    text = str(params.get("text") or "")
    blocks = _blocks(params.get("blocks"))
    attachments = _json_arg(params.get("attachments"), "invalid_attachments")
    if attachments is not None and not isinstance(attachments, list):
        raise _ApiError("invalid_attachments")
    if not text and not blocks and not attachments:
        raise _ApiError("no_text")
    if len(text) > MAX_TEXT_CHARS:
        raise _ApiError("msg_too_long")
    return text, blocks, attachments


def _require_scope(who: _Identity, scope: str | None) -> None:
    if scope is not None and scope not in who.scopes:
        raise _ApiError("missing_scope", needed=scope, provided=",".join(who.scopes))


# -- what Slack sends to an app --------------------------------------------------------------


def sign(body: str | bytes, secret: str, timestamp: int | str) -> str:
    """Slack's v0 signature: HMAC-SHA256 of `v0:{timestamp}:{body}`, hex, prefixed `v0=`."""
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(body: str | bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with `body`: content type, request timestamp and signature."""
    stamp = int(time.time()) if timestamp is None else timestamp
    text = body.decode() if isinstance(body, bytes) else body
    json_body = text.lstrip().startswith("{")
    return {
        "Content-Type": "application/json" if json_body else "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": sign(body, secret, stamp),
    }


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def _event_ts() -> str:
    return f"{time.time():.6f}"


def slash_command_body(
    command: str = "/opsgate",
    text: str = "",
    *,
    user_id: str = ALICE,
    user_name: str = "alice",
    channel_id: str = OPS,
    channel_name: str = "ops",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = APP_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
    token: str = "verification-token",
) -> str:
    """The form body Slack POSTs when someone runs a slash command."""
    return urlencode(
        {
            "token": token,
            "team_id": team_id,
            "team_domain": team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url
            or f"https://hooks.slack.com/commands/{team_id}/{secrets.randbelow(10**12)}/x",
            "trigger_id": trigger_id or _trigger_id(),
        }
    )


def url_verification_body(
    challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
) -> str:
    """The JSON body Slack sends once to check an Events API request URL."""
    return json.dumps(
        {"token": "verification-token", "challenge": challenge, "type": "url_verification"}
    )


def app_mention_event(
    text: str,
    *,
    user: str = ALICE,
    channel: str = OPS,
    ts: str | None = None,
    thread_ts: str | None = None,
) -> JSON:
    """An `app_mention` event; `text` normally starts with `<@BOT_USER_ID>`."""
    stamp = ts or _event_ts()
    event: JSON = {"type": "app_mention", "user": user, "text": text, "ts": stamp}
    event |= {"channel": channel, "event_ts": stamp, "team": TEAM_ID}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_im_event(
    text: str, *, user: str = ALICE, channel: str = "D0ALICE01", ts: str | None = None
) -> JSON:
    """A `message.im` event: a person wrote in their direct-message channel with the app."""
    stamp = ts or _event_ts()
    event: JSON = {"type": "message", "user": user, "text": text, "ts": stamp}
    return event | {"channel": channel, "event_ts": stamp, "channel_type": "im", "team": TEAM_ID}


def event_body(
    event: Mapping[str, Any],
    *,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    event_id: str | None = None,
    event_time: int | None = None,
    authorized_user: str = BOT_USER_ID,
) -> str:
    """The JSON body of an Events API `event_callback` wrapping `event`."""
    return json.dumps(
        {
            "token": "verification-token",
            "team_id": team_id,
            "api_app_id": api_app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev0{secrets.token_hex(5).upper()}",
            "event_time": event_time or int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team_id,
                    "user_id": authorized_user,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_hex(12)}",
        }
    )


def block_actions_body(
    action_id: str,
    value: str = "",
    *,
    block_id: str = "actions",
    user_id: str = ALICE,
    user_name: str = "alice",
    channel_id: str = OPS,
    channel_name: str = "ops",
    message: Mapping[str, Any] | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
) -> str:
    """The form body (`payload=` JSON) Slack POSTs when someone clicks a button in a message.

    `message` is the message that held the button (e.g. `Message.to_json()` from the fake).
    """
    shown = dict(message) if message is not None else {"type": "message", "ts": _event_ts()}
    action_ts = _event_ts()
    payload: JSON = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": shown.get("ts"),
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": shown,
        "state": {"values": {}},
        "response_url": response_url
        or f"https://hooks.slack.com/actions/{team_id}/{secrets.randbelow(10**12)}/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})
