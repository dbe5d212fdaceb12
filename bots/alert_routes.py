"""config/routes.yaml: which chat hears of which alert, like Alertmanager's route tree but flat.

Routes are tried in order. A route matches when every label matcher holds and, if it lists
severities, the alert's `severity` label is one of them. A matching route sends the alert to
its destinations (nothing while one of its mute windows is open) and stops the search unless
it says `continue: true`. An alert no route matched goes to the default destinations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bots.settings import ChatSettings

__all__ = [
    "DAYS",
    "DefaultRoute",
    "Delivery",
    "Destination",
    "Matcher",
    "MuteWindow",
    "Route",
    "RouteDecision",
    "RoutesConfig",
    "decide",
    "parse_matcher",
    "route_problems",
]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


@dataclass(frozen=True)
class Matcher:
    """`name op value` as Alertmanager writes it; regexes are anchored at both ends."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label is the empty string
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@lru_cache(maxsize=1024)
def parse_matcher(text: str) -> Matcher:
    """`service=~"checkout|cart"` or `severity=page` → a Matcher; ValueError says what is wrong."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(
            f'{text!r} is not a matcher like service="checkout" or env=~"prod|staging"'
        )
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"{text!r}: the regular expression does not compile: {e}") from e
    return Matcher(name, op, value)  # type: ignore[arg-type]  # the pattern allows only these


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Destination(_Strict):
    """A chat: a Slack channel id (C…/G…) or a Telegram chat id (negative for groups)."""

    platform: Literal["slack", "telegram"]
    channel: str = Field(description="Slack channel id, or Telegram chat id")

    @field_validator("channel", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _shape(self) -> Destination:
        if self.platform == "slack" and not re.fullmatch(r"[CG][A-Z0-9]+", self.channel):
            raise ValueError(f"channel: {self.channel!r} is not a Slack channel id (C0123…)")
        if self.platform == "telegram" and not re.fullmatch(r"-?\d+", self.channel):
            raise ValueError(f"channel: {self.channel!r} is not a Telegram chat id (-1001234…)")
        return self

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.channel}"


class MuteWindow(_Strict):
    """Weekly, UTC: on `days`, from `start` until `end`; an `end` before `start` runs overnight."""

    days: list[Day] = Field(
        default_factory=lambda: list(DAYS), min_length=1, description="the days a window starts"
    )
    start: str = Field(default="00:00", description="HH:MM UTC")
    end: str = Field(default="24:00", description="HH:MM UTC; 24:00 is the end of the day")

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time like 22:30 (00:00 to 24:00)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> MuteWindow:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        return self

    def covers(self, at: datetime) -> bool:
        minute = at.hour * 60 + at.minute
        start, end = _minutes(self.start), _minutes(self.end)
        today, yesterday = DAYS[at.weekday()], DAYS[(at.weekday() - 1) % 7]
        if start < end:
            return today in self.days and start <= minute < end
        # Overnight: the part after midnight belongs to the day the window started.
        return (today in self.days and minute >= start) or (yesterday in self.days and minute < end)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class Route(_Strict):
    name: str = Field(default="", description="shown in `opsgate alerts list` and logs")
    matchers: list[str] = Field(default_factory=list, description='e.g. service=~"checkout|cart"')
    severities: list[str] = Field(
        default_factory=list, description="only these values of the severity label; empty: any"
    )
    destinations: list[Destination] = Field(min_length=1)
    mute: list[MuteWindow] = Field(default_factory=list, description="UTC windows of silence")
    continue_: bool = Field(default=False, alias="continue", description="try later routes too")

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_matcher(text)
        return value

    def parsed(self) -> tuple[Matcher, ...]:
        return tuple(parse_matcher(text) for text in self.matchers)


class DefaultRoute(_Strict):
    changes_channels: bool = Field(
        default=True,
        description="also settings.yaml's changes channels (chat.slack.changes_channel, "
        "chat.telegram.changes_chat)",
    )
    destinations: list[Destination] = Field(default_factory=list)


class Delivery(_Strict):
    fold_after: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="alert groups waiting at one destination before they are folded in a digest",
    )
    slack_interval: float = Field(
        default=1.0, ge=0, le=60, description="seconds between messages to one Slack channel"
    )
    poll: float = Field(
        default=2.0, gt=0, le=60, description="seconds between looks at the store when idle"
    )


class RoutesConfig(_Strict):
    """config/routes.yaml."""

    routes: list[Route] = Field(default_factory=list)
    default: DefaultRoute = Field(default_factory=DefaultRoute)
    delivery: Delivery = Field(default_factory=Delivery)


@dataclass(frozen=True)
class RouteDecision:
    """Where one alert goes: `send` gets a message, `muted` matched a route in a mute window."""

    send: tuple[str, ...]
    muted: tuple[str, ...]
    route: str  # the first matching route's name (or its index), "default" when none matched


def decide(
    config: RoutesConfig,
    labels: Mapping[str, str],
    *,
    at: datetime,
    default: tuple[str, ...],
) -> RouteDecision:
    """Route one alert's labels at `at`; `default` are the destination keys of unmatched alerts."""
    send: dict[str, None] = {}
    muted: dict[str, None] = {}
    first = ""
    for index, route in enumerate(config.routes):
        if route.severities and labels.get("severity", "") not in route.severities:
            continue
        if not all(m.matches(labels) for m in route.parsed()):
            continue
        first = first or route.name or f"routes[{index}]"
        quiet = any(window.covers(at) for window in route.mute)
        for destination in route.destinations:
            (muted if quiet else send)[destination.key] = None
        if not route.continue_:
            break
    if not first:
        return RouteDecision(send=default, muted=(), route="default")
    sent = tuple(send)
    return RouteDecision(send=sent, muted=tuple(k for k in muted if k not in send), route=first)


def route_problems(config: RoutesConfig, chat: ChatSettings) -> list[str]:
    """Destinations `opsgate serve` could not deliver to, as `key: reason` (for load_config)."""
    enabled = {"slack": chat.slack.enabled, "telegram": chat.telegram.enabled}
    places = [
        (f"routes.{i}.destinations.{j}", d)
        for i, route in enumerate(config.routes)
        for j, d in enumerate(route.destinations)
    ]
    places += [(f"default.destinations.{j}", d) for j, d in enumerate(config.default.destinations)]
    problems = []
    for key, destination in places:
        if not enabled[destination.platform]:
            problems.append(
                f"{key}: {destination.platform} is not enabled in settings.yaml "
                f"(chat.{destination.platform}.enabled)"
            )
        elif destination.platform == "telegram" and int(destination.channel) not in (
            chat.telegram.allowed_chats
        ):
            problems.append(
                f"{key}: Telegram chat {destination.channel} is not in settings.yaml's "
                "chat.telegram.allowed_chats, so its buttons would be refused"
            )
    return problems
