"""config/routes.yaml: matchers as Alertmanager reads them, order, continue, mute, default."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from approval_engine.errors import ConfigError
from bots.alert_routes import MuteWindow, RoutesConfig, decide, parse_matcher
from bots.config import load_config
from bots.settings import PROJECT_ROOT

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = ("slack:C0DEFAULT",)


@pytest.mark.parametrize(
    ("matcher", "labels", "matches"),
    [
        ('service="checkout"', {"service": "checkout"}, True),
        ("service=checkout", {"service": "checkout"}, True),
        ('service="checkout"', {"service": "cart"}, False),
        ('service!="checkout"', {"service": "cart"}, True),
        ('service!="checkout"', {}, True),
        ('service=~"check.*|cart"', {"service": "checkout"}, True),
        ('service=~"check"', {"service": "checkout"}, False),  # anchored, like Alertmanager
        ('service!~"check.*"', {"service": "cart"}, True),
        ('team=""', {"service": "cart"}, True),  # a missing label is the empty string
        ('team=~".+"', {"service": "cart"}, False),
        ('msg="a \\"quoted\\" word"', {"msg": 'a "quoted" word'}, True),
    ],
)
def test_matchers_read_like_alertmanagers(
    matcher: str, labels: dict[str, str], matches: bool
) -> None:
    assert parse_matcher(matcher).matches(labels) is matches


@pytest.mark.parametrize("bad", ["service", "=x", "service~=x", 'env=~"(prod"', "9lives=x"])
def test_a_bad_matcher_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_matcher(bad)


def _config(*routes: dict[str, Any]) -> RoutesConfig:
    return RoutesConfig.model_validate({"routes": list(routes)})


def _to(*channels: str) -> list[dict[str, str]]:
    return [{"platform": "slack", "channel": c} for c in channels]


def test_the_first_matching_route_wins_unless_it_continues() -> None:
    config = _config(
        {"name": "pay", "matchers": ['service=~"checkout|cart"'], "destinations": _to("C0PAY")},
        {"name": "pages", "severities": ["page"], "destinations": _to("C0PAGE"), "continue": True},
        {"name": "prod", "matchers": ['env="prod"'], "destinations": _to("C0PROD", "C0PAGE")},
    )
    checkout = {"service": "checkout", "env": "prod", "severity": "page"}
    search = {"service": "search", "env": "prod", "severity": "page"}
    ticket = {"service": "search", "env": "prod", "severity": "ticket"}
    staging = {"service": "search", "env": "staging", "severity": "ticket"}
    at = MONDAY_NOON
    assert decide(config, checkout, at=at, default=DEFAULT).send == ("slack:C0PAY",)
    both = decide(config, search, at=at, default=DEFAULT)
    assert (both.send, both.route) == (("slack:C0PAGE", "slack:C0PROD"), "pages")
    assert decide(config, ticket, at=at, default=DEFAULT).send == ("slack:C0PROD", "slack:C0PAGE")
    nothing = decide(config, staging, at=at, default=DEFAULT)
    assert (nothing.send, nothing.route) == (DEFAULT, "default")
    assert decide(config, staging, at=at, default=()).send == ()


def test_a_mute_window_keeps_the_route_but_sends_nothing() -> None:
    config = _config(
        {
            "name": "office hours",
            "severities": ["ticket"],
            "destinations": _to("C0TICKETS"),
            "mute": [
                {
                    "days": ["sun", "mon", "tue", "wed", "thu", "fri"],
                    "start": "18:00",
                    "end": "08:00",
                },
                {"days": ["sat", "sun"]},
            ],
        }
    )
    ticket = {"severity": "ticket"}

    def muted(at: datetime) -> bool:
        decision = decide(config, ticket, at=at, default=DEFAULT)
        assert decision.send or decision.muted  # never the default: the route matched
        return bool(decision.muted)

    assert not muted(MONDAY_NOON)
    assert muted(datetime(2026, 11, 23, 18, 0, tzinfo=UTC))  # Monday evening
    assert muted(datetime(2026, 11, 24, 7, 59, tzinfo=UTC))  # Tuesday early, from Monday
    assert not muted(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    assert muted(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))  # Saturday
    assert muted(datetime(2026, 11, 30, 3, 0, tzinfo=UTC))  # Monday early, from Sunday


def test_a_muted_destination_still_hears_from_a_later_route_that_is_not_muted() -> None:
    config = _config(
        {"destinations": _to("C0A"), "mute": [{}], "continue": True},
        {"destinations": _to("C0A", "C0B")},
    )
    decision = decide(config, {}, at=MONDAY_NOON, default=DEFAULT)
    assert (decision.send, decision.muted) == (("slack:C0A", "slack:C0B"), ())


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ({"start": "25:00"}, "is not a time"),
        ({"start": "10:00", "end": "10:00"}, "the same time"),
        ({"days": ["monday"]}, "Input should be"),
        ({"days": []}, "at least 1"),
    ],
)
def test_a_bad_mute_window_is_refused(window: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        MuteWindow.model_validate(window)


def _check(tmp_path: Path, routes: dict[str, Any], **chat: Any) -> list[str]:
    config_dir = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    (config_dir / "routes.yaml").write_text(yaml.safe_dump(routes))
    if chat:
        general = yaml.safe_load((config_dir / "settings.yaml").read_text())
        general["chat"] = chat
        (config_dir / "settings.yaml").write_text(yaml.safe_dump(general))
    try:
        load_config(config_dir, repo_root=PROJECT_ROOT)
    except ConfigError as e:
        return e.problems
    return []


def test_config_check_names_file_key_and_reason(tmp_path: Path) -> None:
    routes = {
        "routes": [
            {"matchers": ['env=~"(prod"'], "destinations": _to("C0A")},
            {"destinations": [{"platform": "slack", "channel": "#ops"}]},
            {"destinations": [], "continue": "maybe"},
        ],
        "delivery": {"fold_after": 0},
    }
    problems = _check(tmp_path, routes)
    where = f"{tmp_path / 'config' / 'routes.yaml'}: "
    assert all(p.startswith(where) for p in problems), problems
    text = "\n".join(p.removeprefix(where) for p in problems)
    assert "routes.0.matchers: Value error, 'env=~\"(prod\"': the regular expression" in text
    assert "routes.1.destinations.0: Value error, channel: '#ops' is not a Slack channel" in text
    assert "routes.2.destinations: List should have at least 1 item" in text
    assert "routes.2.continue: Input should be a valid boolean" in text
    assert "delivery.fold_after: Input should be greater than or equal to 1" in text


def test_config_check_refuses_destinations_serve_cannot_reach(tmp_path: Path) -> None:
    routes = {
        "routes": [
            {"destinations": _to("C0A")},
            {"destinations": [{"platform": "telegram", "channel": -100999}]},
        ]
    }
    problems = _check(
        tmp_path,
        routes,
        telegram={"enabled": True, "allowed_chats": [-1001], "api_base_url": "http://127.0.0.1:9"},
    )
    assert any("routes.0.destinations.0: slack is not enabled" in p for p in problems), problems
    assert any("Telegram chat -100999 is not in" in p for p in problems), problems


def test_the_shipped_routes_yaml_is_valid_and_sends_nothing_in_the_demo() -> None:
    config = load_config(PROJECT_ROOT / "config", repo_root=PROJECT_ROOT)
    assert config.routes.routes == []
    assert config.routes.default.changes_channels
