"""Assertions the editor tests share: what exactly an edit changed in the text."""

from __future__ import annotations


def only_changed_line(before: str, after: str) -> tuple[str, str]:
    """The one line that differs between the texts, before and after; fails otherwise."""
    old, new = before.split("\n"), after.split("\n")
    assert len(old) == len(new), "the edit added or removed lines"
    changed = [(o, n) for o, n in zip(old, new, strict=True) if o != n]
    assert len(changed) == 1, f"expected exactly one changed line, got {changed}"
    return changed[0]


# Text that tempts an editor to write broken or different values: comment markers, quotes,
# escapes, YAML indicators and 1.1 booleans, HCL template sigils, line breaks, unicode.
TRICKY_TEXT = [
    "",
    " leading space",
    "trailing ",
    "a: b",
    "a #b",
    "# hash",
    "// slashes",
    "/* c */",
    "{braces}",
    "[list]",
    "'single'",
    '"double"',
    "a'b\"c",
    "back\\slash",
    "tab\tand\nnewline",
    "${var.x}",
    "%{ if x }y%{ endif }",
    "yes",
    "No",
    "null",
    "~",
    "0x1F",
    "1.5",
    "-1",
    "1e3",
    "é ünïcödé",
    "line\u2028separator",
    "*alias",
    "&anchor",
    "!tag",
    "|",
    ">",
    "@at",
    "`tick`",
    "key: value, other: [1]",
    "- item",
    "? q",
]
