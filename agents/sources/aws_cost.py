"""The AWS bill as a CostSource: Cost Explorer's daily unblended cost, read through boto3.

This is the only module that imports boto3 or botocore (an import-linter contract says so);
everything it raises is an AgentError whose message is safe to show in chat:

- throttled (ThrottlingException, LimitExceededException, RequestLimitExceeded):
  TemporaryAgentError, with `retry_after` when AWS sent a Retry-After header;
- endpoint unreachable or timing out, no credentials, an AWS 5xx: SourceUnavailableError;
- anything else AWS refuses (DataUnavailableException, an unknown tag key, access denied):
  SourceError carrying AWS's own message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import boto3
import botocore.exceptions as aws
from botocore.config import Config
from pydantic import SecretStr

from agents.errors import AgentConfigError, SourceError, SourceUnavailableError, TemporaryAgentError
from agents.sources.base import CostRow

__all__ = ["UNTAGGED", "AwsCostSource"]

UNTAGGED = "(untagged)"
_METRIC = "UnblendedCost"
_THROTTLING = frozenset({"ThrottlingException", "LimitExceededException", "RequestLimitExceeded"})
_MAX_PAGES = 500  # a year of daily rows for a few hundred groups; more means a paging loop


class AwsCostSource:
    """Daily unblended cost from AWS Cost Explorer, by AWS service or by a cost-allocation tag.

    Without `access_key_id`/`secret_access_key` boto3's usual chain applies (instance role,
    web identity, shared config). `endpoint_url` points the client elsewhere: a VPC endpoint,
    or a local fake in tests.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        access_key_id: SecretStr | None = None,
        secret_access_key: SecretStr | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        label: str = "AWS Cost Explorer",
    ) -> None:
        problems = []
        if (access_key_id is None) != (secret_access_key is None):
            problems.append("access_key_id and secret_access_key: give both or neither")
        if max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {max_attempts}")
        if problems:
            raise AgentConfigError(problems)
        self.label = label
        session = boto3.session.Session()  # not the shared default one: sessions aren't thread-safe
        self._client = session.client(
            "ce",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=_reveal(access_key_id),
            aws_secret_access_key=_reveal(secret_access_key),
            config=Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )

    def daily_costs(self, *, start: date, end: date, group_by: str) -> list[CostRow]:
        """Rows for each day in [start, end), one per group with a cost that day."""
        group = _group_definition(group_by)
        if end <= start:
            return []
        request: dict[str, Any] = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Granularity": "DAILY",
            "Metrics": [_METRIC],
            "GroupBy": [group],
        }
        totals: dict[tuple[date, str, str], float] = {}
        token: str | None = None
        for _ in range(_MAX_PAGES):
            page = self._get(request if token is None else {**request, "NextPageToken": token})
            for day, name, amount, unit in _page_rows(page, tagged=group["Type"] == "TAG"):
                totals[(day, name, unit)] = totals.get((day, name, unit), 0.0) + amount
            token = page.get("NextPageToken") or None
            if token is None:
                return [
                    CostRow(day=d, group=g, amount=a, unit=u) for (d, g, u), a in totals.items()
                ]
        raise SourceError(f"{self.label} kept paging past {_MAX_PAGES} pages; ask for fewer days")

    def _get(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        where = self._client.meta.endpoint_url
        try:
            page: Mapping[str, Any] = self._client.get_cost_and_usage(**request)
        except aws.ClientError as e:
            raise _client_error(self.label, e) from e
        except (aws.NoCredentialsError, aws.PartialCredentialsError) as e:
            raise SourceUnavailableError(
                self.label, "no AWS credentials: set access_key_id and secret_access_key"
            ) from e
        except aws.CredentialRetrievalError as e:
            raise SourceUnavailableError(self.label, f"cannot load AWS credentials: {e}") from e
        except (aws.ConnectionError, aws.HTTPClientError) as e:
            raise SourceUnavailableError(self.label, f"cannot reach {where}: {e}") from e
        except aws.BotoCoreError as e:
            raise SourceError(f"{self.label} refused the request: {e}") from e
        return page


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _group_definition(group_by: str) -> dict[str, str]:
    if group_by == "service":
        return {"Type": "DIMENSION", "Key": "SERVICE"}
    if group_by.startswith("tag:") and group_by[4:].strip():
        return {"Type": "TAG", "Key": group_by[4:].strip()}
    raise SourceError(f"cannot group the bill by {group_by!r}: use 'service' or 'tag:<key>'")


def _page_rows(page: Mapping[str, Any], *, tagged: bool) -> list[tuple[date, str, float, str]]:
    rows = []
    try:
        for result in page.get("ResultsByTime", []):
            day = date.fromisoformat(result["TimePeriod"]["Start"][:10])
            for group in result.get("Groups", []):
                name = group["Keys"][0]
                if tagged:
                    # Cost Explorer answers "key$value"; "key$" is cost without that tag.
                    name = name.partition("$")[2] or UNTAGGED
                cost = group["Metrics"][_METRIC]
                rows.append((day, name, float(cost["Amount"]), str(cost.get("Unit", "USD"))))
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise SourceError(f"Cost Explorer sent a result this source cannot read: {e!r}") from e
    return rows


def _client_error(label: str, error: aws.ClientError) -> Exception:
    details = error.response.get("Error", {})
    code = str(details.get("Code", "Unknown"))
    message = str(details.get("Message") or code)
    meta = error.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    if code in _THROTTLING:
        return TemporaryAgentError(
            f"{label} is throttling requests ({code}): {message}",
            retry_after=_retry_after(meta.get("HTTPHeaders", {})),
        )
    if status >= 500:
        return SourceUnavailableError(label, f"AWS answered {status} {code}: {message}")
    return SourceError(f"{label} refused the request ({code}): {message}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; rare enough from AWS that the caller's backoff will do
