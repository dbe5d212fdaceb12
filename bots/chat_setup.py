"""`opsgate serve`'s chat side: the adapters settings.yaml enables, and the notifier over them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter

from bots.app import Runtime
from bots.config import ConfigBundle
from bots.errors import StartupError
from bots.notifier import CardSurface, ChatNotifier
from bots.settings import RuntimeSettings, SlackSettings

if TYPE_CHECKING:
    from bots.slack import SlackAdapter

__all__ = ["ChatWiring", "connect_chat"]


@dataclass
class ChatWiring:
    routers: list[APIRouter] = field(default_factory=list)
    readiness: list[tuple[str, Callable[[], bool]]] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    # platform → its adapter, for whatever else posts to chat (alert notifications).
    surfaces: dict[str, CardSurface] = field(default_factory=dict)


def connect_chat(settings: RuntimeSettings, config: ConfigBundle, runtime: Runtime) -> ChatWiring:
    """Build each enabled adapter, check its secrets, and announce proposals through them.

    Slack's tokens are checked here (auth.test; in Socket Mode apps.connections.open too),
    before serving; Slack's Socket Mode connection and Telegram connect in the web app's
    start-up. StartupError says what is missing.
    """
    chat = config.general.chat
    wiring = ChatWiring()
    surfaces: dict[str, CardSurface] = {}
    changes: dict[str, str] = {}
    if chat.slack.enabled:
        slack, router = _connect_slack(settings, chat.slack, runtime)
        wiring.routers.append(router)
        wiring.readiness.append(("slack", slack.started))
        surfaces["slack"] = slack
        if chat.slack.changes_channel:
            changes["slack"] = chat.slack.changes_channel
    if chat.telegram.enabled:
        from bots.telegram import TelegramAdapter

        tg = chat.telegram
        bot_token, hook_secret = settings.telegram_bot_token, settings.telegram_webhook_secret
        if bot_token is None:
            raise StartupError(
                "chat.telegram.enabled is true in settings.yaml but OPSGATE_TELEGRAM_BOT_TOKEN "
                "is not set"
            )
        if tg.mode == "webhook" and hook_secret is None:
            raise StartupError(
                "chat.telegram.mode is webhook but OPSGATE_TELEGRAM_WEBHOOK_SECRET is not set "
                "(1-256 characters of A-Z, a-z, 0-9, _ and -)"
            )
        telegram = TelegramAdapter(
            gateway=runtime.gateway,
            store=runtime.chat,
            token=bot_token.get_secret_value(),
            base_url=tg.api_base_url,
            allowed_chats=frozenset(tg.allowed_chats),
            webhook_secret=hook_secret.get_secret_value() if hook_secret else None,
            min_send_interval=tg.send_interval,
            group_messages_per_minute=tg.group_messages_per_minute,
            clock=runtime.engine.clock,
        )
        wiring.routers.append(
            telegram.webhook_router(register_url=tg.webhook_url)
            if tg.mode == "webhook"
            else telegram.polling_router()
        )
        wiring.readiness.append(("telegram", telegram.started))
        surfaces["telegram"] = telegram
        if tg.changes_chat is not None:
            changes["telegram"] = str(tg.changes_chat)
    if surfaces:
        runtime.gateway.notifier = ChatNotifier(
            engine=runtime.engine,
            store=runtime.chat,
            surfaces=surfaces,
            changes_channels=changes,
            clock=runtime.engine.clock,
        )
    wiring.platforms = sorted(surfaces)
    wiring.surfaces = surfaces
    return wiring


def _connect_slack(
    settings: RuntimeSettings, slack_settings: SlackSettings, runtime: Runtime
) -> tuple[SlackAdapter, APIRouter]:
    """The adapter with its tokens checked, and the router that feeds it in its mode."""
    from bots.slack import SlackAdapter  # slack-bolt loads only when Slack is on

    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    app_token = settings.slack_app_token
    socket_mode = slack_settings.mode == "socket"
    # Socket Mode has no request signatures: the URL apps.connections.open hands out is the key.
    if token is None or (app_token is None if socket_mode else secret is None):
        raise StartupError(
            "chat.slack.mode is socket in settings.yaml but OPSGATE_SLACK_BOT_TOKEN and "
            "OPSGATE_SLACK_APP_TOKEN are not both set (the app token is an app-level token, "
            "xapp-…, with connections:write; Socket Mode needs no signing secret)"
            if socket_mode
            else "chat.slack.enabled is true in settings.yaml but OPSGATE_SLACK_BOT_TOKEN and "
            "OPSGATE_SLACK_SIGNING_SECRET are not both set (or use chat.slack.mode: socket "
            "with OPSGATE_SLACK_APP_TOKEN)"
        )
    slack = SlackAdapter(
        gateway=runtime.gateway,
        store=runtime.chat,
        bot_token=token.get_secret_value(),
        signing_secret=secret.get_secret_value() if secret and not socket_mode else None,
        app_token=app_token.get_secret_value() if app_token and socket_mode else None,
        api_base_url=slack_settings.api_base_url,
        clock=runtime.engine.clock,
    )
    try:
        slack.start()
    except Exception as e:
        raise StartupError(f"Slack did not accept the bot token (auth.test): {e}") from e
    if not socket_mode:
        return slack, slack.router()
    try:
        slack.check_app_token()
    except Exception as e:
        raise StartupError(
            f"Slack did not accept OPSGATE_SLACK_APP_TOKEN (apps.connections.open): {e}"
        ) from e
    return slack, slack.socket_router()
