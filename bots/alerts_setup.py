"""`opsgate serve`'s alert side: the Alertmanager webhook, routes.yaml, and the paced senders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import APIRouter

from bots.alert_delivery import AlertDelivery
from bots.alert_metrics import AlertMetrics
from bots.alert_pacer import Pacer
from bots.alert_store import AlertStore
from bots.alert_types import Enricher
from bots.alertmanager_webhook import AlertmanagerReceiver, WebhookAuth
from bots.app import Runtime
from bots.config import ConfigBundle
from bots.errors import StartupError
from bots.notifier import CardSurface
from bots.settings import RuntimeSettings

__all__ = ["AlertWiring", "connect_alerts", "default_destinations"]


@dataclass
class AlertWiring:
    store: AlertStore
    delivery: AlertDelivery
    receiver: AlertmanagerReceiver
    routers: list[APIRouter] = field(default_factory=list)


def default_destinations(config: ConfigBundle) -> tuple[str, ...]:
    """Where alerts no route matches go: routes.yaml's default, and the changes channels."""
    found = [d.key for d in config.routes.default.destinations]
    if config.routes.default.changes_channels:
        chat = config.general.chat
        if chat.slack.enabled and chat.slack.changes_channel:
            found.append(f"slack:{chat.slack.changes_channel}")
        if chat.telegram.enabled and chat.telegram.changes_chat is not None:
            found.append(f"telegram:{chat.telegram.changes_chat}")
    return tuple(dict.fromkeys(found))


def connect_alerts(
    settings: RuntimeSettings,
    config: ConfigBundle,
    runtime: Runtime,
    *,
    surfaces: Mapping[str, CardSurface],
    enricher: Enricher | None = None,
) -> AlertWiring:
    """`POST /alertmanager` and the delivery it feeds; `enricher` defaults to the runtime's.

    StartupError when routes.yaml names a chat platform that is not connected.
    """
    default = default_destinations(config)
    wanted: set[str] = {d.platform for route in config.routes.routes for d in route.destinations}
    wanted |= {key.split(":", 1)[0] for key in default}
    missing = sorted(wanted - set(surfaces))
    if missing:
        raise StartupError(
            f"routes.yaml sends alerts to {', '.join(missing)}, which settings.yaml does not "
            "enable (chat.<platform>.enabled)"
        )
    store = AlertStore(runtime.store.engine)
    runtime.services.alerts = store  # for /ack
    keys = [d.key for route in config.routes.routes for d in route.destinations] + list(default)
    metrics = AlertMetrics.create(store, destinations=dict.fromkeys(keys))
    delivery = AlertDelivery(
        store=store,
        routes=config.routes,
        surfaces=surfaces,
        default=default,
        pacers={key: _pacer(key, config) for key in keys},
        metrics=metrics,
        enricher=enricher or runtime.services.enricher,
        clock=runtime.engine.clock,
    )
    receiver = AlertmanagerReceiver(
        store=store,
        delivery=delivery,
        auth=WebhookAuth(
            token=settings.alertmanager_token,
            username=settings.alertmanager_username,
            password=settings.alertmanager_password,
        ),
        metrics=metrics,
        clock=runtime.engine.clock,
    )
    return AlertWiring(
        store=store, delivery=delivery, receiver=receiver, routers=[receiver.router()]
    )


def _pacer(destination: str, config: ConfigBundle) -> Pacer:
    """Slack: routes.yaml's slack_interval; Telegram: settings.yaml's pace, 20/min in groups."""
    platform, channel = destination.split(":", 1)
    if platform == "slack":
        return Pacer(interval=config.routes.delivery.slack_interval)
    telegram = config.general.chat.telegram
    group = int(channel) < 0
    return Pacer(
        interval=telegram.send_interval,
        per_minute=telegram.group_messages_per_minute if group else None,
    )
