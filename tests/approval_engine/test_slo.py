"""SLO checks: the before/after rules, the verdict, and the config schema with its errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from approval_engine.config import PolicyConfig, TargetsConfig, load_model
from approval_engine.slo import SloCheck, judge, show, verdict
from approval_engine.targets import Targets
from tests.approval_engine._support import CONFIG_DIR

ERRORS = SloCheck(max=0.02, worse_than_before_by=2.0, ignore_below=0.005)
LATENCY = SloCheck(max=500, worse_than_before_by=1.5)
CPU = SloCheck(max=90)


@pytest.mark.parametrize(
    ("signal", "check", "before", "after", "status", "why"),
    [
        ("latency_p95", LATENCY, 180, 200, "ok", "latency_p95 180 ms → 200 ms"),
        ("latency_p95", LATENCY, 180, 600, "degraded", "latency_p95 180 ms → 600 ms (max 500 ms)"),
        # at the threshold is still healthy; just above it is not
        ("latency_p95", LATENCY, 200, 300, "ok", "latency_p95 200 ms → 300 ms"),
        (
            "latency_p95",
            LATENCY,
            200,
            301,
            "degraded",
            "latency_p95 200 ms → 301 ms (1.5× worse; at most 1.5× allowed)",
        ),
        ("cpu", CPU, 65, 90, "ok", "cpu 65 % → 90 %"),
        ("cpu", CPU, 65, 91, "degraded", "cpu 65 % → 91 % (max 90 %)"),
        # a breach the change did not cause is not held against it, nor called healthy
        (
            "cpu",
            CPU,
            95,
            97,
            "breached before",
            "cpu 95 % → 97 %: above max 90 % before the change too",
        ),
        ("cpu", CPU, 95, 85, "ok", "cpu 95 % → 85 %"),
        # tiny values: 3× the errors, but below ignore_below
        ("error_ratio", ERRORS, 0.001, 0.003, "ok", "error_ratio 0.1 % → 0.3 %"),
        (
            "error_ratio",
            ERRORS,
            0.003,
            0.012,
            "degraded",
            "error_ratio 0.3 % → 1.2 % (4.0× worse; at most 2× allowed)",
        ),
        ("error_ratio", ERRORS, 0.0, 0.004, "ok", "error_ratio 0 % → 0.4 %"),
        ("error_ratio", ERRORS, 0.0, 0.03, "degraded", "error_ratio 0 % → 3 % (max 2 %)"),
        ("error_ratio", ERRORS, None, 0.5, "no data", "error_ratio: no data before the change"),
        (
            "error_ratio",
            ERRORS,
            None,
            None,
            "no data",
            "error_ratio: no data before and after the change",
        ),
    ],
)
def test_one_signal_before_and_after(
    signal: str,
    check: SloCheck,
    before: float | None,
    after: float | None,
    status: str,
    why: str,
) -> None:
    reading = judge(signal, check, before=before, after=after)
    assert (reading.status, reading.why) == (status, why)


def test_the_verdict_is_degraded_over_unknown_over_verified() -> None:
    ok = judge("cpu", CPU, before=60, after=61)
    bad = judge("cpu", CPU, before=60, after=160)
    unknown = judge("cpu", CPU, before=None, after=61)
    already = judge("cpu", CPU, before=95, after=96)
    assert verdict([ok, ok]) == "verified"
    assert verdict([ok, unknown]) == "unverified"
    assert verdict([ok, already]) == "unverified"
    assert verdict([unknown, bad, ok]) == "degraded"
    assert verdict([]) == "verified"


def test_values_are_shown_in_the_signals_units() -> None:
    assert show("error_ratio", 0.4123) == "41.2 %"
    assert show("latency_p95", 10_000) == "10,000 ms"
    assert show("requests", 123.456) == "123"


# --- schema -------------------------------------------------------------------------------


def test_factors_are_written_like_2x() -> None:
    assert SloCheck(worse_than_before_by="1.5x").worse_than_before_by == 1.5  # type: ignore[arg-type]
    assert SloCheck(worse_than_before_by=2).worse_than_before_by == 2.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "a check needs `max`, `worse_than_before_by`, or both"),
        ({"worse_than_before_by": "double"}, "'double' is not a factor like 2x or 1.5x"),
        ({"worse_than_before_by": "0.5x"}, "greater than 1"),
        ({"max": -1}, "greater than or equal to 0"),
        ({"max_ms": 500}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_check_is_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SloCheck.model_validate(data)


def test_a_service_replaces_or_drops_default_checks_and_databases_have_only_their_own() -> None:
    config = load_model(CONFIG_DIR / "targets.yaml", TargetsConfig)
    checkout = config.services["checkout"].model_copy(
        update={"slo": {"latency_p95": SloCheck(max=300), "cpu": None}}
    )
    db = config.services["orders-db"].model_copy(
        update={"slo": {"db_connections": SloCheck(max=90)}}
    )
    targets = Targets(
        config.model_copy(
            update={"services": {**config.services, "checkout": checkout, "orders-db": db}}
        )
    )

    assert targets.slo("checkout") == {
        "error_ratio": config.slo["error_ratio"],
        "latency_p95": SloCheck(max=300),
    }
    assert set(targets.slo("cart")) == {"error_ratio", "latency_p95", "cpu"}
    assert targets.slo("orders-db") == {"db_connections": SloCheck(max=90)}


def test_policy_keys_for_verification_rollback_and_budgets() -> None:
    policy = load_model(CONFIG_DIR / "policy.yaml", PolicyConfig)
    assert policy.verify_window.total_seconds() == 15 * 60
    assert (policy.rollback.fast_track, policy.rollback.quorum) == (True, 1)
    assert policy.environments["prod"].daily_changes == 10
