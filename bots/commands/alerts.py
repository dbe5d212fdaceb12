"""/alerts, /silence and /unsilence: what fires in Alertmanager now, and silences from chat.

A silence made here is Alertmanager's own (API v2): createdBy is the person who typed or
clicked, its comment says so and through which chat identity, and it is audited ("silenced",
"unsilenced", subject the silence id). Given a fingerprint, it matches that alert's full label
set, so exactly that alert; given an alertname, every alert of that name, narrowed by any
`label=value` words typed right after the duration (`/silence TrafficBurst 4h service=cart`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from approval_engine import audit
from approval_engine.config import format_duration, parse_duration
from approval_engine.engine import utc_now
from bots.alert_tables import StoredAlert
from bots.alertmanager_api import Alert, AlertmanagerClient, Matcher, Silence
from bots.errors import CommandError, UsageError
from bots.router import Context, Router
from bots.types import Button, Reply, Table

ALERTS_USAGE = "/alerts [service|severity]"
SILENCE_USAGE = "/silence <alertname|fingerprint> <duration> [label=value …] [comment]"
UNSILENCE_USAGE = "/unsilence <silence id>"
MIN_SILENCE = timedelta(minutes=1)
MAX_SILENCE = timedelta(days=7)
MAX_ROWS = 40
# Most urgent first; severities not named here sort after these.
SEVERITY_RANK = {"critical": 0, "page": 0, "error": 1, "warning": 2, "ticket": 2, "info": 3}
_LABEL_WORD = re.compile(r"^([A-Za-z_]\w*)=(.+)$")
_SHORT_ID = 8


def _client(ctx: Context) -> AlertmanagerClient:
    client = ctx.services.alertmanager
    if client is None:
        raise CommandError(
            "Alertmanager is not configured here: set alerts.alertmanager_url in settings.yaml."
        )
    return client


def age(since: datetime, now: datetime) -> str:
    """`45s`, `12m`, `3h 5m`, `2d 4h`: how long ago, to the two largest units."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours == 0:
        return f"{minutes}m"
    if days == 0:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


def where(labels: Mapping[str, str]) -> str:
    service, env = labels.get("service", ""), labels.get("env", "")
    return f"{service}/{env}" if service and env else service or env or "-"


def state(alert: Alert) -> str:
    if alert.silenced_by:
        return f"silenced ({alert.silenced_by[0][:_SHORT_ID]})"
    if alert.inhibited_by:
        return "inhibited"
    return "new" if alert.state == "unprocessed" else "firing"


def matcher_text(matchers: Sequence[Matcher]) -> str:
    return "{" + ", ".join(map(str, matchers)) + "}"


def _duration(text: str) -> timedelta:
    try:
        duration = parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{e}. Usage: {SILENCE_USAGE}") from None
    assert isinstance(duration, timedelta)
    if not MIN_SILENCE <= duration <= MAX_SILENCE:
        raise CommandError(
            f"A silence from chat lasts between {format_duration(MIN_SILENCE)} and "
            f"{format_duration(MAX_SILENCE)}, not {text}."
        )
    return duration


def _unknown_alert(name: str, alerts: Sequence[Alert]) -> CommandError:
    known = sorted({a.name for a in alerts} | {a.fingerprint for a in alerts})
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]}?" if close else ""
    return CommandError(
        f"No alert firing now has the name or fingerprint {name!r}.{hint} "
        "/alerts lists what fires, with fingerprints."
    )


def _what_to_silence(
    target: str,
    rest: list[str],
    alerts: Sequence[Alert],
    stored: Callable[[str], StoredAlert | None],
) -> tuple[list[Matcher], list[Alert], str, list[str]]:
    """The matchers, the alerts they match now, a description, and the comment's words.

    A fingerprint Alertmanager no longer lists (the alert resolved after its message was
    posted, and someone pressed Silence on it) is silenced by the labels opsgate stored.
    """
    by_fingerprint = [a for a in alerts if a.fingerprint == target.lower()]
    if by_fingerprint:
        alert = by_fingerprint[0]
        matchers = [Matcher(k, v) for k, v in sorted(alert.labels.items())]
        return matchers, by_fingerprint, f"{alert.name} on {where(alert.labels)}", rest
    known = stored(target.lower())
    if known is not None:
        matchers = [Matcher(k, v) for k, v in sorted(known.labels.items())]
        name = known.labels.get("alertname", target)
        return matchers, [], f"{name} on {where(known.labels)} (not firing now)", rest
    named = [a for a in alerts if a.name == target]
    if not named:
        raise _unknown_alert(target, alerts)
    narrow: list[Matcher] = []
    while rest and (word := _LABEL_WORD.match(rest[0])):
        narrow.append(Matcher(word.group(1), word.group(2)))
        rest = rest[1:]
    matched = [a for a in named if all(a.labels.get(m.name) == m.value for m in narrow)]
    if not matched:
        raise CommandError(
            f"No firing {target} has {', '.join(map(str, narrow))}; /alerts shows their labels."
        )
    matchers = [Matcher("alertname", target), *narrow]
    described = f"{target} ({', '.join(map(str, narrow))})" if narrow else f"every {target}"
    return matchers, matched, described, rest


def _nothing(_fingerprint: str) -> None:
    return None


def _find_silence(client: AlertmanagerClient, wanted: str) -> Silence:
    """By its id, or the first characters of it as /alerts shows them."""
    silences = client.silences()
    exact = [s for s in silences if s.id == wanted]
    if exact:
        return exact[0]
    starting = [s for s in silences if len(wanted) >= 4 and s.id.startswith(wanted.lower())]
    live = [s for s in starting if s.state != "expired"] or starting
    if len(live) == 1:
        return live[0]
    if len(live) > 1:
        raise CommandError(
            f"{wanted!r} starts {len(live)} silences' ids: {', '.join(s.id for s in live)}. "
            "Type more of it."
        )
    in_force = [s.id for s in silences if s.state != "expired"]
    listed = f" Silences in force: {', '.join(in_force)}." if in_force else ""
    raise CommandError(f"Alertmanager has no silence {wanted!r}.{listed}")


def install(router: Router) -> None:
    @router.command(
        "alerts", usage=ALERTS_USAGE, summary="alerts firing now in Alertmanager, and silences"
    )
    def alerts_command(ctx: Context) -> Reply:
        if len(ctx.args) > 1:
            raise UsageError(f"Usage: {ALERTS_USAGE}, e.g. /alerts checkout or /alerts page")
        client = _client(ctx)
        alerts = client.alerts()
        wanted = ctx.args[0] if ctx.args else None
        shown = [
            a
            for a in alerts
            if wanted is None or wanted in (a.labels.get("service"), a.labels.get("severity"))
        ]
        if not shown:
            elsewhere = f" ({len(alerts)} fire elsewhere: /alerts)" if alerts else ""
            scope = f" for {wanted}" if wanted else ""
            return Reply(text=f"No alerts firing{scope} in Alertmanager.{elsewhere}")
        shown.sort(key=lambda a: (SEVERITY_RANK.get(a.labels.get("severity", ""), 9), a.starts_at))
        now = utc_now()
        rows = tuple(
            (
                a.name,
                where(a.labels),
                a.labels.get("severity", "-"),
                age(a.starts_at, now),
                state(a),
                a.fingerprint,
            )
            for a in shown[:MAX_ROWS]
        )
        silenced = sum(1 for a in shown if a.silenced_by)
        inhibited = sum(1 for a in shown if a.inhibited_by and not a.silenced_by)
        scope = f" for {wanted}" if wanted else ""
        text = f"{len(shown)} alerts firing{scope}: {silenced} silenced, {inhibited} inhibited."
        footer = ["/silence <fingerprint> 1h [comment] silences one; /unsilence <id> ends one."]
        if len(shown) > MAX_ROWS:
            footer.insert(0, f"{len(shown) - MAX_ROWS} more not shown: narrow with {ALERTS_USAGE}.")
        return Reply(
            text=text,
            tables=(
                Table(
                    columns=("alert", "where", "severity", "age", "state", "fingerprint"),
                    rows=rows,
                ),
            ),
            footer=tuple(footer),
        )

    @router.command(
        "silence", role="operator", usage=SILENCE_USAGE, summary="silence an alert in Alertmanager"
    )
    def silence_command(ctx: Context) -> Reply:
        if len(ctx.args) < 2:
            raise UsageError(
                f"Usage: {SILENCE_USAGE}, e.g. /silence 1a2b3c4d5e6f7a8b 1h deploying a fix"
            )
        duration = _duration(ctx.args[1])
        client = _client(ctx)
        store = ctx.services.alerts
        matchers, matched, described, words = _what_to_silence(
            ctx.args[0], ctx.args[2:], client.alerts(), store.latest if store else _nothing
        )
        actor, engine = ctx.actor, ctx.services.engine
        comment = " ".join(words)
        starts = utc_now()
        ends = starts + duration
        silence_id = client.create_silence(
            matchers,
            starts_at=starts,
            ends_at=ends,
            created_by=actor.name,
            comment=f"{comment or 'silenced from chat'} "
            f"(by {actor.name} via opsgate, {ctx.event.principal})",
        )
        try:
            with engine.store.transaction() as session:
                audit.record(
                    session,
                    at=engine.clock(),
                    actor=actor.name,
                    action="silenced",
                    subject=silence_id,
                    detail={
                        "alertmanager": client.base_url,
                        "asked": ctx.args[0],
                        "matchers": [str(m) for m in matchers],
                        "duration": format_duration(duration),
                        "ends_at": ends.isoformat(),
                        "comment": comment,
                        "matching_now": len(matched),
                        "via": ctx.event.principal,
                    },
                )
        except Exception:
            # Every silence from chat is audited: one that cannot be is taken back.
            client.expire_silence(silence_id)
            raise
        count = f"{len(matched)} alert" + ("" if len(matched) == 1 else "s")
        return Reply(
            text=f"Silenced {described} for {format_duration(duration)}, until "
            f"{ends:%a %d %b %H:%M} UTC ({count} firing now).",
            code=f"silence {silence_id}\nmatchers {matcher_text(matchers)}",
            buttons=(Button("Unsilence", f"/unsilence {silence_id}", style="danger"),),
        )

    @router.command(
        "unsilence",
        role="operator",
        usage=UNSILENCE_USAGE,
        summary="end a silence in Alertmanager",
    )
    def unsilence_command(ctx: Context) -> Reply:
        if len(ctx.args) != 1:
            raise UsageError(f"Usage: {UNSILENCE_USAGE} (the id /silence or /alerts showed)")
        client = _client(ctx)
        silence = _find_silence(client, ctx.args[0])
        if silence.state == "expired":
            return Reply(
                text=f"Silence {silence.id} already ended at {silence.ends_at:%a %d %b %H:%M} "
                "UTC; nothing to do."
            )
        engine = ctx.services.engine
        # Expired inside the audit's transaction: a refusal leaves no "unsilenced" row.
        with engine.store.transaction() as session:
            audit.record(
                session,
                at=engine.clock(),
                actor=ctx.actor.name,
                action="unsilenced",
                subject=silence.id,
                detail={
                    "alertmanager": client.base_url,
                    "matchers": [str(m) for m in silence.matchers],
                    "created_by": silence.created_by,
                    "was_until": silence.ends_at.isoformat(),
                    "via": ctx.event.principal,
                },
            )
            client.expire_silence(silence.id)
        return Reply(
            text=f"Ended silence {silence.id} of {matcher_text(silence.matchers)}, created by "
            f"{silence.created_by}; it would have lasted until "
            f"{silence.ends_at:%a %d %b %H:%M} UTC."
        )
