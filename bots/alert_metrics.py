"""opsgate's own alert metrics: alerts received, notifications by outcome, queue depths."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from bots.alert_store import AlertStore

__all__ = ["AlertMetrics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertMetrics:
    """Counters of this replica, and the store's backlog read at scrape time.

    `collector` goes into the web app's registry (bots.web.metrics(app).registry).
    """

    collector: Collector
    webhooks: Counter  # outcome: accepted, unauthorized, invalid, error
    received: Counter  # status: firing, resolved; every alert of an accepted payload
    repeated: Counter  # status; alerts already stored (retries, Alertmanager's repeats)
    notifications: Counter  # platform, outcome: sent, folded, muted, failed; in alerts
    messages: Counter  # platform, kind: post, edit, reply, digest; chat calls that succeeded

    @classmethod
    def create(cls, store: AlertStore, *, destinations: Iterable[str] = ()) -> AlertMetrics:
        registry = CollectorRegistry()
        registry.register(_Backlog(store, destinations=tuple(destinations)))
        return cls(
            collector=_Forward(registry),
            webhooks=Counter(
                "opsgate_alertmanager_webhooks",
                "Alertmanager webhook requests by outcome (accepted, unauthorized, invalid, error)",
                ["outcome"],
                registry=registry,
            ),
            received=Counter(
                "opsgate_alerts_received",
                "alerts in accepted Alertmanager notifications, by status",
                ["status"],
                registry=registry,
            ),
            repeated=Counter(
                "opsgate_alerts_repeated",
                "received alerts that were stored already (retries and repeats), by status",
                ["status"],
                registry=registry,
            ),
            notifications=Counter(
                "opsgate_alert_notifications",
                "alerts told to a chat destination, by platform and outcome "
                "(sent, folded into a digest, muted by a route, failed and to be retried)",
                ["platform", "outcome"],
                registry=registry,
            ),
            messages=Counter(
                "opsgate_alert_chat_calls",
                "chat calls made for alerts, by platform and kind (post, edit, reply, digest)",
                ["platform", "kind"],
                registry=registry,
            ),
        )


class _Forward(Collector):
    """Lets one registry be scraped through another."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _Backlog(Collector):
    """Read from the store when scraped: every replica reports the same shared backlog."""

    def __init__(self, store: AlertStore, *, destinations: tuple[str, ...]) -> None:
        self._store = store
        self._destinations = destinations  # reported at 0 when nothing waits

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        try:
            unrouted, pending = self._store.backlog()
        except SQLAlchemyError:
            log.warning("the store did not answer; /metrics leaves out the alert backlog")
            return
        depth = GaugeMetricFamily(
            "opsgate_alert_queue_depth",
            "alerts waiting to be told to a chat destination (platform:channel)",
            labels=["destination"],
        )
        for destination in self._destinations:
            pending.setdefault(destination, 0)
        for destination, count in sorted(pending.items()):
            depth.add_metric([destination], count)
        yield depth
        yield GaugeMetricFamily(
            "opsgate_alerts_unrouted", "stored alerts not routed to destinations yet", unrouted
        )
