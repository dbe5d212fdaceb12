"""A proposal's pull request title and body, rendered from the jinja2 templates beside this module.

Markdown is not HTML, so autoescape is off; instead every text that people or agents wrote
passes `plain`, which keeps it from becoming a link, an image, an HTML tag, a heading or an
@-mention, and values go through `code`, a code span that no backtick in them can close.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from approval_engine.model import Proposal

__all__ = ["code", "plain", "pr_body", "pr_title"]

TEMPLATES = Path(__file__).parent / "templates"
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")  # links, images, HTML, code, emphasis, tables
_MENTION = re.compile(r"([@#])(?=[A-Za-z0-9])")  # @someone, #123
_ZERO_WIDTH = "\u200b"


def plain(value: object) -> str:
    """Text shown as written: markdown and HTML characters escaped, mentions and references
    broken with a zero-width space so that nobody is notified and nothing is linked."""
    text = " ".join(str(value).split())  # one paragraph: no line can start a list or a table
    text = _SPECIAL.sub(r"\\\1", text)
    text = re.sub(r"^([#>=+-])", r"\\\1", text)  # no heading, quote or list at the start
    text = text.replace("&", "&amp;")
    return _MENTION.sub(r"\1" + _ZERO_WIDTH, text)


def code(value: object) -> str:
    """An inline code span around `value`, fenced with more backticks than it contains."""
    text = " ".join(str(value).split()).replace("|", "\\|")  # a table cell ends at a bare |
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    return "`" * max(3, longest + 1)


def _oneline(value: object) -> str:
    return " ".join(str(value).split())


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=False,  # markdown, not HTML: user text is neutralised by `plain` instead
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_env.filters["plain"] = plain
_env.filters["code"] = code
_env.filters["oneline"] = _oneline


def pr_title(proposal: Proposal) -> str:
    return _env.get_template("pr_title.j2").render(proposal=proposal).strip()


def pr_body(proposal: Proposal) -> str:
    proposer = proposal.proposer
    if proposer.startswith("agent:"):
        who = f"the {plain(proposer.removeprefix('agent:'))} agent"
    else:
        who = plain(proposer)
    risk = proposal.risk
    return _env.get_template("pr_body.md.j2").render(
        proposal=proposal,
        proposer=who,
        fence=_fence(proposal.diff),
        risk_level=risk.level.value if risk is not None else "not assessed",
        risk_reasons=list(risk.reasons) if risk is not None else [],
    )
