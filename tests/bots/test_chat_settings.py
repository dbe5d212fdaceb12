"""settings.yaml's chat section: mistakes are named by file, key and reason before start-up."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from approval_engine.errors import ConfigError
from bots.config import load_config
from bots.settings import PROJECT_ROOT


def _with_chat(tmp_path: Path, chat: dict[str, Any]) -> Path:
    config_dir = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config_dir)
    settings = config_dir / "settings.yaml"
    general = yaml.safe_load(settings.read_text())
    general["chat"] = chat
    settings.write_text(yaml.safe_dump(general))
    return config_dir


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        ({"telegram": {"enabled": True}}, "allowed_chats: list the chat ids"),
        (
            {"telegram": {"enabled": True, "allowed_chats": [1], "mode": "webhook"}},
            "webhook_url: webhook mode needs the URL",
        ),
        (
            {"telegram": {"enabled": True, "allowed_chats": [1], "changes_chat": 2}},
            "changes_chat: 2 is not in allowed_chats",
        ),
        ({"slack": {"changes_channel": "#prod-changes"}}, "chat.slack.changes_channel"),
        ({"command_channels": {"approve": ["#prod-changes"]}}, "is not platform:channel"),
        ({"command_channels": {"approve": []}}, "list at least one place"),
        ({"command_channels": {"aprove": ["slack:C0PROD"]}}, "command_channels.aprove: no such"),
        ({"command_channels": {"/approve": ["slack:C0PROD"]}}, "(without the slash)"),
    ],
)
def test_chat_mistakes_are_named(tmp_path: Path, chat: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(_with_chat(tmp_path, chat), repo_root=PROJECT_ROOT)
    problems = "\n".join(raised.value.problems)
    assert "settings.yaml" in problems
    assert expected in problems


def test_a_complete_chat_section_loads(tmp_path: Path) -> None:
    chat = {
        "slack": {"enabled": True, "changes_channel": "C0PRODCHG"},
        "telegram": {
            "enabled": True,
            "mode": "webhook",
            "webhook_url": "https://opsgate.example.com/telegram/webhook",
            "allowed_chats": [-1001234567890],
            "changes_chat": -1001234567890,
        },
        "command_channels": {"approve": ["slack:C0PRODCHG", "telegram:-1001234567890"]},
    }
    config = load_config(_with_chat(tmp_path, chat), repo_root=PROJECT_ROOT)
    assert config.general.chat.telegram.changes_chat == -1001234567890
