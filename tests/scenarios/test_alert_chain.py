"""The whole alert path with the real programs: Prometheus → Alertmanager → opsgate → chat.

Prometheus (Debian's) evaluates the project's rules in observability/prometheus-rules/ over
backfilled request counters in which checkout and cart in prod answer 5% of requests with a
5xx. The rules' `for:` (2m for ErrorBudgetBurn) would make a test wait minutes, so the
backfill also holds the ALERTS_FOR_STATE series Prometheus writes while an alert is pending:
on start Prometheus restores that state (its outage tolerance) and fires at once, as a
restarted Prometheus does. It sends to a real Alertmanager configured from
observability/alertmanager/alertmanager.yml (waits shortened), whose webhook posts to
opsgate's /alertmanager with the bearer token file, and opsgate posts to fake Slack and
Telegram. People then ack, silence, and Alertmanager resolves.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.alertmanager_server import (
    AlertmanagerServer,
    binary,
    opsgate_config,
    running_alertmanager,
)
from tests.bots.test_web import wait_for
from tests.fakes.slack_api import ALICE, OPS, Message, block_actions_body
from tests.fakes.telegram_api import FakeMessage
from tests.prometheus_server import binaries, running_prometheus
from tests.scenarios._alert_world import TOKEN, AlertWorld, alert_world

RULES = Path(__file__).resolve().parents[2] / "observability/prometheus-rules"
BURNING = ("checkout", "cart")
FOR_STATE_AGE = 30 * 60  # the alerts have been active for 30 minutes


def _burning(now: int) -> str:
    """3h of counters for checkout and cart in prod (5% 5xx), and their pending-alert state."""
    lines = ["# TYPE http_requests_total counter"]
    start = now - 3 * 3600
    stamps = range(start - start % 15, now, 15)
    for service in BURNING:
        for code, per_second in (("200", 95.0), ("500", 5.0)):
            labels = f'service="{service}",env="prod",code="{code}"'
            lines += [
                f"http_requests_total{{{labels}}} {(t - start) * per_second} {t}" for t in stamps
            ]
    lines.append("# TYPE ALERTS_FOR_STATE gauge")
    for service in BURNING:
        labels = f'alertname="ErrorBudgetBurn",env="prod",service="{service}",severity="page"'
        lines += [f"ALERTS_FOR_STATE{{{labels}}} {now - FOR_STATE_AGE} {t}" for t in stamps[-40:]]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _routes(group: int) -> dict[str, Any]:
    return {
        "routes": [
            {
                "name": "pages",
                "severities": ["page"],
                "destinations": [
                    {"platform": "slack", "channel": OPS},
                    {"platform": "telegram", "channel": group},
                ],
            }
        ],
        "default": {"changes_channels": False},
        "delivery": {"poll": 0.2},
    }


def _slack_button(message: Message, label: str) -> dict[str, Any]:
    for block in message.blocks or []:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                return dict(element)
    raise AssertionError(f"no {label!r} button in {message.blocks}")


def _telegram_button(message: FakeMessage, label: str) -> str:
    for row in (message.reply_markup or {}).get("inline_keyboard", []):
        for button in row:
            if button["text"] == label:
                return str(button["callback_data"])
    raise AssertionError(f"no {label!r} button on {message.text!r}")


def test_a_burning_error_budget_reaches_slack_and_telegram_and_is_acked_silenced_resolved(
    tmp_path: Path,
) -> None:
    binary()
    binaries()
    # Alertmanager first, so that opsgate's /silence can be pointed at it; its webhook is
    # aimed at opsgate once opsgate listens.
    placeholder = opsgate_config(tmp_path / "am", webhook_url="http://127.0.0.1:9/", token=TOKEN)
    with running_alertmanager(tmp_path / "am", config=placeholder) as alertmanager:
        general = {"alerts": {"alertmanager_url": alertmanager.url, "alertmanager_timeout": 5}}
        with alert_world(tmp_path, routes=_routes, general=general) as world:
            (tmp_path / "am" / "alertmanager.yml").write_text(
                opsgate_config(
                    tmp_path / "am", webhook_url=f"{world.url}/alertmanager", token=TOKEN
                )
            )
            alertmanager.reload()
            _fire_ack_silence_resolve(tmp_path, world, alertmanager)


def _fire_ack_silence_resolve(
    tmp_path: Path, world: AlertWorld, alertmanager: AlertmanagerServer
) -> None:
    am_port = alertmanager.url.rsplit(":", 1)[1]
    config = (
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}/*.rules.yaml']\n"
        "alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['127.0.0.1:{am_port}']\n"
    )
    checkout, cart = "ErrorBudgetBurn · checkout/prod · page", "ErrorBudgetBurn · cart/prod · page"
    with running_prometheus(
        tmp_path / "prometheus",
        openmetrics=_burning(int(time.time())),
        config=config,
        # Restore the pending state of alerts whose `for:` is shorter than the default 10m, and
        # re-send soon: the first send can come before Alertmanager is discovered.
        args=["--rules.alert.for-grace-period=1m", "--rules.alert.resend-delay=2s"],
    ) as prometheus:
        wait_for(
            lambda: (
                len(world.slack_top("ErrorBudgetBurn · ")) == 2
                and len(world.telegram_top("ErrorBudgetBurn · ")) == 2
            ),
            what="both groups in Slack and Telegram",
            timeout=40,
        )
        [slack_checkout] = world.slack_top(checkout)
        [telegram_checkout] = world.telegram_top(checkout)
        assert "🔥" in slack_checkout.text and "1 firing" in slack_checkout.text
        assert "burns its error budget fast (5% errors)" in slack_checkout.text
        assert "runbooks/error-budget-burn.md" in slack_checkout.text
        for label in ("Silence 1h", "Silence 4h", "Silence 24h", "Analyze", "Ack"):
            _slack_button(slack_checkout, label)
            _telegram_button(telegram_checkout, label)

        # Dave acks checkout from Telegram: both of its messages say so.
        world.telegram.press(
            world.group,
            world.dave,
            telegram_checkout.message_id,
            _telegram_button(telegram_checkout, "Ack"),
        )
        wait_for(
            lambda: (
                "Acked by dave"
                in (world.slack.message(OPS, slack_checkout.ts) or slack_checkout).text
                and "Acked by dave" in (world.telegram_top(checkout)[0].text or "")
            ),
            what="both checkout messages to show the ack",
        )

        # Alice silences cart for an hour from Slack: the silence is Alertmanager's own.
        [slack_cart] = world.slack_top(cart)
        silence = _slack_button(slack_cart, "Silence 1h")
        body = block_actions_body(
            silence["action_id"], silence["value"], user_id=ALICE, message=slack_cart.to_json()
        )
        assert world.slack_post(body) == 200
        wait_for(
            lambda: any(
                s["createdBy"] == "alice"
                and {"name": "service", "value": "cart", "isRegex": False, "isEqual": True}
                in s["matchers"]
                for s in alertmanager.get("/api/v2/silences")
                if s["status"]["state"] == "active"
            ),
            what="alice's silence in Alertmanager's API",
        )
        prometheus.stop()

    # The errors stop: Alertmanager resolves checkout, and opsgate says how long it fired.
    firing = next(
        a for a in alertmanager.get("/api/v2/alerts") if a["labels"]["service"] == "checkout"
    )
    alertmanager.post(
        [
            {
                "labels": firing["labels"],
                "startsAt": firing["startsAt"],
                "endsAt": _rfc3339(time.time() - 1),
            }
        ]
    )
    wait_for(
        lambda: "✅" in (world.slack.message(OPS, slack_checkout.ts) or slack_checkout).text,
        what="the checkout message to say resolved",
        timeout=20,
    )
    resolved = world.slack.message(OPS, slack_checkout.ts)
    assert resolved is not None
    # Prometheus's startsAt is when the alert began to fire (this run), not when it was pending.
    assert re.search(r"checkout/prod: resolved, fired for \d+s", resolved.text), resolved.text
    assert not [b for b in resolved.blocks or [] if b["type"] == "actions"]
    wait_for(  # the thread reply follows the edit a Slack interval later
        lambda: any(
            m.text.startswith("Resolved: checkout/prod, after ")
            for m in world.slack.thread(OPS, slack_checkout.ts)[1:]
        ),
        what="the resolution in the Slack message's thread",
    )
    wait_for(
        lambda: any(
            t.startswith("Resolved:")
            for t in world.telegram_thread(world.telegram_top(checkout)[0])
        ),
        what="the resolution in the Telegram message's thread",
    )
    # Still one message per group and destination, and everything is in the store.
    assert len(world.slack_top("ErrorBudgetBurn · ")) == 2
    assert len(world.telegram_top("ErrorBudgetBurn · ")) == 2
    stored = world.alerts.store.alerts()
    assert sorted((a.labels["service"], a.status) for a in stored) == [
        ("cart", "firing"),
        ("checkout", "firing"),
        ("checkout", "resolved"),
    ]


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
