"""AwsCostSource against moto's Cost Explorer server and a loopback stub that answers like AWS."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agents.errors import AgentConfigError, SourceError, SourceUnavailableError, TemporaryAgentError
from agents.sources.aws_cost import AwsCostSource
from agents.sources.base import CostRow

ACCOUNT = "123456789012"  # moto's default account, which the static results go to
KEY = SecretStr("testing")
NOV_20, NOV_21, NOV_22 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)


def day_result(day: date, groups: dict[str, str]) -> dict[str, Any]:
    """One ResultsByTime entry as Cost Explorer returns it: amounts are strings."""
    return {
        "TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()},
        "Total": {},
        "Groups": [
            {"Keys": [key], "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}}
            for key, amount in groups.items()
        ],
        "Estimated": False,
    }


def page(*days: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ResultsByTime": list(days), "DimensionValueAttributes": []}
    if token is not None:
        body["NextPageToken"] = token
    return body


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_ce(moto_server: str) -> str:
    """The moto endpoint with an empty Cost Explorer: no queued or remembered results."""
    httpx.post(f"{moto_server}/moto-api/reset").raise_for_status()
    return moto_server


def queue_results(endpoint: str, *responses: dict[str, Any]) -> None:
    """Moto's documented way to say what the next get_cost_and_usage calls answer."""
    reply = httpx.post(
        f"{endpoint}/moto-api/static/ce/cost-and-usage-results", json={"results": list(responses)}
    )
    assert reply.status_code == 201, reply.text


def requests_seen() -> list[dict[str, Any]]:
    """The request bodies moto's Cost Explorer answered, in order (the server runs in-process)."""
    from moto.ce.models import ce_backends

    return [json.loads(body) for body in ce_backends[ACCOUNT]["global"].cost_usage_results]


def source(endpoint: str, **options: Any) -> AwsCostSource:
    return AwsCostSource(endpoint_url=endpoint, access_key_id=KEY, secret_access_key=KEY, **options)


def test_groups_by_aws_service(moto_ce: str) -> None:
    queue_results(
        moto_ce,
        page(
            day_result(
                NOV_20, {"Amazon Elastic Compute Cloud - Compute": "101.25", "AWS KMS": "0"}
            ),
            day_result(NOV_21, {"Amazon Relational Database Service": "37.4"}),
        ),
    )

    rows = source(moto_ce).daily_costs(start=NOV_20, end=NOV_22, group_by="service")

    assert rows == [
        CostRow(day=NOV_20, group="Amazon Elastic Compute Cloud - Compute", amount=101.25),
        CostRow(day=NOV_20, group="AWS KMS", amount=0.0),
        CostRow(day=NOV_21, group="Amazon Relational Database Service", amount=37.4),
    ]
    [request] = requests_seen()
    assert request == {
        "TimePeriod": {"Start": "2026-11-20", "End": "2026-11-22"},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
    }


def test_groups_by_tag_value_and_names_untagged_cost(moto_ce: str) -> None:
    queue_results(
        moto_ce,
        page(
            day_result(NOV_21, {"service$checkout": "40.5", "service$cart": "12", "service$": "9"})
        ),
    )

    rows = source(moto_ce).daily_costs(start=NOV_21, end=NOV_22, group_by="tag:service")

    assert {r.group: r.amount for r in rows} == {"checkout": 40.5, "cart": 12.0, "(untagged)": 9.0}
    assert requests_seen()[0]["GroupBy"] == [{"Type": "TAG", "Key": "service"}]


def test_follows_next_page_token_across_two_responses(moto_ce: str) -> None:
    queue_results(
        moto_ce,
        page(day_result(NOV_20, {"service$checkout": "10"}), token="page-2"),
        page(
            day_result(NOV_20, {"service$search": "30"}), day_result(NOV_21, {"service$cart": "5"})
        ),
    )

    rows = source(moto_ce).daily_costs(start=NOV_20, end=NOV_22, group_by="tag:service")

    assert [(r.day, r.group, r.amount) for r in rows] == [
        (NOV_20, "checkout", 10.0),
        (NOV_20, "search", 30.0),
        (NOV_21, "cart", 5.0),
    ]
    first, second = requests_seen()
    assert "NextPageToken" not in first
    assert second == {**first, "NextPageToken": "page-2"}


def test_an_empty_range_asks_aws_nothing(moto_ce: str) -> None:
    assert source(moto_ce).daily_costs(start=NOV_21, end=NOV_21, group_by="service") == []
    assert requests_seen() == []


@pytest.mark.parametrize("group_by", ["team", "tag:", "SERVICE"])
def test_an_unknown_grouping_is_a_source_error(moto_ce: str, group_by: str) -> None:
    with pytest.raises(SourceError, match="use 'service' or 'tag:<key>'"):
        source(moto_ce).daily_costs(start=NOV_20, end=NOV_21, group_by=group_by)


def closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_endpoint_is_unavailable_quickly() -> None:
    endpoint = f"http://127.0.0.1:{closed_loopback_port()}"
    started = time.monotonic()

    with pytest.raises(SourceUnavailableError) as caught:
        source(endpoint, max_attempts=1, connect_timeout=1.0).daily_costs(
            start=NOV_20, end=NOV_21, group_by="service"
        )

    assert time.monotonic() - started < 5
    assert caught.value.source == "AWS Cost Explorer"
    assert endpoint in caught.value.reason
    assert "Traceback" not in str(caught.value)


def test_missing_credentials_are_unavailable_not_a_crash(
    moto_ce: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(SourceUnavailableError, match="no AWS credentials"):
        AwsCostSource(endpoint_url=moto_ce).daily_costs(
            start=NOV_20, end=NOV_21, group_by="service"
        )


def test_half_a_key_pair_is_a_config_error() -> None:
    with pytest.raises(AgentConfigError, match="give both or neither"):
        AwsCostSource(access_key_id=KEY)


@dataclass
class Refusal:
    """What the stub answers every request with, in Cost Explorer's JSON protocol."""

    endpoint: str = ""
    status: int = 400
    body: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def call(self) -> list[CostRow]:
        return source(self.endpoint, max_attempts=1).daily_costs(
            start=NOV_20, end=NOV_21, group_by="tag:service"
        )


@pytest.fixture
def refusing_aws() -> Iterator[Refusal]:
    """A loopback server that refuses like AWS does; the test sets status, body and headers."""
    refusal = Refusal()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = json.dumps(refusal.body).encode()
            self.send_response(refusal.status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("x-amzn-RequestId", "stub-request")
            for name, value in refusal.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    refusal.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield refusal
    server.shutdown()
    server.server_close()
    thread.join()


def test_throttling_is_temporary_and_carries_retry_after(
    refusing_aws: Refusal,
) -> None:
    refusing_aws.body = {"__type": "LimitExceededException", "message": "Rate exceeded"}
    refusing_aws.headers = {"Retry-After": "7"}

    with pytest.raises(TemporaryAgentError) as caught:
        refusing_aws.call()

    assert not isinstance(caught.value, SourceUnavailableError)
    assert caught.value.retry_after == 7.0
    assert "Rate exceeded" in str(caught.value)


def test_an_aws_5xx_is_unavailable(refusing_aws: Refusal) -> None:
    refusing_aws.status = 503
    refusing_aws.body = {"__type": "ServiceUnavailableException", "message": "try later"}

    with pytest.raises(SourceUnavailableError, match="503"):
        refusing_aws.call()


def test_data_unavailable_is_a_source_error_with_aws_message(
    refusing_aws: Refusal,
) -> None:
    refusing_aws.body = {
        "__type": "DataUnavailableException",
        "message": "Data is not available. Please try to adjust the time period.",
    }

    with pytest.raises(SourceError) as caught:
        refusing_aws.call()

    assert not isinstance(caught.value, TemporaryAgentError)
    assert "DataUnavailableException" in str(caught.value)
    assert "Please try to adjust the time period" in str(caught.value)
