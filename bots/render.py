"""Render a Reply as plain text: the console adapter's output and the fallback for any platform."""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import replace

from bots.types import Reply, Table


def render_table(table: Table) -> str:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    if table.title:
        lines.append(table.title)
    lines.append("  ".join(c.ljust(w) for c, w in zip(table.columns, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for row in table.rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def render_text(reply: Reply) -> str:
    parts: list[str] = []
    if reply.text:
        parts.append(reply.text)
    parts.extend(render_table(t) for t in reply.tables)
    if reply.code:
        parts.append(reply.code.rstrip("\n"))
    if reply.buttons:
        parts.append("  ".join(f"[{b.label}: {b.command}]" for b in reply.buttons))
    if reply.image_png is not None:
        parts.append(f"(graph: {len(reply.image_png)} bytes of PNG)")
    parts.extend(reply.footer)
    return "\n".join(parts)


def one_message(reply: Reply, *, render: Callable[[Reply], Sized]) -> Reply:
    """A card that `render` fits in one message, so that it can be edited: a long diff is
    left to /diff. Other replies are returned as they are."""
    if reply.card is None or len(render(reply)) <= 1:
        return reply
    note = f"The diff is too long for this card: /diff {reply.card} shows it."
    return replace(reply, code="", footer=(*reply.footer, note))
