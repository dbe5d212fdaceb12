"""A fake Slack Socket Mode server on loopback that the real slack_sdk Socket Mode client dials.

    with FakeSlack() as slack, FakeSocketMode(slack) as socket_mode:
        app_token = slack.add_app_token()
        ...  # start the app in Socket Mode with base_url=slack.api_url and app_token
        socket_mode.wait_connected()
        ack = socket_mode.send_slash_command("status")
        assert ack.payload is None

It follows Slack's Socket Mode protocol as docs.slack.dev describes it. `apps.connections.open`
(answered by the FakeSlack this is attached to) hands out `ws://127.0.0.1:<port>/link/?ticket=…
&app_id=…`; a ticket opens one connection. On connect the server sends `{"type": "hello", ...}`.
Each payload arrives in an envelope `{"envelope_id", "type": "events_api" | "slash_commands" |
"interactive", "payload", "accepts_response_payload"}` (events also carry `retry_attempt` and
`retry_reason`), which the app acknowledges by sending back `{"envelope_id"}`, optionally with
a `payload`, within 3 seconds. `{"type": "disconnect", "reason": "refresh_requested"}` asks the
app to open a new connection; the old one is closed once it has. Pings are answered with pongs,
and the server pings its clients as Slack does.

The WebSocket handshake and framing (RFC 6455: text, ping, pong and close frames) are written
here by hand: the venv has no WebSocket server library, and a fake needs only these.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from io import BufferedIOBase
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tests.fakes.slack_api import FakeSlack, block_actions_body, event_body, slash_command_body

__all__ = ["ACK_WINDOW", "Ack", "FakeSocketMode", "Link"]

JSON = dict[str, Any]
T = TypeVar("T")

ACK_WINDOW = 3.0  # seconds Slack waits for an envelope's acknowledgement
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's handshake constant
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_HOST = "applink-fake-1"


@dataclass
class Ack:
    """An acknowledgement the app sent: which envelope, any response payload, how fast."""

    envelope_id: str
    payload: JSON | None
    envelope_type: str | None  # None when no envelope with that id was sent
    link: int
    seconds: float


class Link:
    """One WebSocket connection from the app; `id` counts up from 1 in connection order."""

    def __init__(self, id: int, sock: socket.socket, ticket: str) -> None:
        self.id = id
        self.ticket = ticket
        self.hello_sent = False
        self.closed = False  # by either side
        self._sock = sock
        self._write = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.hello_sent and not self.closed

    def send_json(self, message: Mapping[str, Any]) -> None:
        self.send(_TEXT, json.dumps(message).encode())

    def send(self, opcode: int, data: bytes = b"") -> None:
        with self._write:
            if self.closed:
                raise ConnectionError(f"connection {self.id} is closed")
            self._sock.sendall(_frame(opcode, data))

    def close(self, code: int = 1000, reason: str = "", *, abort: bool = False) -> None:
        """Send a close frame; `abort` also ends the TCP connection at once."""
        with self._write:
            if not self.closed:
                self.closed = True
                with suppress(OSError):
                    self._sock.sendall(_frame(_CLOSE, struct.pack("!H", code) + reason.encode()))
            with suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR if abort else socket.SHUT_WR)


@dataclass
class _Sent:
    type: str
    at: float


@dataclass
class _State:
    links: list[Link] = field(default_factory=list)
    tickets: set[str] = field(default_factory=set)
    sent: dict[str, _Sent] = field(default_factory=dict)


class FakeSocketMode:
    """Slack's Socket Mode endpoint for one app, attached to `slack` until `stop()`."""

    def __init__(self, slack: FakeSlack, *, ping_every: float | None = 0.2) -> None:
        self.slack = slack
        self.acks: list[Ack] = []
        self.messages: list[JSON] = []  # every JSON text frame the app sent, acks included
        self.refused: list[str] = []  # why handshakes were refused
        self.pongs: list[bytes] = []  # what came back from pings, the server's own included
        self._state = _State()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._hello_gate = threading.Event()
        self._hello_gate.set()
        self._stopped = threading.Event()
        self._server = _Server(self)
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
        ]
        if ping_every is not None:
            # Slack pings its clients; a short interval also keeps slack_sdk's blocking reads
            # short, so that its connection switches and closes are quick.
            self._threads.append(threading.Thread(target=self._ping, args=(ping_every,)))
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        slack.socket_mode = self

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"ws://127.0.0.1:{port}"

    def stop(self) -> None:
        self._stopped.set()
        if self.slack.socket_mode is self:
            self.slack.socket_mode = None
        self._hello_gate.set()
        for link in self.links():
            link.close(1001, "going away", abort=True)
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSocketMode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what apps.connections.open hands out ------------------------------------------------

    def new_url(self) -> str:
        ticket = str(uuid.uuid4())
        with self._lock:
            self._state.tickets.add(ticket)
        return f"{self.url}/link/?ticket={ticket}&app_id={self.slack.app_id}"

    # -- inspection --------------------------------------------------------------------------

    def links(self) -> list[Link]:
        """Every connection so far, oldest first."""
        with self._lock:
            return list(self._state.links)

    def wait_connected(self, *, after: int = 0, timeout: float = 5.0) -> Link:
        """The newest connection that was sent `hello`, once there is one newer than `after`."""
        return self._wait(lambda: self._newest_ready(after), timeout, "the app to connect")

    def hold_hellos(self) -> None:
        """From now on, connections complete their handshake but get no `hello` until released."""
        self._hello_gate.clear()

    def release_hellos(self) -> None:
        self._hello_gate.set()

    # -- pushing to the app ------------------------------------------------------------------

    def send_envelope(
        self,
        type: str,
        payload: JSON,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        timeout: float = ACK_WINDOW,
    ) -> Ack:
        """Push one envelope to the newest connection and return the app's ack.

        AssertionError when no ack arrives within `timeout` (Slack's window is 3 seconds).
        """
        link = self.wait_connected()
        envelope_id = str(uuid.uuid4())
        envelope: JSON = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason or ""}
        with self._lock:
            self._state.sent[envelope_id] = _Sent(type, time.monotonic())
        link.send_json(envelope)
        return self._wait(
            lambda: next((a for a in self.acks if a.envelope_id == envelope_id), None),
            timeout,
            f"the ack of {type} envelope {envelope_id}",
        )

    def send_slash_command(
        self,
        text: str = "",
        *,
        command: str = "/opsgate",
        timeout: float = ACK_WINDOW,
        **fields: Any,
    ) -> Ack:
        """A slash command: the payload is the form fields Slack would POST, as JSON."""
        payload = dict(parse_qsl(slash_command_body(command, text, **fields)))
        return self.send_envelope(
            "slash_commands", payload, accepts_response_payload=True, timeout=timeout
        )

    def send_event(
        self,
        event: Mapping[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = ACK_WINDOW,
        **fields: Any,
    ) -> Ack:
        """An Events API `event_callback` wrapping `event` (see app_mention_event)."""
        payload = json.loads(event_body(event, **fields))
        return self.send_envelope(
            "events_api",
            payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            timeout=timeout,
        )

    def send_interactive(
        self, action_id: str, value: str = "", *, timeout: float = ACK_WINDOW, **fields: Any
    ) -> Ack:
        """A `block_actions` payload: someone pressed a button (see block_actions_body)."""
        form = parse_qs(block_actions_body(action_id, value, **fields))
        return self.send_envelope("interactive", json.loads(form["payload"][0]), timeout=timeout)

    def disconnect(self, reason: str = "refresh_requested", *, timeout: float = 5.0) -> Link:
        """Ask the app to reconnect; once it has, close the old connection as Slack does.

        Returns the new connection.
        """
        old = self.wait_connected()
        old.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": _HOST}})
        new = self.wait_connected(after=old.id, timeout=timeout)
        old.close(1000)
        return new

    def ping(self, *, timeout: float = 2.0) -> None:
        """Ping the newest connection and wait for the pong that echoes it."""
        data = f"fake-slack:{uuid.uuid4()}".encode()
        self.wait_connected().send(_PING, data)
        self._wait(lambda: data in self.pongs or None, timeout, "a pong")

    # -- server side -------------------------------------------------------------------------

    def _handshake(self, request_line: str, headers: Mapping[str, str]) -> str | None:
        """The ticket of a valid opening handshake; else None, with the reason in `refused`."""
        verb, _, rest = request_line.partition(" ")
        target = rest.rpartition(" ")[0]
        parts = urlsplit(target)
        ticket = (parse_qs(parts.query).get("ticket") or [""])[0]
        with self._lock:
            if verb != "GET" or parts.path.rstrip("/") != "/link":
                problem = f"not a Socket Mode URL: {request_line}"
            elif ticket not in self._state.tickets:
                problem = f"unknown or used ticket {ticket!r}"
            elif headers.get("upgrade", "").lower() != "websocket":
                problem = "no Upgrade: websocket"
            elif headers.get("sec-websocket-version") != "13" or not headers.get(
                "sec-websocket-key"
            ):
                problem = "not a version 13 WebSocket handshake"
            else:
                self._state.tickets.discard(ticket)  # a ticket opens one connection
                return ticket
            self.refused.append(problem)
            return None

    def _opened(self, sock: socket.socket, ticket: str) -> Link:
        with self._changed:
            link = Link(next(self._ids), sock, ticket)
            self._state.links.append(link)
            return link

    def _say_hello(self, link: Link) -> None:
        while not self._hello_gate.wait(0.05):
            if link.closed:
                return
        with self._changed:
            count = sum(1 for other in self._state.links if not other.closed)
        link.send_json(
            {
                "type": "hello",
                "num_connections": count,
                "debug_info": {
                    "host": _HOST,
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.slack.app_id},
            }
        )
        with self._changed:
            link.hello_sent = True
            self._changed.notify_all()

    def _received(self, link: Link, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = {"unparsed": text}
        with self._changed:
            self.messages.append(message)
            envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
            if envelope_id is not None:
                sent = self._state.sent.get(str(envelope_id))
                self.acks.append(
                    Ack(
                        envelope_id=str(envelope_id),
                        payload=message.get("payload"),
                        envelope_type=sent.type if sent else None,
                        link=link.id,
                        seconds=time.monotonic() - sent.at if sent else 0.0,
                    )
                )
            self._changed.notify_all()

    def _ponged(self, data: bytes) -> None:
        with self._changed:
            self.pongs.append(data)
            self._changed.notify_all()

    def _closed(self, link: Link) -> None:
        with self._changed:
            link.closed = True
            self._changed.notify_all()

    def _ping(self, every: float) -> None:
        while not self._stopped.wait(every):
            for link in self.links():
                if link.ready:
                    with suppress(OSError):
                        link.send(_PING, b"fake-slack")

    def _newest_ready(self, after: int) -> Link | None:
        ready = [link for link in self._state.links if link.ready and link.id > after]
        return ready[-1] if ready else None

    def _wait(self, found: Callable[[], T | None], timeout: float, what: str) -> T:
        with self._changed:
            result = self._changed.wait_for(found, timeout=timeout)
        if result is None:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        return result


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSocketMode) -> None:
        super().__init__(("127.0.0.1", 0), _LinkHandler)
        self.fake = fake


class _LinkHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        fake = cast(_Server, self.server).fake
        request_line = self.rfile.readline(8192).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while line := self.rfile.readline(8192).decode("latin-1").strip():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        ticket = fake._handshake(request_line, headers)
        if ticket is None:
            self.wfile.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            return
        key = headers["sec-websocket-key"]
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        self.wfile.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        link = fake._opened(self.connection, ticket)
        try:
            threading.Thread(target=fake._say_hello, args=(link,), daemon=True).start()
            self._serve(fake, link)
        except OSError:
            pass
        finally:
            fake._closed(link)

    def _serve(self, fake: FakeSocketMode, link: Link) -> None:
        text = b""
        while (frame := _read_frame(self.rfile)) is not None:
            fin, opcode, masked, data = frame
            if not masked:  # RFC 6455: a client masks every frame
                link.close(1002, "unmasked frame")
                return
            if opcode == _PING:
                link.send(_PONG, data)
            elif opcode == _PONG:
                fake._ponged(data)
            elif opcode == _CLOSE:
                link.close(1000)
                return
            elif opcode in (_TEXT, _CONTINUATION):
                text += data
                if fin:
                    fake._received(link, text.decode())
                    text = b""
            elif opcode == _BINARY:
                link.close(1003, "Socket Mode sends JSON text")
                return


def _read_frame(rfile: BufferedIOBase) -> tuple[bool, int, bool, bytes] | None:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
    masked, length = bool(head[1] & 0x80), head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", rfile.read(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", rfile.read(8))[0]
    mask = rfile.read(4) if masked else b""
    data = rfile.read(length)
    if len(data) < length:
        return None
    if masked:
        data = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
    return fin, opcode, masked, data


def _frame(opcode: int, data: bytes) -> bytes:
    """One unmasked, unfragmented frame, as a server sends it."""
    size = len(data)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", size)
    return head + data
