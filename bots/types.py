"""Neutral chat types: what adapters turn platform payloads into, and what they render back."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChatEvent:
    """One message from a person, as any platform delivers it."""

    platform: str  # console | slack | telegram
    principal: str  # platform identity: console:alice, slack:U123, telegram:4567
    channel: str  # where it was said; replies go back there
    text: str
    display_name: str = ""
    thread: str | None = None


@dataclass(frozen=True)
class Button:
    label: str
    command: str  # what pressing it types, e.g. "/approve scale-1"
    style: str = "default"  # default | primary | danger


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""


@dataclass(frozen=True)
class Reply:
    """What the bot says; adapters render each part the best way their platform can."""

    text: str = ""
    tables: tuple[Table, ...] = ()
    code: str = ""  # preformatted text such as a diff
    buttons: tuple[Button, ...] = ()
    image_png: bytes | None = None
    error: bool = False
    channel: str | None = None
    thread: str | None = None
    footer: tuple[str, ...] = field(default_factory=tuple)
    card: str | None = None  # the proposal this reply shows: its later states edit the message
