"""What an alert group looks like in chat: its message, the news in its thread, and a digest.

A Silence button silences the one firing alert by its fingerprint, or, when several fire,
their alertname narrowed by the group's labels (`/silence ErrorBudgetBurn 1h env=prod
service=checkout`). The Analyze button runs the agent that knows the alert's kind, by alertname:

| alertname                      | agent           |
| ------------------------------ | --------------- |
| TrafficBurst, HPAAtMaxReplicas | BurstPredictor  |
| CloudCostOverDailyBudget       | CostWatcher     |
| any other                      | AnomalyDetector |
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from bots.alert_tables import GroupInfo, StoredAlert
from bots.types import Button, Reply

__all__ = [
    "ANALYZERS",
    "DEFAULT_ANALYZER",
    "SILENCE_FOR",
    "analyzer_for",
    "digest",
    "fired_for",
    "group_message",
    "news",
]

ANALYZERS: Mapping[str, str] = {
    "TrafficBurst": "BurstPredictor",
    "HPAAtMaxReplicas": "BurstPredictor",
    "CloudCostOverDailyBudget": "CostWatcher",
}
DEFAULT_ANALYZER = "AnomalyDetector"
SILENCE_FOR = ("1h", "4h", "24h")
MAX_ALERT_LINES = 15
MAX_DIGEST_NAMES = 10
MAX_DIGEST_SERVICES = 4
_IDENTITY_SKIP = frozenset({"alertname", "severity"})


def analyzer_for(alertname: str) -> str:
    return ANALYZERS.get(alertname, DEFAULT_ANALYZER)


def fired_for(alert: StoredAlert) -> str:
    """How long a resolved alert fired: `14m`, `2h 5m`, `3d 4h`."""
    if alert.ends_at is None:
        return "?"
    return _span(alert.ends_at - alert.starts_at)


def _span(delta: timedelta) -> str:
    seconds = max(round(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def _when(at: datetime) -> str:
    return f"{at:%d %b %H:%M} UTC"


def _name(group: GroupInfo, alerts: Sequence[StoredAlert]) -> str:
    for labels in (group.group_labels, group.common_labels, *(a.labels for a in alerts[:1])):
        if labels.get("alertname"):
            return labels["alertname"]
    return "alerts"


def _where(labels: Mapping[str, str]) -> str:
    return "/".join(labels[k] for k in ("service", "env") if labels.get(k))


def _identity(alert: StoredAlert, common: Mapping[str, str]) -> str:
    """The labels that tell this alert from the rest of its group."""
    own = {k: v for k, v in sorted(alert.labels.items()) if common.get(k) != v}
    own = {k: v for k, v in own.items() if k not in _IDENTITY_SKIP} or own
    if not own:
        return _where(alert.labels) or alert.fingerprint
    if set(own) <= {"service", "env"}:
        return _where(alert.labels)
    return ", ".join(f"{k}={v}" for k, v in own.items())


def _silence(group: GroupInfo, alerts: Sequence[StoredAlert], name: str, duration: str) -> str:
    """One firing alert: by fingerprint; several: the alertname narrowed by the group's labels."""
    firing = [a for a in alerts if a.status == "firing"]
    if len(firing) == 1:
        return f"/silence {firing[0].fingerprint} {duration}"
    narrow = [
        shlex.quote(f"{k}={v}") for k, v in sorted(group.group_labels.items()) if k != "alertname"
    ]
    return " ".join(["/silence", shlex.quote(name), duration, *narrow])


def group_message(
    group: GroupInfo, alerts: Sequence[StoredAlert], *, lines: Sequence[str] = ()
) -> Reply:
    """The one message of a group at a destination; edits replace it as the group changes."""
    name = _name(group, alerts)
    common = group.common_labels
    where = _where(common)
    severity = common.get("severity", "")
    firing = [a for a in alerts if a.status == "firing"]
    resolved = [a for a in alerts if a.status == "resolved"]
    about = " · ".join(part for part in (name, where, severity) if part)
    if firing:
        counts = f"{len(firing)} firing" + (f", {len(resolved)} resolved" if resolved else "")
        text = [f"🔥 {about}: {counts}"]
    else:
        text = [f"✅ {about}: resolved"]
    summaries = list(dict.fromkeys(a.annotations.get("summary", "") for a in alerts))
    if len(summaries) == 1 and summaries[0]:
        text.append(summaries[0])
    for alert in (firing + resolved)[:MAX_ALERT_LINES]:
        if alert.status == "firing":
            state = f"firing since {_when(alert.starts_at)}"
        else:
            state = f"resolved, fired for {fired_for(alert)}"
        text.append(f"• {_identity(alert, common)}: {state}")
    if len(alerts) > MAX_ALERT_LINES:
        text.append(f"• … and {len(alerts) - MAX_ALERT_LINES} more (opsgate alerts list)")
    runbooks = list(dict.fromkeys(a.annotations.get("runbook_url", "") for a in alerts))
    if runbooks and runbooks[0] and not any(runbooks[0] in line for line in lines):
        text.append(f"Runbook: {runbooks[0]}")  # unless the enrichment has it already
    text.extend(lines)
    if group.acked_by is not None and group.acked_at is not None:
        text.append(f"Acked by {group.acked_by} at {_when(group.acked_at)}.")
    buttons: tuple[Button, ...] = ()
    if firing:
        buttons = (
            *(Button(f"Silence {d}", _silence(group, alerts, name, d)) for d in SILENCE_FOR),
            Button("Analyze", f"/agent {analyzer_for(name)} analyze"),
        )
        if group.acked_by is None:
            buttons += (Button("Ack", f"/ack {group.id}", style="primary"),)
    footer = f"alert group {group.id}" + (f" · {group.external_url}" if group.external_url else "")
    return Reply(text="\n".join(text), buttons=buttons, footer=(footer,))


def news(alerts: Sequence[StoredAlert], *, common: Mapping[str, str]) -> str:
    """The thread reply when alerts join or resolve: what changed since the last message."""
    parts = []
    for alert in alerts[:MAX_ALERT_LINES]:
        who = _identity(alert, common)
        if alert.status == "resolved":
            parts.append(f"Resolved: {who}, after {fired_for(alert)}.")
        else:
            parts.append(f"Firing: {who}, since {_when(alert.starts_at)}.")
    if len(alerts) > MAX_ALERT_LINES:
        parts.append(f"… and {len(alerts) - MAX_ALERT_LINES} more changes.")
    return "\n".join(parts)


def digest(alerts: Sequence[StoredAlert], *, platform: str) -> Reply:
    """Many alerts as one message: counts by alertname, and by service within each."""
    by_name = Counter(a.labels.get("alertname", "?") for a in alerts)
    by_service: dict[str, Counter[str]] = {}
    for alert in alerts:
        name = alert.labels.get("alertname", "?")
        by_service.setdefault(name, Counter())[alert.labels.get("service", "-")] += 1
    parts = []
    for name, count in by_name.most_common(MAX_DIGEST_NAMES):
        services = by_service[name].most_common()
        shown = ", ".join(f"{s} {n}" for s, n in services[:MAX_DIGEST_SERVICES])
        if len(services) > MAX_DIGEST_SERVICES:
            shown += f", {len(services) - MAX_DIGEST_SERVICES} more services"
        parts.append(f"{name}×{count} ({shown})")
    if len(by_name) > MAX_DIGEST_NAMES:
        rest = sum(n for _, n in by_name.most_common()[MAX_DIGEST_NAMES:])
        parts.append(f"{len(by_name) - MAX_DIGEST_NAMES} more alertnames×{rest}")
    firing = sum(1 for a in alerts if a.status == "firing")
    text = (
        f"📦 {len(alerts)} alerts folded: {', '.join(parts)}.\n"
        f"{firing} firing, {len(alerts) - firing} resolved. This chat fell behind "
        f"{platform.capitalize()}'s send limit, so they come as one digest; every alert is "
        "stored (/alerts, opsgate alerts list)."
    )
    return Reply(text=text)
