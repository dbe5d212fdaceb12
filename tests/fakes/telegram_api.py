"""A fake Telegram Bot API on loopback that the real python-telegram-bot talks to over HTTP.

    with FakeTelegram() as fake:
        alice = fake.new_user("alice")
        chat = fake.private_chat(alice)
        bot = telegram.Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url)
        fake.say(chat, alice, "/approve burst-42")  # queued for getUpdates
        ... run the bot ...
        assert fake.messages[chat.id][-1].text == "Approved."

It answers the way https://core.telegram.org/bots/api documents: the `{"ok": ..}` envelope,
`error_code`/`description`/`parameters.retry_after` on failure, methods case-insensitive,
parameters from the query string, urlencoded or JSON bodies and multipart uploads.
Telegram's HTML parse mode is checked with the rules of its server (tdlib's parse_html), so
markup the real API refuses is refused here with the same description.

Deliberate differences: webhooks may be plain http on any port (Telegram insists on HTTPS on
80/88/443/8443); getUpdates waits at most `max_poll_timeout` seconds; nothing is sent to a
webhook until a test calls `deliver_to_webhook()`; Markdown parse modes are stored unparsed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "ApiCall",
    "ApiError",
    "FakeChat",
    "FakeMessage",
    "FakeTelegram",
    "FakeUser",
    "Revision",
    "Webhook",
    "callback_update",
    "message_update",
    "parse_html",
]

JSONDict = dict[str, Any]
ChatType = Literal["private", "group", "supergroup"]

MAX_TEXT = 4096  # characters after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
MAX_PHOTO_BYTES = 10 * 1024 * 1024


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_HTML_TAGS = _words(
    "a b strong i em u ins s strike del code pre span tg-spoiler tg-emoji blockquote"
)
_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "code": "code", "pre": "pre", "span": "spoiler", "tg-spoiler": "spoiler",
    "tg-emoji": "custom_emoji", "blockquote": "blockquote", "a": "text_link",
}  # fmt: skip
_JSON_PARAMS = _words(
    "reply_markup reply_parameters allowed_updates commands scope entities caption_entities"
)
_INT_PARAMS = _words(
    "chat_id message_id offset limit timeout max_connections cache_time user_id reply_to_message_id"
)
_BOOL_PARAMS = _words("drop_pending_updates show_alert disable_notification protect_content")
# Update types a bot receives when allowed_updates is empty or never set.
_OPT_IN_UPDATES = _words("chat_member message_reaction message_reaction_count")
_CHAT_ACTIONS = _words(
    "typing upload_photo record_video upload_video record_voice upload_voice"
    " upload_document choose_sticker find_location record_video_note upload_video_note"
)
_BUTTON_ACTIONS = _words(
    "callback_data url login_url switch_inline_query switch_inline_query_current_chat"
    " switch_inline_query_chosen_chat callback_game pay web_app copy_text"
)
_COMMAND = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w@/])")
_GETUPDATES_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active;"
    " use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup"
    " are exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class ApiError(Exception):
    """An error answer: HTTP status `code`, `description` and optional `parameters`."""

    def __init__(self, code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# ---------------------------------------------------------------- objects a test holds


@dataclass(frozen=True)
class FakeUser:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False
    language_code: str | None = "en"

    def to_api(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        if self.language_code and not self.is_bot:
            data["language_code"] = self.language_code
        return data


@dataclass(frozen=True)
class FakeChat:
    id: int
    type: ChatType
    title: str | None = None
    username: str | None = None
    first_name: str | None = None

    def to_api(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name"):
            if value := getattr(self, key):
                data[key] = value
        return data


@dataclass(frozen=True)
class Revision:
    """One version of a message's content: as sent, then after each edit."""

    text: str | None  # as Telegram shows it, markup parsed away
    raw_text: str | None  # as the bot sent it
    parse_mode: str | None
    entities: tuple[JSONDict, ...]
    reply_markup: JSONDict | None


@dataclass
class FakeMessage:
    """A message in a chat, sent by the bot unless `from_user` is set."""

    message_id: int
    chat: FakeChat
    date: int
    text: str | None = None
    raw_text: str | None = None
    parse_mode: str | None = None
    entities: tuple[JSONDict, ...] = ()
    reply_markup: JSONDict | None = None
    photo: bytes | None = None
    photo_file_id: str | None = None
    from_user: FakeUser | None = None
    edit_date: int | None = None
    deleted: bool = False
    edits: list[Revision] = field(default_factory=list)
    reply_to: FakeMessage | None = None  # the message this one answers (a thread, visually)

    @property
    def caption(self) -> str | None:
        return self.text if self.photo_file_id else None

    def content(self) -> Revision:
        return Revision(self.text, self.raw_text, self.parse_mode, self.entities, self.reply_markup)

    def to_api(self, bot: FakeUser) -> JSONDict:
        sender = self.from_user or bot
        data: JSONDict = {
            "message_id": self.message_id,
            "from": sender.to_api(),
            "chat": self.chat.to_api(),
            "date": self.date,
        }
        if self.edit_date is not None:
            data["edit_date"] = self.edit_date
        if self.photo_file_id is not None:
            data["photo"] = _photo_sizes(self.photo_file_id, self.photo or b"")
            text_key, entities_key = "caption", "caption_entities"
        else:
            text_key, entities_key = "text", "entities"
        if self.text is not None:
            data[text_key] = self.text
        if self.entities:
            data[entities_key] = list(self.entities)
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            data["reply_markup"] = self.reply_markup
        if self.reply_to is not None:  # Telegram nests the replied-to message one level deep
            replied = dataclasses.replace(self.reply_to, reply_to=None)
            data["reply_to_message"] = replied.to_api(bot)
        return data


@dataclass(frozen=True)
class ApiCall:
    method: str  # as documented, e.g. "sendMessage", whatever case the client used
    params: JSONDict  # JSON-valued and integer parameters decoded
    files: Mapping[str, bytes]
    status: int
    at: float = field(default_factory=time.monotonic)  # when it was answered (rate-limit checks)


# ---------------------------------------------------------------- update builders


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str) -> list[JSONDict]:
    return [
        {
            "type": "bot_command",
            "offset": _utf16_len(text[: m.start()]),
            "length": _utf16_len(m.group()),
        }
        for m in _COMMAND.finditer(text)
    ]


def message_update(
    chat: FakeChat,
    user: FakeUser,
    text: str,
    *,
    update_id: int = 1,
    message_id: int = 1,
    date: int | None = None,
) -> JSONDict:
    """An Update with a user's text message, `/cmd` and `/cmd@botname` marked `bot_command`."""
    message: JSONDict = {
        "message_id": message_id,
        "from": user.to_api(),
        "chat": chat.to_api(),
        "date": int(time.time()) if date is None else date,
        "text": text,
    }
    if entities := _command_entities(text):
        message["entities"] = entities
    return {"update_id": update_id, "message": message}


def callback_update(
    chat: FakeChat,
    user: FakeUser,
    message_id: int,
    data: str,
    *,
    update_id: int = 1,
    query_id: str | None = None,
    message: JSONDict | None = None,
) -> JSONDict:
    """An Update for a press on an inline button of message `message_id` in `chat`."""
    if message is None:
        message = {"message_id": message_id, "chat": chat.to_api(), "date": int(time.time())}
    query = {
        "id": query_id or f"{user.id}{update_id:08d}",
        "from": user.to_api(),
        "message": message,
        "chat_instance": str(-(abs(chat.id) * 7919 % 10**18)),  # opaque, fixed per chat
        "data": data,
    }
    return {"update_id": update_id, "callback_query": query}


# ---------------------------------------------------------------- Telegram's HTML


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Text and entities as Telegram's server parses parse_mode=HTML, or its 400 error."""
    return _HtmlParser(text).parse()


def _is_ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


class _HtmlParser:
    """tdlib's parse_html: the tags and errors the Bot API answers for parse_mode=HTML."""

    def __init__(self, text: str) -> None:
        self.text, self.i, self.n = text, 0, len(text)
        self.out: list[str] = []
        self.u16 = 0  # entity offsets count UTF-16 code units
        self.stack: list[tuple[str, dict[str, str], int]] = []
        self.entities: list[JSONDict] = []

    def parse(self) -> tuple[str, list[JSONDict]]:
        text = self.text
        while self.i < self.n:
            c = text[self.i]
            if c == "&" and (decoded := self._entity()):
                self._emit(decoded)
            elif c != "<":
                self._emit(c)
                self.i += 1
            elif self.i + 1 < self.n and text[self.i + 1] == "/":
                self._end_tag()
            else:
                self._start_tag()
        if self.stack:
            tag = self.stack[-1][0]
            raise self._fail(f'Can\'t find end tag corresponding to start tag "{tag}"')
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.entities

    def _emit(self, chars: str) -> None:
        self.out.append(chars)
        self.u16 += _utf16_len(chars)

    def _fail(self, message: str) -> ApiError:
        return _bad(f"can't parse entities: {message}")

    def _at(self, i: int) -> int:  # errors give UTF-8 byte offsets
        return len(self.text[:i].encode())

    def _skip(self, stop: str = "", *, spaces: bool) -> int:
        begin = self.i
        while self.i < self.n and self.text[self.i].isspace() == spaces:
            if not spaces and self.text[self.i] in stop:
                break
            self.i += 1
        return begin

    def _entity(self) -> str | None:
        end = self.text.find(";", self.i + 1, self.i + 12)
        name = self.text[self.i + 1 : end] if end > 0 else ""
        char = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(name)
        if char is None and name.startswith("#"):
            hexadecimal = name[1:2] in ("x", "X")
            try:
                code = int(name[2:] if hexadecimal else name[1:], 16 if hexadecimal else 10)
            except ValueError:
                return None
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                char = chr(code)
        if char is not None:
            self.i = end + 1
        return char

    def _start_tag(self) -> None:
        begin = self.i
        self.i += 1
        self._skip(">", spaces=False)
        if self.i >= self.n:
            raise self._fail(f"Unclosed start tag at byte offset {self._at(begin)}")
        tag = self.text[begin + 1 : self.i].lower()
        if tag not in _HTML_TAGS:
            raise self._fail(f'Unsupported start tag "{tag}" at byte offset {self._at(begin)}')
        attrs = self._attributes(tag, begin)
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise self._fail(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._at(begin)}'
            )
        if tag == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise self._fail("Invalid custom emoji identifier specified")
        self.stack.append((tag, attrs, self.u16))
        self.i += 1

    def _attributes(self, tag: str, begin: int) -> dict[str, str]:
        text, attrs = self.text, dict[str, str]()
        unclosed = self._fail(f"Unclosed start tag at byte offset {self._at(begin)}")
        while True:
            self._skip(spaces=True)
            if self.i >= self.n:
                raise unclosed
            if text[self.i] == ">":
                return attrs
            name = text[self._skip("=>/\"'", spaces=False) : self.i].lower()
            if not name:
                raise self._fail(
                    f'Empty attribute name in the tag "{tag}" at byte offset {self._at(begin)}'
                )
            self._skip(spaces=True)
            if self.i >= self.n or text[self.i] != "=":
                attrs[name] = ""
                continue
            self.i += 1
            self._skip(spaces=True)
            if self.i >= self.n:
                raise unclosed
            if text[self.i] in "\"'":
                attrs[name] = self._quoted(text[self.i])
                continue
            value_start = self.i
            while self.i < self.n and (text[self.i] in ".-" or _is_ascii_alnum(text[self.i])):
                self.i += 1
            if self.i >= self.n:
                raise unclosed
            if not text[self.i].isspace() and text[self.i] != ">":
                at = self._at(self.i)
                raise self._fail(f"Unexpected end of name token at byte offset {at}")
            attrs[name] = text[value_start : self.i].lower()

    def _quoted(self, quote: str) -> str:
        value = []
        self.i += 1
        while self.i < self.n and self.text[self.i] != quote:
            if self.text[self.i] == "&" and (decoded := self._entity()):
                value.append(decoded)
            else:
                value.append(self.text[self.i])
                self.i += 1
        self.i += 1
        return "".join(value)

    def _end_tag(self) -> None:
        begin = self.i
        if not self.stack:
            raise self._fail(f"Unexpected end tag at byte offset {self._at(begin)}")
        self.i += 2
        name = self.text[self._skip(">", spaces=False) : self.i].lower()
        self._skip(spaces=True)
        if self.i >= self.n or self.text[self.i] != ">":
            raise self._fail(f"Unclosed end tag at byte offset {self._at(begin)}")
        tag, attrs, start = self.stack.pop()
        if name and name != tag:
            raise self._fail(
                f'Unmatched end tag at byte offset {self._at(begin)}, expected "</{tag}>",'
                f' found "</{name}>"'
            )
        if self.u16 > start:
            self._add_entity(tag, attrs, start, self.u16 - start)
        self.i += 1

    def _add_entity(self, tag: str, attrs: dict[str, str], offset: int, length: int) -> None:
        entity: JSONDict = {"type": _ENTITY_TYPES[tag], "offset": offset, "length": length}
        if tag == "a":
            url = attrs.get("href") or "".join(self.out)[-length:]
            entity["url"] = url
        elif tag == "tg-emoji":
            entity["custom_emoji_id"] = attrs["emoji-id"]
        elif tag == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        elif tag == "code" and attrs.get("class", "").startswith("language-"):
            entity["language"] = attrs["class"].removeprefix("language-")
        elif tag == "pre" and self.entities and self.entities[-1]["type"] == "code":
            inner = self.entities[-1]
            if (inner["offset"], inner["length"]) == (offset, length):  # <pre><code class=..>
                self.entities.pop()
                if "language" in inner:
                    entity["language"] = inner["language"]
        self.entities.append(entity)


# ---------------------------------------------------------------- photos


def _image_size(data: bytes) -> tuple[int, int]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, size = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return (
                    int.from_bytes(data[i + 7 : i + 9], "big"),
                    int.from_bytes(data[i + 5 : i + 7], "big"),
                )
            i += 2 + size
    raise _bad("IMAGE_PROCESS_FAILED")


def _photo_sizes(file_id: str, data: bytes) -> list[JSONDict]:
    """The thumbnails Telegram makes (90, 320, 800 px on the long side), then the original."""
    width, height = _image_size(data) if data else (0, 0)
    sizes = []
    for suffix, limit in (("s", 90), ("m", 320), ("x", 800)):
        if max(width, height) > limit:
            scale = limit / max(width, height)
            sizes.append(
                {
                    "file_id": f"{file_id}-{suffix}",
                    "file_unique_id": f"{file_id}-{suffix}-u",
                    "width": round(width * scale),
                    "height": round(height * scale),
                    "file_size": round(len(data) * scale * scale),
                }
            )
    original = {"file_id": file_id, "file_unique_id": f"{file_id}-u", "width": width}
    return [*sizes, {**original, "height": height, "file_size": len(data)}]


# ---------------------------------------------------------------- the fake


@dataclass
class Webhook:
    url: str
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    has_custom_certificate: bool = False
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(frozen=True)
class _Described:
    """A result Telegram sends with a `description`, as setWebhook does."""

    result: Any
    description: str


class FakeTelegram:
    """The Bot API for one bot, on a free loopback port while started or inside `with`."""

    def __init__(
        self,
        *,
        token: str = "123456789:AAFakeTokenForOpsgateTests_0123456789",
        bot_username: str = "opsgate_bot",
        bot_name: str = "OpsGate",
        max_poll_timeout: float = 1.0,
    ) -> None:
        self.token = token
        self.bot = FakeUser(
            id=int(token.split(":", 1)[0]), first_name=bot_name, username=bot_username, is_bot=True
        )
        self.max_poll_timeout = max_poll_timeout
        self.chats: dict[int, FakeChat] = {}
        self.messages: defaultdict[int, list[FakeMessage]] = defaultdict(list)  # the bot's
        self.incoming: defaultdict[int, list[FakeMessage]] = defaultdict(list)  # users'
        self.callback_answers: list[JSONDict] = []
        self.calls: list[ApiCall] = []
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}  # (scope, language) ->
        self.files: dict[str, bytes] = {}
        self.webhook: Webhook | None = None
        self._pending: list[JSONDict] = []
        self._allowed_updates: list[str] = []
        self._queries: dict[str, bool] = {}  # callback query id -> answered
        self._rate_limits: dict[str, tuple[int, int]] = {}  # method -> (times, retry_after)
        self._blocked: set[int] = set()
        self._lock = threading.Condition(threading.RLock())
        self._update_ids = itertools.count(10_000_001)
        self._user_ids = itertools.count(700_000_001)
        self._group_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._message_ids: defaultdict[int, Iterator[int]] = defaultdict(lambda: itertools.count(1))
        self._poll_generation = 0
        self._closing = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods = {name.lower(): (name, handler) for name, handler in self._api().items()}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeTelegram:
        if self._server is None:
            self._closing = False
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-telegram",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTelegram is not started; use it in a `with` block")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """For `Bot(token, base_url=...)`, which appends the token."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    # ------------------------------------------------------------ people and chats

    def new_user(self, username: str, *, first_name: str | None = None) -> FakeUser:
        return FakeUser(
            id=next(self._user_ids), first_name=first_name or username.title(), username=username
        )

    def private_chat(self, user: FakeUser) -> FakeChat:
        """The user's chat with the bot, as after they pressed Start."""
        chat = FakeChat(user.id, "private", username=user.username, first_name=user.first_name)
        self.chats[chat.id] = chat
        return chat

    def group_chat(self, title: str, *, supergroup: bool = True) -> FakeChat:
        """A group the bot was added to; supergroup ids start with -100 as Telegram's do."""
        n = next(self._group_ids)
        chat_id, kind = (
            (-1_002_000_000_000 - n, "supergroup") if supergroup else (-4_000_000_000 - n, "group")
        )
        chat = FakeChat(chat_id, cast(ChatType, kind), title=title)
        self.chats[chat.id] = chat
        return chat

    def block(self, chat: FakeChat) -> None:
        """The user blocks the bot (or a group removes it): sends there answer 403."""
        self._blocked.add(chat.id)

    def unblock(self, chat: FakeChat) -> None:
        self._blocked.discard(chat.id)

    # ------------------------------------------------------------ what users do

    def say(self, chat: FakeChat, user: FakeUser, text: str) -> JSONDict:
        """`user` writes `text` in `chat`; returns the Update now pending."""
        with self._lock:
            self.chats.setdefault(chat.id, chat)
            update = message_update(
                chat, user, text, update_id=next(self._update_ids), message_id=self._new_id(chat)
            )
            sent = update["message"]
            entities = tuple(sent.get("entities", ()))
            content = Revision(text, text, None, entities, None)
            self.incoming[chat.id].append(
                _message(sent["message_id"], chat, content, from_user=user)
            )
            return self.push_update(update)

    def press(self, chat: FakeChat, user: FakeUser, message_id: int, data: str) -> JSONDict:
        """`user` presses the inline button carrying `data` under the bot's message."""
        with self._lock:
            message = self._find(chat.id, message_id)
            if message is None:
                raise LookupError(f"the bot has no message {message_id} in chat {chat.id}")
            buttons = [
                button.get("callback_data")
                for row in (message.reply_markup or {}).get("inline_keyboard", [])
                for button in row
            ]
            if data not in buttons:
                raise ValueError(f"message {message_id} has no button {data!r}; it has {buttons}")
            update_id = next(self._update_ids)
            query_id = f"{user.id}{update_id}"
            shown = message.to_api(self.bot)
            update = callback_update(
                chat, user, message_id, data, update_id=update_id, query_id=query_id, message=shown
            )
            return self.push_update(update)

    def push_update(self, update: Mapping[str, Any]) -> JSONDict:
        """Queue any Update for getUpdates (or for `deliver_to_webhook`).

        As on Telegram, an update of a type the bot did not subscribe to (`allowed_updates`,
        which leaves out chat_member and reactions unless named) is dropped, not queued.
        """
        with self._lock:
            queued = dict(update)
            queued.setdefault("update_id", next(self._update_ids))
            if query := queued.get("callback_query"):
                self._queries.setdefault(query["id"], False)
            if self._allowed(queued):
                self._pending.append(queued)
                self._lock.notify_all()
            return queued

    @property
    def pending_updates(self) -> list[JSONDict]:
        with self._lock:
            return list(self._pending)

    def deliver_to_webhook(
        self, update: Mapping[str, Any] | None = None, *, timeout: float = 5.0
    ) -> int:
        """POST `update`, or the oldest pending one, to the webhook; returns the HTTP status.

        A pending update leaves the queue once the webhook answers 2xx; otherwise it stays and
        getWebhookInfo reports the error, as Telegram does. Blocking: from async code, call it
        through `asyncio.to_thread`.
        """
        with self._lock:
            hook = self.webhook
            if hook is None:
                raise RuntimeError("no webhook is set (setWebhook was not called)")
            if update is None:
                if not self._pending:
                    raise LookupError("no pending update to deliver")
                update = self._pending[0]
            body = dict(update)
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        request = urllib.request.Request(
            hook.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, reason = int(response.status), str(response.reason)
        except urllib.error.HTTPError as e:
            status, reason = e.code, str(e.reason)
        except urllib.error.URLError as e:
            hook.last_error_date, hook.last_error_message = int(time.time()), str(e.reason)
            raise
        with self._lock:
            if 200 <= status < 300:
                self._pending = [u for u in self._pending if u["update_id"] != body["update_id"]]
            else:
                hook.last_error_date = int(time.time())
                hook.last_error_message = f"Wrong response from the webhook: {status} {reason}"
        return status

    # ------------------------------------------------------------ failures on demand

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 5) -> None:
        """The next `times` calls of `method` answer 429 with `parameters.retry_after`."""
        name = self._methods[method.lower()][0]
        self._rate_limits[name] = (times, retry_after)

    # ------------------------------------------------------------ assertions

    def calls_to(self, method: str) -> list[JSONDict]:
        return [call.params for call in self.calls if call.method.lower() == method.lower()]

    def my_commands(self, *, scope: str = "default", language_code: str = "") -> list[JSONDict]:
        return self.commands.get((scope, language_code), [])

    # ------------------------------------------------------------ HTTP

    def _http(
        self, path: str, query: str, content_type: str, body: bytes
    ) -> tuple[int, bytes, str]:
        if path.startswith(f"/file/bot{self.token}/"):
            file_id = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if file_id in self.files:
                return 200, self.files[file_id], "application/octet-stream"
            return _error(404, "Not Found")
        prefix, _, method = path.rpartition("/")
        if prefix.startswith("/bot") and prefix != f"/bot{self.token}":
            return _error(401, "Unauthorized")
        if prefix != f"/bot{self.token}" or method.lower() not in self._methods:
            return _error(404, "Not Found")
        name, handler = self._methods[method.lower()]
        params: JSONDict = {}
        files: dict[str, bytes] = {}
        answer: JSONDict
        try:
            raw, files = _read_params(query, content_type, body)
            params = _decode_params(raw, files)
            with self._lock:
                self._check_rate_limit(name)
                result = handler(params, files)
            answer = {"ok": True, "result": result}
            if isinstance(result, _Described):
                answer = {"ok": True, "result": result.result, "description": result.description}
        except ApiError as e:
            answer = {"ok": False, "error_code": e.code, "description": e.description}
            if e.parameters:
                answer["parameters"] = e.parameters
        status = 200 if answer["ok"] else int(answer["error_code"])
        self.calls.append(ApiCall(name, params, files, status))
        return _envelope(status, answer)

    def _check_rate_limit(self, method: str) -> None:
        times, retry_after = self._rate_limits.get(method, (0, 0))
        if times > 0:
            self._rate_limits[method] = (times - 1, retry_after)
            raise ApiError(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )

    # ------------------------------------------------------------ the methods

    def _api(self) -> dict[str, Any]:
        return {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendPhoto": self._send_photo,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
        }

    def _get_me(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        return {
            **self.bot.to_api(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_updates(self, p: JSONDict, files: Mapping[str, bytes]) -> list[JSONDict]:
        if self.webhook is not None:
            raise ApiError(409, _GETUPDATES_CONFLICT)
        offset = _int(p, "offset", 0)
        limit = min(max(_int(p, "limit", 100), 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)
        if "allowed_updates" in p:
            self._allowed_updates = list(p["allowed_updates"])
        if offset > 0:  # confirms every update before it
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        self._lock.notify_all()  # an older long poll is answered 409
        deadline = time.monotonic() + min(timeout, self.max_poll_timeout)
        while True:
            remaining = deadline - time.monotonic()
            if self._pending or self._closing or remaining <= 0:
                return self._pending[:limit]
            self._lock.wait(remaining)
            if self._poll_generation != generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request;"
                    " make sure that only one bot instance is running",
                )
            if self.webhook is not None:
                raise ApiError(409, _GETUPDATES_CONFLICT)

    def _allowed(self, update: JSONDict) -> bool:
        kind = next((key for key in update if key != "update_id"), "")
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in _OPT_IN_UPDATES

    def _set_webhook(self, p: JSONDict, files: Mapping[str, bytes]) -> _Described:
        url = str(p.get("url") or "")
        if not url:
            return self._delete_webhook(p, files)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        max_connections = _int(p, "max_connections", 40)
        if not 1 <= max_connections <= 100:
            raise _bad("bad webhook: max_connections must be between 1 and 100")
        if p.get("drop_pending_updates"):
            self._pending.clear()
        if "allowed_updates" in p:
            self._allowed_updates = list(p["allowed_updates"])
        already = self.webhook is not None and self.webhook.url == url
        self.webhook = Webhook(
            url=url,
            secret_token=None if secret is None else str(secret),
            allowed_updates=list(p["allowed_updates"]) if "allowed_updates" in p else None,
            max_connections=max_connections,
            has_custom_certificate="certificate" in files,
        )
        self._lock.notify_all()
        return _Described(True, "Webhook is already set" if already else "Webhook was set")

    def _delete_webhook(self, p: JSONDict, files: Mapping[str, bytes]) -> _Described:
        if p.get("drop_pending_updates"):
            self._pending.clear()
        existed, self.webhook = self.webhook is not None, None
        return _Described(True, "Webhook was deleted" if existed else "Webhook is already deleted")

    def _get_webhook_info(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        hook = self.webhook
        info: JSONDict = {
            "url": hook.url if hook else "",
            "has_custom_certificate": bool(hook and hook.has_custom_certificate),
            "pending_update_count": len(self._pending),
        }
        if hook is not None:
            info |= {"ip_address": "127.0.0.1", "max_connections": hook.max_connections}
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    def _send_message(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        chat = self._chat(p)
        message = _message(
            self._new_id(chat), chat, _content(p, "text"), reply_to=self._replied(chat, p)
        )
        self.messages[chat.id].append(message)
        return message.to_api(self.bot)

    def _replied(self, chat: FakeChat, p: JSONDict) -> FakeMessage | None:
        """`reply_parameters` (or the older `reply_to_message_id`): the message answered."""
        wanted = p.get("reply_parameters")
        if isinstance(wanted, dict):
            message_id, lenient = (
                wanted.get("message_id"),
                bool(wanted.get("allow_sending_without_reply")),
            )
        elif "reply_to_message_id" in p:
            message_id, lenient = p["reply_to_message_id"], False
        else:
            return None
        everyone = [*self.messages[chat.id], *self.incoming[chat.id]]  # the bot's and people's
        found = next((m for m in everyone if m.message_id == message_id and not m.deleted), None)
        if found is None and not lenient:
            raise _bad("message to be replied not found")
        return found

    def _edit_message_text(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        message = self._editable(p)
        if message.photo_file_id is not None:
            raise _bad("there is no text in the message to edit")
        return self._apply_edit(message, _content(p, "text"))

    def _edit_message_reply_markup(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        message = self._editable(p)
        new = dataclasses.replace(message.content(), reply_markup=_reply_markup(p))
        return self._apply_edit(message, new)

    def _apply_edit(self, message: FakeMessage, new: Revision) -> JSONDict:
        old = message.content()
        same_markup = _inline(new.reply_markup) == _inline(old.reply_markup)
        if (new.text, new.entities) == (old.text, old.entities) and same_markup:
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        message.text, message.raw_text, message.parse_mode = new.text, new.raw_text, new.parse_mode
        message.entities, message.reply_markup = new.entities, new.reply_markup
        message.edit_date = int(time.time())
        message.edits.append(new)
        return message.to_api(self.bot)

    def _delete_message(self, p: JSONDict, files: Mapping[str, bytes]) -> bool:
        chat = self._chat(p)
        message = self._find(chat.id, _int(p, "message_id", 0))
        if message is None:
            raise _bad("message to delete not found")
        message.deleted = True
        return True

    def _send_photo(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        chat = self._chat(p)
        photo = p.get("photo")
        if "photo" in files:
            data = files["photo"]
        elif isinstance(photo, str) and photo in self.files:
            data = self.files[photo]
        elif isinstance(photo, str) and photo.startswith(("http://", "https://")):
            raise _bad("failed to get HTTP URL content")
        elif isinstance(photo, str) and photo:
            raise _bad("wrong file identifier/HTTP URL specified")
        else:
            raise _bad("there is no photo in the request")
        if not data:
            raise _bad("file must be non-empty")
        if len(data) > MAX_PHOTO_BYTES:
            raise _bad("PHOTO_SAVE_FILE_INVALID")
        _image_size(data)
        content = _content(p, "caption")
        file_id = photo if isinstance(photo, str) and photo in self.files else None
        if file_id is None:
            file_id = f"AgACAgIAAxkBAAI{next(self._file_ids):06d}"
            self.files[file_id] = data
        message = _message(self._new_id(chat), chat, content, photo=data, photo_file_id=file_id)
        self.messages[chat.id].append(message)
        return message.to_api(self.bot)

    def _get_file(self, p: JSONDict, files: Mapping[str, bytes]) -> JSONDict:
        file_id = str(p.get("file_id") or "")
        if file_id not in self.files:
            raise _bad("invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"{file_id}-u",
            "file_size": len(self.files[file_id]),
            "file_path": f"photos/{file_id}.jpg",
        }

    def _send_chat_action(self, p: JSONDict, files: Mapping[str, bytes]) -> bool:
        self._chat(p)
        if p.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _answer_callback_query(self, p: JSONDict, files: Mapping[str, bytes]) -> bool:
        query_id = str(p.get("callback_query_id") or "")
        if self._queries.get(query_id, True):  # unknown, or answered already
            raise _bad(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        self._queries[query_id] = True
        self.callback_answers.append(dict(p))
        return True

    def _set_my_commands(self, p: JSONDict, files: Mapping[str, bytes]) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(name)):
                raise _bad("BOT_COMMAND_INVALID")
        self.commands[_commands_key(p)] = commands
        return True

    def _get_my_commands(self, p: JSONDict, files: Mapping[str, bytes]) -> list[JSONDict]:
        return self.commands.get(_commands_key(p), [])

    def _delete_my_commands(self, p: JSONDict, files: Mapping[str, bytes]) -> bool:
        self.commands.pop(_commands_key(p), None)
        return True

    # ------------------------------------------------------------ chat state

    def _chat(self, p: JSONDict) -> FakeChat:
        chat_id = p.get("chat_id")
        if chat_id in (None, ""):
            raise _bad("chat_id is empty")
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            chat = next((c for c in self.chats.values() if f"@{c.username}" == chat_id), None)
        else:
            chat = self.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise _bad("chat not found")
        if chat.id in self._blocked:
            raise ApiError(
                403,
                "Forbidden: bot was blocked by the user"
                if chat.type == "private"
                else f"Forbidden: bot was kicked from the {chat.type} chat",
            )
        return chat

    def _new_id(self, chat: FakeChat) -> int:
        return next(self._message_ids[chat.id])

    def _find(self, chat_id: int, message_id: int) -> FakeMessage | None:
        return next(
            (m for m in self.messages[chat_id] if m.message_id == message_id and not m.deleted),
            None,
        )

    def _editable(self, p: JSONDict) -> FakeMessage:
        if "inline_message_id" in p:
            raise _bad("inline messages are not supported by FakeTelegram")
        chat = self._chat(p)
        if "message_id" not in p:
            raise _bad("message identifier is not specified")
        message = self._find(chat.id, _int(p, "message_id", 0))
        if message is not None:
            return message
        if any(m.message_id == p["message_id"] for m in self.incoming[chat.id]):
            raise _bad("message can't be edited")
        raise _bad("message to edit not found")


# ---------------------------------------------------------------- parameters


def _message(message_id: int, chat: FakeChat, content: Revision, **extra: Any) -> FakeMessage:
    return FakeMessage(
        message_id,
        chat,
        int(time.time()),
        content.text,
        content.raw_text,
        content.parse_mode,
        content.entities,
        content.reply_markup,
        **extra,
    )


def _int(p: JSONDict, name: str, default: int) -> int:
    value = p.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"invalid {name} specified")
    return value


def _inline(markup: JSONDict | None) -> Any:
    return (markup or {}).get("inline_keyboard")


def _commands_key(p: JSONDict) -> tuple[str, str]:
    scope = p.get("scope") or {"type": "default"}
    key = str(scope.get("type", "default"))
    if "chat_id" in scope:
        key += f":{scope['chat_id']}"
    return key, str(p.get("language_code") or "")


def _content(p: JSONDict, field_name: Literal["text", "caption"]) -> Revision:
    """Text or caption, parsed and checked as Telegram does, with the reply markup."""
    raw = p.get(field_name)
    raw = None if raw is None else str(raw)
    parse_mode = p.get("parse_mode") or None
    entities: list[JSONDict] = []
    text = raw
    if raw is not None and parse_mode is not None:
        mode = str(parse_mode).lower()
        if mode == "html":
            text, entities = parse_html(raw)
        elif mode not in ("markdown", "markdownv2"):
            raise _bad("unsupported parse_mode")
    elif raw is not None:
        entities = list(p.get(f"{'' if field_name == 'text' else 'caption_'}entities") or [])
    if field_name == "text" and not (text or "").strip():
        raise _bad("message text is empty")
    limit = MAX_TEXT if field_name == "text" else MAX_CAPTION
    if text is not None and _utf16_len(text) > limit:
        raise _bad("message is too long" if field_name == "text" else "message caption is too long")
    if field_name == "caption" and text is not None and not text.strip():
        text, entities = None, []
    return Revision(text, raw, parse_mode, tuple(entities), _reply_markup(p))


def _reply_markup(p: JSONDict) -> JSONDict | None:
    markup = p.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return markup
    if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
        raise _bad('Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for button in (b for row in keyboard for b in row):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
        if not _BUTTON_ACTIONS & button.keys():
            raise _bad(
                "can't parse inline keyboard button:"
                " Text buttons are unallowed in the inline keyboard"
            )
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
            raise _bad("BUTTON_DATA_INVALID")
        url = button.get("url")
        if url is not None and not re.match(r"(https?|tg)://\S", str(url)):
            raise _bad("BUTTON_URL_INVALID")
    return markup


def _read_params(query: str, content_type: str, body: bytes) -> tuple[JSONDict, dict[str, bytes]]:
    """Parameters as Telegram takes them: query string, urlencoded, JSON or multipart."""
    params: JSONDict = dict(parse_qsl(query, keep_blank_values=True))
    files: dict[str, bytes] = {}
    header = Message()
    header["Content-Type"] = content_type or "application/octet-stream"
    kind = header.get_content_type()
    if kind == "application/json" and body.strip():
        try:
            data = json.loads(body)
        except ValueError as e:
            raise _bad("can't parse JSON encoded request") from e
        if not isinstance(data, dict):
            raise _bad("can't parse JSON encoded request")
        params.update(data)
    elif kind == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    elif kind == "multipart/form-data":
        boundary = header.get_param("boundary")
        if not isinstance(boundary, str):
            raise _bad("can't parse multipart request")
        for part in body.split(b"--" + boundary.encode())[1:]:
            if part.startswith(b"--"):
                break
            head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            disposition = BytesParser().parsebytes(head + b"\r\n\r\n")
            name = disposition.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            data = data.removesuffix(b"\r\n")
            if disposition.get_filename() is not None:
                files[name] = data
            else:
                params[name] = data.decode()
    return params, files


def _decode_params(raw: JSONDict, files: dict[str, bytes]) -> JSONDict:
    params: JSONDict = {}
    for key, value in raw.items():
        if not isinstance(value, str):  # a JSON body is typed already
            params[key] = value
        elif value.startswith("attach://") and value[9:] in files:
            files[key] = files.pop(value[9:])
        elif key in _JSON_PARAMS:
            try:
                params[key] = json.loads(value)
            except ValueError as e:
                raise _bad(f"can't parse {key} JSON object") from e
        elif key in _INT_PARAMS and re.fullmatch(r"-?\d+", value):
            params[key] = int(value)
        elif key in _BOOL_PARAMS:
            params[key] = value.lower() in ("true", "1")
        else:
            params[key] = value
    return params


def _error(code: int, description: str) -> tuple[int, bytes, str]:
    return _envelope(code, {"ok": False, "error_code": code, "description": description})


def _envelope(status: int, answer: JSONDict) -> tuple[int, bytes, str]:
    return status, json.dumps(answer, ensure_ascii=False).encode(), "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()

    def __init__(self, fake: FakeTelegram) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-poll is not the fake's failure


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    timeout = 30

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        fake = cast(_Server, self.server).fake
        path, _, query = self.path.partition("?")
        path = unquote(path)  # PTB quotes the token's ':' in file URLs
        status, payload, content_type = fake._http(
            path, query, self.headers.get("Content-Type", ""), self._body()
        )
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
