"""Named signals from a real Prometheus: each signal's PromQL template run as a range query.

`query_range` runs any PromQL (a dashboard panel's, an alert's) the same way, for /graph and
the alert enricher.

This is the only module that imports prometheus_api_client. Everything it raises is an
AgentError whose message is safe to show in chat:

- Prometheus refuses connections, takes longer than `timeout`, or answers 5xx (or 429):
  SourceUnavailableError, with `retry_after` when a Retry-After header came along;
- a query Prometheus rejects (400 bad_data, 422 execution error), an unknown signal, a bad
  range, a template that returns more than one series: SourceError saying what to change.

Prometheus refuses range queries of more than 11,000 points. A range that would need more at
the asked step is answered at the smallest whole multiple of that step that fits (every k-th
point of the asked grid); the returned Series carries the step actually used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from string import Template
from typing import Any

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from agents.errors import AgentConfigError, SourceError, SourceUnavailableError
from agents.sources.base import FloatArray, Series, grid_size

__all__ = ["MAX_POINTS", "PrometheusSource"]

MAX_POINTS = 11_000
_PLACEHOLDERS = frozenset({"service", "env"})


class PrometheusSource:
    """A MetricsSource over one Prometheus; `signals` maps a signal name to its PromQL.

    In a template `$service` and `$env` expand to the values asked for, escaped for the inside
    of a double-quoted PromQL string, so write them between quotes: `{service="$service"}`.
    """

    def __init__(
        self,
        *,
        url: str,
        signals: Mapping[str, str],
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        label: str = "Prometheus",
    ) -> None:
        problems = [
            f"signals.{name}: {why}" for name, text in signals.items() if (why := _flaw(text))
        ]
        if timeout <= 0:
            problems.append(f"timeout must be positive, got {timeout}")
        if problems:
            raise AgentConfigError(problems)
        self._templates = {name: Template(text) for name, text in signals.items()}
        self._label = label
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._session.verify = verify_tls
        # The client turns every non-200 into one exception type; raising here keeps the
        # status code and Prometheus's own error text.
        self._session.hooks["response"].append(_raise_for_status)
        self._client = PrometheusConnect(
            url=self._url,
            headers=dict(headers) if headers else None,
            # No retries (requests' own default): a failure reaches the caller at once, and
            # TemporaryAgentError is how callers retry.
            retry=Retry(total=0, read=False),
            session=self._session,
            timeout=timeout,
        )

    @property
    def label(self) -> str:
        return self._label

    def signals(self) -> tuple[str, ...]:
        return tuple(self._templates)

    def series(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        template = self._templates.get(signal)
        if template is None:
            raise SourceError(
                f"unknown signal {signal!r}; {self._label} knows {', '.join(self._templates)}"
            )
        used, size = _grid(start, end, step)
        values = np.full(size, np.nan)
        if size:
            query = template.substitute(service=_quoted(service), env=_quoted(env))
            found = self._query(f"signal {signal!r}", query, start, used, size)
            if len(found) > 1:
                raise SourceError(
                    f"signal {signal!r} returned {len(found)} series for {service}/{env}, not "
                    "one: aggregate its PromQL to one series (e.g. wrap it in sum(...)) under "
                    "signals: in config/targets.yaml"
                )
            if found:
                values = _on_grid(found[0]["values"], start, used, size)
        return Series(
            signal=signal, service=service, env=env, start=start, step=used, values=values
        )

    def query_range(
        self, expr: str, *, start: datetime, end: datetime, step: timedelta
    ) -> list[tuple[dict[str, str], Series]]:
        """Any PromQL over a range: each result series' labels and its samples on the grid.

        The Series' `signal` is "query"; `service` and `env` are the series' labels of those
        names, or "". Raises like `series`.
        """
        used, size = _grid(start, end, step)
        if not size:
            return []
        found = self._query("the query", expr, start, used, size)
        results = []
        for item in found:
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            values = _on_grid(item.get("values") or (), start, used, size)
            series = Series(
                signal="query",
                service=labels.get("service", ""),
                env=labels.get("env", ""),
                start=start,
                step=used,
                values=values,
            )
            results.append((labels, series))
        return results

    def healthy(self) -> bool:
        """Whether Prometheus answers its readiness probe (`/-/ready`) within the timeout."""
        try:
            self._session.get(f"{self._url}/-/ready", timeout=self._timeout)
        except requests.RequestException:
            return False
        return True

    def close(self) -> None:
        self._client.close()

    def _query(
        self, what: str, query: str, first: datetime, step: timedelta, size: int
    ) -> list[dict[str, Any]]:
        last = first + step * (size - 1)
        try:
            found: list[dict[str, Any]] = self._client.custom_query_range(
                query,
                start_time=first,
                end_time=last,
                step=repr(step.total_seconds()),
                # The client rounds start and end to whole seconds; Prometheus takes milliseconds.
                params={"start": f"{first.timestamp():.3f}", "end": f"{last.timestamp():.3f}"},
            )
        except requests.HTTPError as e:
            raise self._refusal(what, e.response) from e
        except requests.Timeout as e:
            raise SourceUnavailableError(
                self._label, f"no answer from {self._url} within {self._timeout:g} s"
            ) from e
        except requests.ConnectionError as e:
            raise SourceUnavailableError(self._label, f"cannot connect to {self._url}") from e
        except (requests.JSONDecodeError, KeyError, PrometheusApiClientException) as e:
            raise SourceError(f"{self._url} does not answer like the Prometheus API: {e}") from e
        except requests.RequestException as e:
            raise SourceUnavailableError(self._label, f"cannot query {self._url}: {e}") from e
        return found

    def _refusal(self, what: str, response: requests.Response | None) -> Exception:
        status = response.status_code if response is not None else 0
        detail = _error_text(response)
        if status >= 500 or status == 429:
            return SourceUnavailableError(
                self._label, f"HTTP {status}: {detail}", retry_after=_retry_after(response)
            )
        return SourceError(f"{self._label} rejected {what} (HTTP {status}): {detail}")


def _grid(start: datetime, end: datetime, step: timedelta) -> tuple[timedelta, int]:
    """The step actually used (a multiple of `step` within MAX_POINTS) and the grid's size."""
    if start.utcoffset() is None or end.utcoffset() is None:
        raise SourceError("start and end must be timezone-aware (UTC)")
    if step <= timedelta(0):
        raise SourceError(f"step must be positive, got {step}")
    if end < start:
        raise SourceError(f"end {end.isoformat()} is before start {start.isoformat()}")
    used = step * max(1, -(-grid_size(start, end, step) // MAX_POINTS))
    return used, grid_size(start, end, used)


def _on_grid(
    samples: Iterable[Sequence[Any]], start: datetime, step: timedelta, size: int
) -> FloatArray:
    """Prometheus' [time, "value"] pairs placed on the grid; NaN where none fell."""
    values = np.full(size, np.nan)
    origin, seconds = start.timestamp(), step.total_seconds()
    for at, value in samples:
        index = round((float(at) - origin) / seconds)
        if 0 <= index < size:
            values[index] = float(value)
    return values


def _quoted(value: str) -> str:
    """`value` for the inside of a double-quoted PromQL string; it can never end the string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _flaw(text: str) -> str | None:
    template = Template(text)
    if not template.is_valid():
        return "a $ that starts no placeholder; only $service and $env expand ($$ is a $)"
    unknown = sorted(set(template.get_identifiers()) - _PLACEHOLDERS)
    if unknown:
        return f"unknown placeholder ${unknown[0]}; only $service and $env expand"
    return None


def _raise_for_status(response: requests.Response, *args: object, **kwargs: object) -> None:
    response.raise_for_status()


def _error_text(response: requests.Response | None) -> str:
    if response is None:
        return "no response"
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:300] or response.reason


def _retry_after(response: requests.Response | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the caller's own backoff will do
