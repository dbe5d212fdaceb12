"""Telegram's HTML parse mode: Replies as messages within 4096 UTF-16 units, escaped."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator

from bots import render
from bots.render import render_table
from bots.types import Reply

__all__ = ["MAX_ANSWER", "MAX_TEXT", "answer_text", "one_message", "render_html"]

MAX_TEXT = 4096  # Telegram's limit per message, in UTF-16 code units
MAX_ANSWER = 200  # answerCallbackQuery text


def one_message(reply: Reply) -> Reply:
    return render.one_message(reply, render=render_html)


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


def answer_text(reply: Reply) -> str:
    first = (reply.text.strip().splitlines() or ["Done."])[0]
    return first if len(first) <= MAX_ANSWER else first[: MAX_ANSWER - 1] + "…"
