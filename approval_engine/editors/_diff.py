"""Unified diffs of one file, as git shows them, for PR bodies and approval cards."""

from __future__ import annotations

import difflib

_NO_NEWLINE = "\\ No newline at end of file\n"


def unified_diff(path: str, before: str, after: str) -> str:
    """`--- a/<path>` / `+++ b/<path>` and hunks with 3 lines of context; "" when equal."""
    if before == after:
        return ""
    lines = difflib.unified_diff(
        _lines(before), _lines(after), fromfile=f"a/{path}", tofile=f"b/{path}", n=3
    )
    # difflib leaves a last line without its newline glued to the next; git marks it instead.
    return "".join(line if line.endswith("\n") else line + "\n" + _NO_NEWLINE for line in lines)


def _lines(text: str) -> list[str]:
    """Lines split on \\n only, as git does; str.splitlines would also split on \\x0c, \\u2028…."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
