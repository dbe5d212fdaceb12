"""opsgate as `opsgate serve` wires it for alerts: Slack and Telegram (fakes), /alertmanager.

The real slack-bolt and python-telegram-bot talk to FakeSlack and FakeTelegram; the web app
runs under uvicorn on loopback with the chat routers and the Alertmanager receiver.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from bots.alerts_setup import AlertWiring, connect_alerts
from bots.app import Runtime, build_runtime
from bots.chat_setup import connect_chat
from bots.config import load_config
from bots.settings import PROJECT_ROOT, RuntimeSettings
from bots.web import register_adapter
from tests.bots.test_web import Served, serving, wait_for
from tests.fakes.slack_api import ALICE, BOT_USER_ID, OPS, FakeSlack, Message, signed_headers
from tests.fakes.telegram_api import FakeChat, FakeMessage, FakeTelegram, FakeUser

__all__ = ["SIGNING_SECRET", "TOKEN", "AlertWorld", "alert_world"]

TOKEN = "opsgate-alertmanager-token-3c1f"
SIGNING_SECRET = "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"


@dataclass
class AlertWorld:
    runtime: Runtime
    served: Served
    alerts: AlertWiring
    slack: FakeSlack
    telegram: FakeTelegram
    group: FakeChat
    dave: FakeUser

    @property
    def url(self) -> str:
        return str(self.served.client.base_url).rstrip("/")

    def slack_top(self, needle: str = "") -> list[Message]:
        """The bot's top-level messages in #ops that contain `needle`."""
        return [
            m
            for m in self.slack.channel_messages(OPS)
            if m.user == BOT_USER_ID and m.thread_ts is None and needle in m.text
        ]

    def telegram_top(self, needle: str = "") -> list[FakeMessage]:
        return [
            m
            for m in self.telegram.messages[self.group.id]
            if m.reply_to is None and needle in (m.text or "")
        ]

    def telegram_thread(self, message: FakeMessage) -> list[str]:
        return [
            m.text or ""
            for m in self.telegram.messages[self.group.id]
            if m.reply_to is not None and m.reply_to.message_id == message.message_id
        ]

    def slack_post(self, body: str) -> int:
        headers = signed_headers(body, SIGNING_SECRET)
        return self.served.client.post("/slack/events", content=body, headers=headers).status_code

    def idle(self) -> bool:
        unrouted, pending = self.alerts.store.backlog()
        return unrouted == 0 and not any(pending.values())


@contextmanager
def alert_world(
    tmp_path: Path,
    *,
    routes: Callable[[int], dict[str, Any]],
    telegram_pace: float = 0.05,
    general: dict[str, Any] | None = None,
) -> Iterator[AlertWorld]:
    """`routes(group_chat_id)` is routes.yaml; `general` is merged into settings.yaml."""
    with FakeSlack() as slack, FakeTelegram() as telegram:
        dave = telegram.new_user("dave")
        group = telegram.group_chat("alerts")
        config_dir = tmp_path / "config"
        shutil.copytree(PROJECT_ROOT / "config", config_dir)
        users = yaml.safe_load((config_dir / "users.yaml").read_text())
        users["people"]["alice"]["identities"].append(f"slack:{ALICE}")
        users["people"]["dave"]["identities"].append(f"telegram:{dave.id}")
        (config_dir / "users.yaml").write_text(yaml.safe_dump(users))
        settings_yaml = yaml.safe_load((config_dir / "settings.yaml").read_text())
        settings_yaml["chat"] = {
            "slack": {"enabled": True, "api_base_url": slack.api_url, "changes_channel": OPS},
            "telegram": {
                "enabled": True,
                "mode": "polling",
                "api_base_url": telegram.url,
                "allowed_chats": [group.id],
                "changes_chat": group.id,
                "send_interval": telegram_pace,
            },
        }
        settings_yaml.update(general or {})
        (config_dir / "settings.yaml").write_text(yaml.safe_dump(settings_yaml))
        (config_dir / "routes.yaml").write_text(yaml.safe_dump(routes(group.id)))
        settings = RuntimeSettings(
            data_dir=tmp_path / "data",
            config_dir=config_dir,
            slack_bot_token=SecretStr(slack.bot_token),
            slack_signing_secret=SecretStr(SIGNING_SECRET),
            telegram_bot_token=SecretStr(telegram.token),
            alertmanager_token=SecretStr(TOKEN),
            scheduler=False,
        )
        config = load_config(config_dir, repo_root=PROJECT_ROOT)
        runtime = build_runtime(settings, config, notifier=None, demo=False)
        chat = connect_chat(settings, config, runtime)
        alerts = connect_alerts(settings, config, runtime, surfaces=chat.surfaces)
        try:
            with serving(
                runtime, tick_every=0.05, routers=[*chat.routers, *alerts.routers]
            ) as served:
                for name, started in chat.readiness:
                    register_adapter(served.app, name, started)
                wait_for(lambda: served.client.get("/readyz").status_code == 200, what="readiness")
                yield AlertWorld(runtime, served, alerts, slack, telegram, group, dave)
        finally:
            alerts.store.close()
