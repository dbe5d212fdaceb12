"""An alert storm: 10,000 alerts in Alertmanager's batches, paced chats, nothing lost.

Alertmanager posts each group whole (`max_alerts: 0`), several groups at once, and retries
some. Slack is paced at one message a second per channel, Telegram at one a second and 20 a
minute in a group, the limits opsgate ships with; the fakes' call times show they were kept.
When a chat falls behind, what waits is folded into digests that say how many they hold.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise, product
from pathlib import Path
from typing import Any

import httpx

from tests.bots.alert_support import alert, payload
from tests.bots.test_web import wait_for
from tests.fakes.slack_api import OPS
from tests.scenarios._alert_world import TOKEN, AlertWorld, alert_world

ALERTNAMES = ("HighErrorRate", "PodCrashLooping", "LatencyP95AboveSLO", "HPAAtMaxReplicas")
SERVICES = tuple(f"svc{i:02d}" for i in range(10))
ENVS = ("prod", "staging", "dev", "qa", "perf")
PODS = 50  # alerts per group: 4 × 10 × 5 groups of 50 = 10,000 alerts
FOLD_AFTER = 5


def _routes(_group: int) -> dict[str, Any]:
    # No routes: every alert goes to the default, the changes channels of both platforms.
    return {"delivery": {"fold_after": FOLD_AFTER, "slack_interval": 1.0, "poll": 0.2}}


def _batches() -> list[dict[str, Any]]:
    return [
        payload(
            [
                alert(name, service=service, env=env, severity="page", pod=f"pod-{i}")
                for i in range(PODS)
            ]
        )
        for name, service, env in product(ALERTNAMES, SERVICES, ENVS)
    ]


def _post_all(world: AlertWorld, batches: list[dict[str, Any]]) -> list[int]:
    """Four senders at once, as Alertmanager flushes groups concurrently; a retry each tenth."""
    retries = batches[::10]

    def send(chunk: list[dict[str, Any]]) -> list[int]:
        with httpx.Client(base_url=world.url, timeout=30) as client:
            return [
                client.post(
                    "/alertmanager", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
                ).status_code
                for body in chunk
            ]

    chunks = [batches[i::4] for i in range(4)] + [retries]
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        return [status for statuses in pool.map(send, chunks) for status in statuses]


def _gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in pairwise(ordered)]


def _folded(texts: list[str]) -> int:
    counts = [re.match(r"📦 (\d+) alerts folded", t) for t in texts]
    return sum(int(m.group(1)) for m in counts if m is not None)


def test_ten_thousand_alerts_are_all_stored_paced_and_folded(tmp_path: Path) -> None:
    with alert_world(tmp_path, routes=_routes, telegram_pace=1.0) as world:
        batches = _batches()
        total = sum(len(b["alerts"]) for b in batches)
        assert total >= 10_000
        began = time.monotonic()
        statuses = _post_all(world, batches)
        received = time.monotonic() - began
        assert statuses == [200] * len(statuses), set(statuses)
        wait_for(world.idle, what="every alert to be sent or folded", timeout=25)
        took = time.monotonic() - began

        # None lost: every alert is stored once, and both chats account for each of them.
        store = world.alerts.store
        assert store.count() == total
        notices = store.notice_counts()
        slack, telegram = f"slack:{OPS}", f"telegram:{world.group.id}"
        for destination in (slack, telegram):
            told = {s: n for (d, s), n in notices.items() if d == destination}
            assert set(told) <= {"sent", "folded"}, told
            assert told.get("sent", 0) + told["folded"] == total, told
            assert told["folded"] > total / 2, told  # most of the storm came as digests

        # The digests say how many they folded, and add up to what the store says.
        slack_texts = [m.text for m in world.slack_top()]
        telegram_texts = [m.text or "" for m in world.telegram_top()]
        assert _folded(slack_texts) == notices[(slack, "folded")]
        assert _folded(telegram_texts) == notices[(telegram, "folded")]
        digest = next(t for t in slack_texts if "alerts folded" in t)
        assert re.search(
            r"(HighErrorRate|PodCrashLooping|LatencyP95AboveSLO|HPAAtMaxReplicas)×\d+ "
            r"\(svc\d\d \d+",
            digest,
        )

        # No chat saw more than its platform allows.
        slack_calls = [
            c.at
            for c in world.slack.calls
            if c.method in ("chat.postMessage", "chat.update") and c.params.get("channel") == OPS
        ]
        telegram_calls = [
            c.at
            for c in world.telegram.calls
            if c.method in ("sendMessage", "editMessageText", "sendPhoto")
            and c.params.get("chat_id") == world.group.id
        ]
        assert len(slack_calls) >= 3 and len(telegram_calls) >= 3
        assert min(_gaps(slack_calls)) >= 1.0, _gaps(slack_calls)
        assert min(_gaps(telegram_calls)) >= 1.0, _gaps(telegram_calls)
        ordered = sorted(telegram_calls)
        assert all(b - a >= 60 for a, b in zip(ordered, ordered[20:], strict=False))
        assert took < 30, f"{received:.1f}s to receive, {took:.1f}s in all"
