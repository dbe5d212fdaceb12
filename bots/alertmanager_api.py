"""Alertmanager's API v2 (httpx): the alerts firing now, and silences to create and expire.

    client = AlertmanagerClient(base_url="http://alertmanager:9093", token=SecretStr(...))
    alerts = client.alerts(matchers=[Matcher("service", "checkout")])
    silence_id = client.create_silence(matchers, ends_at=..., created_by="alice", comment="...")
    client.expire_silence(silence_id)

Errors (both CommandErrors, so the gateway shows their text in chat as it is):

AlertmanagerError                 a permanent refusal: 4xx, an unknown silence, an answer that
                                  is not Alertmanager's; the text carries Alertmanager's message
└── AlertmanagerUnavailableError  no connection, a timeout, 5xx or 429: worth trying again
                                  later; `retry_after` seconds when Alertmanager sent them

The token (bearer, or `user:password` for basic auth) is sent per request by an httpx.Auth and
never appears in a log line, a repr or an error's text.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from bots.errors import CommandError

__all__ = [
    "Alert",
    "AlertmanagerClient",
    "AlertmanagerError",
    "AlertmanagerUnavailableError",
    "Matcher",
    "Silence",
]

_DETAIL_CHARS = 300


class AlertmanagerError(CommandError):
    """Alertmanager refused, or answered in a way opsgate cannot read."""


class AlertmanagerUnavailableError(AlertmanagerError):
    """Alertmanager is down, slow or overloaded: try again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Matcher:
    """`name="value"`, or with `regex` `name=~"value"`; `equal=False` negates (`!=`, `!~`)."""

    name: str
    value: str
    regex: bool = False
    equal: bool = True

    def __str__(self) -> str:
        op = ("=~" if self.regex else "=") if self.equal else ("!~" if self.regex else "!=")
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{op}"{escaped}"'


@dataclass(frozen=True)
class Alert:
    """One alert as Alertmanager holds it; `state` is active, suppressed or unprocessed."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    state: str
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Silence:
    id: str
    state: str  # active | pending | expired
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str = ""
    updated_at: datetime | None = field(default=None, compare=False)


class _Bearer(httpx.Auth):
    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class _Basic(httpx.Auth):
    def __init__(self, credentials: SecretStr) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        user, _, password = self._credentials.get_secret_value().partition(":")
        basic = httpx.BasicAuth(user, password)
        yield from basic.auth_flow(request)


class AlertmanagerClient:
    """A small, synchronous client of one Alertmanager (or an HA pair's load balancer)."""

    label = "Alertmanager"

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr | None = None,
        auth: Literal["bearer", "basic"] = "bearer",
        timeout: float = 10.0,
        verify_tls: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=(_Basic(token) if auth == "basic" else _Bearer(token)) if token else None,
            verify=verify_tls,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"AlertmanagerClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- alerts ------------------------------------------------------------------------------

    def alerts(
        self,
        *,
        matchers: Sequence[Matcher] = (),
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
    ) -> list[Alert]:
        """The alerts Alertmanager holds now (never the resolved ones), oldest first."""
        params: list[tuple[str, str]] = [
            ("active", _flag(active)),
            ("silenced", _flag(silenced)),
            ("inhibited", _flag(inhibited)),
            ("unprocessed", _flag(unprocessed)),
            *(("filter", str(m)) for m in matchers),
        ]
        body = self._json("GET", "/api/v2/alerts", "list alerts", params=params)
        try:
            alerts = [_alert(item) for item in _list(body)]
        except (KeyError, TypeError, ValueError) as e:
            raise self._unreadable("alerts", e) from e
        return sorted(alerts, key=lambda a: (a.starts_at, a.fingerprint))

    # -- silences ----------------------------------------------------------------------------

    def silences(self, *, matchers: Sequence[Matcher] = ()) -> list[Silence]:
        """Every silence Alertmanager still remembers, expired ones too, newest first."""
        params = [("filter", str(m)) for m in matchers]
        body = self._json("GET", "/api/v2/silences", "list silences", params=params)
        try:
            found = [_silence(item) for item in _list(body)]
        except (KeyError, TypeError, ValueError) as e:
            raise self._unreadable("silences", e) from e
        return sorted(found, key=lambda s: s.starts_at, reverse=True)

    def silence(self, silence_id: str) -> Silence:
        body = self._json("GET", f"/api/v2/silence/{quote(silence_id, safe='')}", "read silence")
        try:
            return _silence(_object(body))
        except (KeyError, TypeError, ValueError) as e:
            raise self._unreadable("the silence", e) from e

    def create_silence(
        self,
        matchers: Sequence[Matcher],
        *,
        ends_at: datetime,
        created_by: str,
        comment: str,
        starts_at: datetime | None = None,
    ) -> str:
        """A new silence from now (or `starts_at`) until `ends_at`; returns its id."""
        if not matchers:
            raise AlertmanagerError("a silence needs at least one matcher")
        payload = {
            "matchers": [
                {"name": m.name, "value": m.value, "isRegex": m.regex, "isEqual": m.equal}
                for m in matchers
            ],
            "startsAt": _iso(starts_at or datetime.now(UTC)),
            "endsAt": _iso(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        body = self._json("POST", "/api/v2/silences", "create the silence", json=payload)
        silence_id = _object(body).get("silenceID")
        if not isinstance(silence_id, str) or not silence_id:
            raise AlertmanagerError(f"{self.base_url} created a silence but sent no silenceID")
        return silence_id

    def expire_silence(self, silence_id: str) -> None:
        """End a silence now; expiring one that has already ended is no error."""
        self._json("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}", "expire silence")

    def status(self) -> dict[str, Any]:
        """Alertmanager's `/api/v2/status`: version, uptime, cluster, config."""
        return _object(self._json("GET", "/api/v2/status", "read the status"))

    # -- HTTP --------------------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        action: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, params=list(params), json=json)
        except httpx.TimeoutException as e:
            raise AlertmanagerUnavailableError(
                f"Alertmanager at {self.base_url} did not answer in time ({action}); "
                "try again shortly"
            ) from e
        except httpx.HTTPError as e:
            raise AlertmanagerUnavailableError(
                f"Alertmanager at {self.base_url} cannot be reached ({action}: "
                f"{type(e).__name__}); try again shortly, or check alerts.alertmanager_url "
                "in settings.yaml"
            ) from e
        self._check(response, action)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as e:
            raise self._unreadable(action, e) from e

    def _check(self, response: httpx.Response, action: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _detail(response)
        if status == 404 or "not found" in detail.lower():
            # Alertmanager 0.25 answers 500 "silence not found" when expiring an unknown id.
            raise AlertmanagerError(f"Alertmanager cannot {action}: {detail}")
        if status in (401, 403):
            raise AlertmanagerError(
                f"Alertmanager refused to {action} (HTTP {status}): check "
                "OPSGATE_ALERTMANAGER_API_TOKEN and alerts.alertmanager_auth"
            )
        if status >= 500 or status == 429:
            raise AlertmanagerUnavailableError(
                f"Alertmanager at {self.base_url} failed to {action} (HTTP {status}: {detail}); "
                "try again shortly",
                retry_after=_retry_after(response),
            )
        raise AlertmanagerError(f"Alertmanager refused to {action} (HTTP {status}): {detail}")

    def _unreadable(self, what: str, error: Exception) -> AlertmanagerError:
        return AlertmanagerError(
            f"{self.base_url} does not answer like Alertmanager's API v2 ({what}: {error})"
        )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _iso(at: datetime) -> str:
    if at.utcoffset() is None:
        raise AlertmanagerError("silence times must be timezone-aware")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _list(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise AlertmanagerError("Alertmanager sent something other than a list of objects")
    return body


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AlertmanagerError("Alertmanager sent something other than a JSON object")
    return body


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _alert(item: Mapping[str, Any]) -> Alert:
    status = item.get("status") or {}
    ends = item.get("endsAt")
    return Alert(
        fingerprint=str(item["fingerprint"]),
        labels=_strings(item["labels"]),
        annotations=_strings(item.get("annotations")),
        starts_at=_time(item["startsAt"]),
        # Go's zero time means "no end" in some versions' answers.
        ends_at=_time(ends) if isinstance(ends, str) and not ends.startswith("0001-") else None,
        generator_url=str(item.get("generatorURL") or ""),
        state=str(status.get("state", "unprocessed")),
        silenced_by=tuple(map(str, status.get("silencedBy") or ())),
        inhibited_by=tuple(map(str, status.get("inhibitedBy") or ())),
    )


def _silence(item: Mapping[str, Any]) -> Silence:
    updated = item.get("updatedAt")
    return Silence(
        id=str(item["id"]),
        state=str((item.get("status") or {}).get("state", "")),
        matchers=tuple(
            Matcher(
                name=str(m["name"]),
                value=str(m["value"]),
                regex=bool(m.get("isRegex", False)),
                equal=bool(m.get("isEqual", True)),
            )
            for m in item["matchers"]
        ),
        starts_at=_time(item["startsAt"]),
        ends_at=_time(item["endsAt"]),
        created_by=str(item.get("createdBy", "")),
        comment=str(item.get("comment", "")),
        updated_at=_time(updated) if updated else None,
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:_DETAIL_CHARS] or response.reason_phrase
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])[:_DETAIL_CHARS]
    return str(body)[:_DETAIL_CHARS]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
