"""Finds HCL blocks and the text spans of their attributes, so values can be edited in place."""

# python-hcl2 parses HCL well but drops comments and layout when it writes, so the editor
# finds where a value sits in the original text and replaces only that. This scanner knows
# just enough HCL not to be fooled by braces, quotes or comment markers inside strings,
# template interpolations, heredocs and comments; python-hcl2 still judges validity.

from __future__ import annotations

import re
from dataclasses import dataclass, field

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?\n")
_STRING_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class HclScanError(ValueError):
    """The text is not HCL this scanner can follow; the message says where."""


@dataclass(frozen=True)
class Attribute:
    """`name = value`, with the span of the value expression (trailing comment excluded)."""

    name: str
    line: int
    value_start: int
    value_end: int


@dataclass
class Block:
    """`type "label" … { body }`; the file itself is a block with an empty type."""

    type: str
    labels: tuple[str, ...]
    line: int
    attributes: list[Attribute] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


def scan(text: str) -> Block:
    """The file's blocks and attributes, nested as written."""
    root = Block(type="", labels=(), line=1)
    _Scanner(text).body(root, closing=False)
    return root


def string_literal(raw: str) -> str | None:
    """The value of a quoted HCL string with no interpolation, or None if `raw` is not one."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        return None
    try:
        if _Scanner(raw).skip_string(0) != len(raw):
            return None
    except HclScanError:
        return None
    out: list[str] = []
    i, end = 1, len(raw) - 1
    while i < end:
        ch = raw[i]
        if ch == "\\":
            nxt = raw[i + 1]
            if nxt in _STRING_ESCAPES:
                out.append(_STRING_ESCAPES[nxt])
                i += 2
                continue
            width = {"u": 4, "U": 8}.get(nxt)
            digits = raw[i + 2 : i + 2 + width] if width else ""
            if not width or len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                return None
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif raw.startswith(("$${", "%%{"), i):
            out.append(ch + "{")
            i += 3
        elif raw.startswith(("${", "%{"), i):
            return None
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, reason: str, at: int | None = None) -> HclScanError:
        return HclScanError(f"line {self.line(self.pos if at is None else at)}: {reason}")

    def line(self, at: int) -> int:
        return self.text.count("\n", 0, at) + 1

    def body(self, block: Block, *, closing: bool) -> None:
        text = self.text
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(text):
                if closing:
                    raise self.fail(f"the block on line {block.line} is never closed with }}")
                return
            if text[self.pos] == "}":
                if not closing:
                    raise self.fail("a } closes a block that was never opened")
                self.pos += 1
                return
            start = self.pos
            name = self.identifier()
            self.skip_blank(newlines=False)
            if text.startswith("=", self.pos) and not text.startswith("==", self.pos):
                self.pos += 1
                self.skip_blank(newlines=False)
                value_start = self.pos
                value_end = self.expression_end()
                if value_end == value_start:
                    raise self.fail(f"{name} = has no value", at=start)
                block.attributes.append(Attribute(name, self.line(start), value_start, value_end))
            else:
                block.blocks.append(self.block_header(name, start))

    def block_header(self, block_type: str, start: int) -> Block:
        labels: list[str] = []
        while not self.text.startswith("{", self.pos):
            if self.text.startswith('"', self.pos):
                label_start = self.pos
                self.pos = self.skip_string(self.pos)
                label = string_literal(self.text[label_start : self.pos])
                if label is None:
                    raise self.fail("a block label cannot hold an interpolation", at=label_start)
                labels.append(label)
            elif _IDENT.match(self.text, self.pos):
                labels.append(self.identifier())
            else:
                raise self.fail(f"expected = or a block after {block_type!r}", at=self.pos)
            self.skip_blank(newlines=False)
        self.pos += 1
        block = Block(type=block_type, labels=tuple(labels), line=self.line(start))
        self.body(block, closing=True)
        return block

    def identifier(self) -> str:
        match = _IDENT.match(self.text, self.pos)
        if match is None:
            shown = self.text[self.pos : self.pos + 20].splitlines()[0]
            raise self.fail(f"expected an attribute or block name, found {shown!r}")
        self.pos = match.end()
        return match.group()

    def skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces and comments; line breaks too when `newlines`."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r" or (ch == "\n" and newlines):
                self.pos += 1
            elif ch == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end == -1 else end
            elif text.startswith("/*", self.pos):
                self.pos = self.skip_block_comment(self.pos)
            else:
                return

    def skip_block_comment(self, start: int) -> int:
        end = self.text.find("*/", start + 2)
        if end == -1:
            raise self.fail("a /* comment is never closed", at=start)
        return end + 2

    def expression_end(self) -> int:
        """Move past one attribute value; return where its last non-blank character ends."""
        text = self.text
        depth = 0
        last = self.pos
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\n" and depth == 0:
                break
            if ch == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end == -1 else end
                continue
            if text.startswith("/*", self.pos):
                self.pos = self.skip_block_comment(self.pos)
                continue
            if ch == '"':
                self.pos = last = self.skip_string(self.pos)
                continue
            heredoc = _HEREDOC.match(text, self.pos) if ch == "<" else None
            if heredoc:
                self.pos = last = self.skip_heredoc(heredoc)
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0:
                    break  # the } of a one-line block such as `lifecycle { x = 1 }`
                depth -= 1
            self.pos += 1
            if ch not in " \t\r\n":
                last = self.pos
        if depth:
            raise self.fail("a bracket in this value is never closed", at=last)
        return last

    def skip_string(self, start: int) -> int:
        """The index just past the quoted string (templates included) that opens at `start`."""
        text = self.text
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
            elif ch == '"':
                return i + 1
            elif ch == "\n":
                break
            elif text.startswith(("$${", "%%{"), i):
                i += 3
            elif text.startswith(("${", "%{"), i):
                i = self.skip_template(i + 2)
            else:
                i += 1
        raise self.fail("a quoted string is never closed", at=start)

    def skip_template(self, start: int) -> int:
        """The index just past the } that closes a `${` or `%{` opened before `start`."""
        text = self.text
        depth = 1
        i = start
        while i < len(text):
            ch = text[i]
            if ch == '"':
                i = self.skip_string(i)
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise self.fail("a ${ interpolation is never closed", at=start)

    def skip_heredoc(self, opening: re.Match[str]) -> int:
        """The index just past the closing marker of the heredoc `opening` starts."""
        marker = opening.group(1)
        i = opening.end()
        while i < len(self.text):
            end = self.text.find("\n", i)
            end = len(self.text) if end == -1 else end
            line = self.text[i:end]
            if line.strip() == marker:
                return i + len(line.rstrip())
            i = end + 1
        raise self.fail(f"the heredoc <<{marker} is never closed", at=opening.start())
