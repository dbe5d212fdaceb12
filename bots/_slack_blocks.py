"""Block Kit for Slack: Replies as messages within Slack's limits, mrkdwn escaped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bots import render
from bots.render import render_table
from bots.types import Button, Reply

__all__ = ["MAX_BLOCKS", "MAX_SECTION_CHARS", "SlackMessage", "one_message", "render_blocks"]

# Block Kit limits: a section's text, blocks per message, elements per actions/context block.
MAX_SECTION_CHARS = 3000
MAX_BLOCKS = 50
MAX_ACTIONS = 25
MAX_CONTEXT = 10
MAX_FALLBACK_CHARS = 3000

JSON = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage worth of a Reply: at most MAX_BLOCKS blocks and a fallback text."""

    blocks: list[JSON]
    text: str


def one_message(reply: Reply) -> Reply:
    return render.one_message(reply, render=render_blocks)


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
