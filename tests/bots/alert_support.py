"""Alertmanager payloads as version 0.25 posts them, and an in-memory chat surface."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bots.types import Reply

__all__ = ["Posted", "RecordingSurface", "alert", "fingerprint", "payload"]

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable 16 hex digits per label set, as Alertmanager's fingerprints are."""
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert(
    alertname: str = "ErrorBudgetBurn",
    *,
    service: str = "checkout",
    env: str = "prod",
    severity: str = "page",
    status: str = "firing",
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    every = {"alertname": alertname, "service": service, "env": env, "severity": severity}
    every |= labels
    return {
        "status": status,
        "labels": every,
        "annotations": {
            "summary": f"{service} in {env}: {alertname}",
            "runbook_url": f"https://runbooks.example/{alertname}.md",
        },
        "startsAt": starts_at.isoformat().replace("+00:00", ".123456789Z"),
        "endsAt": (
            ends_at.isoformat().replace("+00:00", "Z") if ends_at else "0001-01-01T00:00:00Z"
        ),
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint(every),
    }


def payload(
    alerts: Iterable[dict[str, Any]], *, group_by: Iterable[str] = ("alertname", "service", "env")
) -> dict[str, Any]:
    """A webhook body for these alerts, grouped as the shipped alertmanager.yml groups."""
    items = list(alerts)
    keys = list(group_by)
    group = {k: items[0]["labels"][k] for k in keys if k in items[0]["labels"]}
    common = {
        k: v for k, v in items[0]["labels"].items() if all(a["labels"].get(k) == v for a in items)
    }
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(group.items()))
    return {
        "version": "4",
        "groupKey": f'{{}}/{{severity="page"}}:{{{inner}}}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in items) else "resolved",
        "receiver": "opsgate",
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": items,
    }


@dataclass(frozen=True)
class Posted:
    channel: str
    message_id: str
    reply: Reply
    thread: str | None
    at: float


@dataclass
class RecordingSurface:
    """A CardSurface that keeps what it was told; `fail` makes the next calls raise."""

    platform: str
    posts: list[Posted] = field(default_factory=list)
    edits: list[Posted] = field(default_factory=list)
    fail: int = 0
    before_post: Callable[[], object] | None = None  # runs as a post arrives (a race)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, channel: str, reply: Reply, *, thread: str | None = None) -> str:
        if self.before_post is not None:
            self.before_post()
        with self._lock:
            self._maybe_fail()
            message_id = str(next(self._ids))
            self.posts.append(Posted(channel, message_id, reply, thread, time.monotonic()))
            return message_id

    def edit(self, channel: str, message_id: str, reply: Reply) -> None:
        with self._lock:
            self._maybe_fail()
            self.edits.append(Posted(channel, message_id, reply, None, time.monotonic()))

    def _maybe_fail(self) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the chat API is down")

    def top(self, channel: str) -> list[Posted]:
        return [p for p in self.posts if p.channel == channel and p.thread is None]

    def thread(self, message_id: str) -> list[Posted]:
        return [p for p in self.posts if p.thread == message_id]

    def current(self, message_id: str) -> Reply:
        """What the message shows now: its last edit, or as posted."""
        edits = [e for e in self.edits if e.message_id == message_id]
        if edits:
            return edits[-1].reply
        return next(p.reply for p in self.posts if p.message_id == message_id)


def later(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
