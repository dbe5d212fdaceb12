"""Stored alerts to chat: route them to destinations, then one paced sender per destination.

Routing and sending read the store, never the request that brought an alert, so a chat that
is down, slow or rate-limited loses nothing: its notices wait. Each destination gets one
message per alert group, edited (with a thread reply) as alerts join or resolve; when more
groups wait at a destination than `delivery.fold_after`, everything waiting there is folded
into one digest message. Leases in the store let one replica route, and one replica send to
each destination, when several run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from approval_engine.engine import utc_now
from bots.alert_metrics import AlertMetrics
from bots.alert_pacer import Pacer
from bots.alert_render import digest, group_message, news
from bots.alert_routes import RoutesConfig, decide
from bots.alert_store import AlertStore
from bots.alert_tables import FOLDED, MUTED, PENDING, SENT, Routing, Shown, StoredAlert, Unit
from bots.alert_types import Enricher, Enrichment, NoEnrichment
from bots.notifier import CardSurface
from bots.types import Reply

__all__ = ["AlertDelivery"]

log = logging.getLogger(__name__)

ROUTE_BATCH = 1000
_ENRICHED_KEEP = 64  # groups whose graph is kept for their next destination's first post


class _StoppedError(Exception):
    """The delivery is stopping; the unit stays pending."""


class AlertDelivery:
    """`route_pending()` and `send_step(destination)` are single steps (tests call them);
    `start()` runs them in threads until `stop()`."""

    def __init__(
        self,
        *,
        store: AlertStore,
        routes: RoutesConfig,
        surfaces: Mapping[str, CardSurface],
        default: Sequence[str],
        pacers: Mapping[str, Pacer],
        metrics: AlertMetrics,
        enricher: Enricher | None = None,
        clock: Callable[[], datetime] = utc_now,
        lease_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self.destinations = tuple(
            dict.fromkeys(
                [d.key for route in routes.routes for d in route.destinations] + list(default)
            )
        )
        missing = [d for d in self.destinations if d not in pacers]
        missing += [d for d in self.destinations if d.split(":", 1)[0] not in surfaces]
        if missing:
            raise ValueError(f"no chat adapter or pacer for {', '.join(sorted(set(missing)))}")
        self._store = store
        self._routes = routes
        self._surfaces = dict(surfaces)
        self._default = tuple(default)
        self._pacers = dict(pacers)
        self._metrics = metrics
        self._enricher: Enricher = enricher or NoEnrichment()
        self._clock = clock
        self._lease_ttl = lease_ttl
        self._owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases: dict[str, datetime] = {}
        self._enriched: OrderedDict[int, Enrichment] = OrderedDict()
        self._enriching = threading.Lock()
        self._stop = threading.Event()
        self._route_wake = threading.Event()
        self._send_wake = {d: threading.Event() for d in self.destinations}
        self._threads: list[threading.Thread] = []

    # --- threads ------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._route_loop, name="alerts-route")]
        self._threads += [
            threading.Thread(target=self._send_loop, args=(d,), name=f"alerts-send-{d}")
            for d in self.destinations
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        self._stop.set()
        self._route_wake.set()
        for event in self._send_wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wake(self) -> None:
        """New alerts are stored: route them now rather than at the next poll."""
        self._route_wake.set()

    def _route_loop(self) -> None:
        poll = self._routes.delivery.poll
        while not self._stop.is_set():
            self._route_wake.clear()
            try:
                routed = self.route_pending()
            except Exception:
                log.exception("routing stored alerts failed; trying again in %gs", poll)
                routed = 0
            if routed < ROUTE_BATCH:
                self._route_wake.wait(poll)

    def _send_loop(self, destination: str) -> None:
        poll, backoff = self._routes.delivery.poll, 0.0
        wake = self._send_wake[destination]
        while not self._stop.is_set():
            wake.clear()
            try:
                busy = self.send_step(destination)
                backoff = 0.0
            except Exception:
                backoff = min(max(backoff * 2, 1.0), 60.0)
                log.exception("sending alerts to %s failed; again in %gs", destination, backoff)
                self._stop.wait(backoff)
                continue
            if not busy:
                wake.wait(poll)

    # --- routing ------------------------------------------------------------------------

    def route_pending(self, *, batch: int = ROUTE_BATCH) -> int:
        """Give up to `batch` unrouted alerts their notices; how many were routed."""
        if not self._hold("route"):
            return 0
        alerts = self._store.unrouted(limit=batch)
        if not alerts:
            return 0
        at = self._clock()
        decisions: list[Routing] = []
        touched: set[str] = set()
        muted = Counter[str]()
        for alert in alerts:
            decision = decide(self._routes, alert.labels, at=at, default=self._default)
            states = {d: PENDING for d in decision.send} | {d: MUTED for d in decision.muted}
            decisions.append(Routing(alert.id, alert.group_id, states))
            touched.update(decision.send)
            muted.update(d.split(":", 1)[0] for d in decision.muted)
        self._store.record_routing(decisions, at=at)
        for platform, count in muted.items():
            self._metrics.notifications.labels(platform=platform, outcome="muted").inc(count)
        for destination in touched:
            self._send_wake[destination].set()
        return len(alerts)

    # --- sending ------------------------------------------------------------------------

    def send_step(self, destination: str) -> bool:
        """One message's worth of work for the destination; False when there was none."""
        if not self._hold(f"send:{destination}"):
            return False
        units = self._store.units(destination)
        if not units:
            return False
        waiting = [u for u in units if u.notice_ids]
        platform = destination.split(":", 1)[0]
        fold = len(waiting) > self._routes.delivery.fold_after
        count = sum(len(u.notice_ids) for u in waiting) if fold else len(units[0].notice_ids)
        try:
            if fold:
                self._fold(destination)
            else:
                self._update(destination, units[0])
        except _StoppedError:
            return False
        except Exception:
            self._metrics.notifications.labels(platform=platform, outcome="failed").inc(count)
            raise
        return True

    def _fold(self, destination: str) -> None:
        pending = self._store.pending(destination)
        if not pending:
            return
        platform, channel = destination.split(":", 1)
        message = digest([alert for _, alert in pending], platform=platform)
        surface = self._surfaces[platform]
        self._call(destination, "digest", lambda: surface.post(channel, message))
        self._store.settle([notice for notice, _ in pending], FOLDED, at=self._clock())
        self._metrics.notifications.labels(platform=platform, outcome="folded").inc(len(pending))
        log.warning(
            "%s fell behind its send limit: %d alerts folded into a digest",
            destination,
            len(pending),
        )

    def _update(self, destination: str, unit: Unit) -> None:
        platform, channel = destination.split(":", 1)
        surface = self._surfaces[platform]
        group = self._store.group(unit.group_id)
        shown = self._store.shown(unit.group_id, destination)
        at = self._clock()
        if unit.message is None:
            if shown:
                enrichment = self._enrichment(group.id, shown)
                reply = replace(
                    group_message(group, shown, lines=enrichment.lines),
                    image_png=enrichment.graph_png,
                )
                messages = 2 if enrichment.graph_png is not None else 1
                message_id = self._call(
                    destination, "post", lambda: surface.post(channel, reply), messages=messages
                )
                shown_now = Shown(
                    group.id, destination, message_id, enrichment.lines, group.acked_by
                )
                self._store.settle(unit.notice_ids, SENT, at=at, message=shown_now)
            else:  # nothing left to show (only ever possible through a manual edit)
                self._store.settle(unit.notice_ids, SENT, at=at)
        else:
            message_id = unit.message.message_id
            current = group_message(group, shown, lines=unit.message.lines)
            self._call(destination, "edit", lambda: surface.edit(channel, message_id, current))
            if unit.notice_ids:
                changes = news(self._store.alerts_of(unit.notice_ids), common=group.common_labels)
                thread = Reply(text=changes)
                self._call(
                    destination, "reply", lambda: surface.post(channel, thread, thread=message_id)
                )
            shown_now = Shown(group.id, destination, message_id, unit.message.lines, group.acked_by)
            self._store.settle(unit.notice_ids, SENT, at=at, message=shown_now)
        if unit.notice_ids:
            self._metrics.notifications.labels(platform=platform, outcome="sent").inc(
                len(unit.notice_ids)
            )

    def _call(
        self, destination: str, kind: str, call: Callable[[], str | None], *, messages: int = 1
    ) -> str:
        """One chat call, after the destination's pacer allows it; counted even if it failed."""
        pacer = self._pacers[destination]
        if not pacer.wait(self._stop):
            raise _StoppedError
        try:
            result = call()
        finally:
            pacer.sent(messages)
        self._metrics.messages.labels(platform=destination.split(":", 1)[0], kind=kind).inc()
        return result or ""

    def _enrichment(self, group_id: int, alerts: Sequence[StoredAlert]) -> Enrichment:
        """The graph and lines of a group, once for all its destinations."""
        with self._enriching:
            found = self._enriched.get(group_id)
            if found is None:
                found = self._enrich(alerts)
                self._enriched[group_id] = found
                while len(self._enriched) > _ENRICHED_KEEP:
                    self._enriched.popitem(last=False)
            return found

    def _enrich(self, alerts: Sequence[StoredAlert]) -> Enrichment:
        first = next((a for a in alerts if a.status == "firing"), alerts[0])
        try:
            return self._enricher.enrich(
                labels=first.labels,
                annotations=first.annotations,
                generator_url=first.generator_url,
                starts_at=first.starts_at,
            )
        except Exception:  # the protocol says it never raises; the message matters more
            log.exception("enriching alert %s failed; sent without", first.fingerprint)
            return Enrichment()

    # --- leases -------------------------------------------------------------------------

    def _hold(self, name: str) -> bool:
        """This replica holds the lease `name`; renewed in the store when half of it is gone."""
        now = datetime.now(UTC)  # real time: leases are between processes, not simulations
        until = self._leases.get(name)
        if until is not None and until - now > self._lease_ttl / 2:
            return True
        if self._store.lease(name, owner=self._owner, now=now, ttl=self._lease_ttl):
            self._leases[name] = now + self._lease_ttl
            return True
        self._leases.pop(name, None)
        return False
