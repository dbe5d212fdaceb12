"""The console adapter: stdin lines in, plain-text replies out; scriptable when stdin is a pipe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from approval_engine.notify import Announcement
from bots.render import render_text
from bots.types import ChatEvent, Reply

Sink = Callable[[ChatEvent], None]
# Read a little past the gateway's limit so an over-long line is reported, not silently split.
MAX_LINE_BYTES = 64 * 1024


class ConsoleAdapter:
    platform = "console"

    def __init__(
        self,
        *,
        stdin: BinaryIO,
        stdout: TextIO,
        user: str,
        interactive: bool,
        speaker: Callable[[], str] | None = None,
        graphs_dir: Path | None = None,
    ) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._user = user
        self._interactive = interactive
        self._speaker = speaker or (lambda: self._user)
        self._running = False
        self._graphs_dir = graphs_dir
        self._graphs = 0

    def start(self, sink: Sink) -> None:
        """Read until end of input (or /quit when interactive), one event per line."""
        self._running = True
        while self._running:
            if self._interactive:
                self._stdout.write(f"{self._speaker()}> ")
                self._stdout.flush()
            raw = self._stdin.readline(MAX_LINE_BYTES)
            if not raw:
                break
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Drop the rest of the over-long line: the gateway refuses it once, by its length.
                while True:
                    more = self._stdin.readline(MAX_LINE_BYTES)
                    if not more or more.endswith(b"\n"):
                        break
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if self._interactive and text.strip() in ("/quit", "/exit"):
                break
            if not self._interactive:
                shown = text if len(text) <= 200 else text[:200] + f"… ({len(text)} characters)"
                self._stdout.write(f"{self._speaker()}> {shown}\n")
            sink(
                ChatEvent(
                    platform=self.platform,
                    principal=f"console:{self._user}",
                    channel="console",
                    text=text,
                    display_name=self._user,
                )
            )
        self._running = False

    def send(self, reply: Reply) -> None:
        if reply.image_png is not None and self._graphs_dir is not None:
            # A terminal shows no images: keep the graph as a file and say where.
            self._graphs_dir.mkdir(parents=True, exist_ok=True)
            self._graphs += 1
            path = self._graphs_dir / f"graph-{datetime.now(UTC):%Y%m%d-%H%M%S}-{self._graphs}.png"
            path.write_bytes(reply.image_png)
            reply = replace(reply, image_png=None, footer=(*reply.footer, f"(graph: {path})"))
        text = render_text(reply)
        if text:
            self._stdout.write(text + "\n")
        self._stdout.write("\n")
        self._stdout.flush()

    def stop(self) -> None:
        self._running = False


class ConsoleNotifier:
    """Announcements on the console, marked so they stand apart from replies."""

    def __init__(self, stdout: TextIO) -> None:
        self._stdout = stdout

    def announce(self, announcement: Announcement) -> None:
        self._stdout.write(f"» {announcement.text}\n")
        self._stdout.flush()
