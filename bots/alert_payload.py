"""Alertmanager's webhook payload, version 4, as prometheus.io documents it; validated strictly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["WebhookAlert", "WebhookPayload", "describe_errors"]

# Alertmanager's zero time.Time: a firing alert with no known end.
_ZERO_YEAR = 1


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class WebhookAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=8192)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,64}$")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a time without a zone; Alertmanager sends RFC 3339 with Z")
        if value.year == _ZERO_YEAR:
            return None
        return value.astimezone(UTC)


class WebhookPayload(_Payload):
    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1, max_length=16384)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=256)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=2048)
    alerts: list[WebhookAlert] = Field(min_length=1)


def describe_errors(error: ValidationError, *, limit: int = 5) -> str:
    """The first few problems as one line: `alerts.3.fingerprint: String should match …`."""
    items = error.errors()
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg']}"
        for item in items[:limit]
    ]
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(parts) + more
