"""The Prometheus rules: promtool accepts them, their unit tests pass, and every alert is tested."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.observability._support import (
    REPO_ROOT,
    RULE_FILES,
    RULE_TEST_FILES,
    RUNBOOK_URL_PREFIX,
    RUNBOOKS_DIR,
    SEVERITIES,
    alert_key,
    alerting_rules,
    binary,
    load_yaml,
    rules,
    run,
)

# Alerts about a thing no service owns: a node's disk, a volume claim, the whole bill.
WITHOUT_SERVICE = {
    "NodeFilesystemFillingUp",
    "PersistentVolumeFillingUp",
    "CloudCostOverDailyBudget",
}
RECORD_NAME = re.compile(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+")
ALERT_NAME = re.compile(r"[A-Z][A-Za-z0-9]+")


def _rule_tests() -> list[tuple[Path, dict[str, Any]]]:
    """(test file, alert_rule_test) for every alert case of every promtool test file."""
    return [
        (path, case)
        for path in RULE_TEST_FILES
        for group in load_yaml(path)["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def test_there_are_rules_and_unit_tests() -> None:
    assert RULE_FILES, "no observability/prometheus-rules/*.rules.yaml"
    assert RULE_TEST_FILES, "no observability/prometheus-rules/tests/*.test.yaml"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = run([binary("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = run([binary("promtool"), "test", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rules_file_is_loaded_by_a_unit_test() -> None:
    loaded = {
        (path.parent / name).resolve()
        for path in RULE_TEST_FILES
        for name in load_yaml(path)["rule_files"]
    }
    untested = [path.name for path in RULE_FILES if path.resolve() not in loaded]
    assert not untested, f"no promtool test file loads {untested}"


def test_every_alert_fires_in_a_unit_test() -> None:
    fired = {
        (case["alertname"], str(alert["exp_labels"].get("severity")))
        for _, case in _rule_tests()
        for alert in case.get("exp_alerts") or []
    }
    defined = {alert_key(rule) for _, rule in alerting_rules()}
    assert defined, "no alerting rules found"
    missing = sorted(defined - fired)
    assert not missing, f"(alert, severity) never expected to fire in a promtool test: {missing}"


def test_every_alert_has_a_unit_test_where_it_does_not_fire() -> None:
    quiet: set[tuple[str, str]] = set()
    for _, case in _rule_tests():
        firing = {str(a["exp_labels"].get("severity")) for a in case.get("exp_alerts") or []}
        quiet.update((case["alertname"], s) for s in SEVERITIES if s not in firing)
    defined = {alert_key(rule) for _, rule in alerting_rules()}
    missing = sorted(defined - quiet)
    assert not missing, f"(alert, severity) without a promtool case where it stays quiet: {missing}"


def test_workload_alerts_carry_a_service_label() -> None:
    """Alertmanager groups by service, and opsgate routes and enriches by it."""
    unlabelled = sorted(
        {
            (case["alertname"], str(path.name))
            for path, case in _rule_tests()
            for alert in case.get("exp_alerts") or []
            if "service" not in alert["exp_labels"] and case["alertname"] not in WITHOUT_SERVICE
        }
    )
    assert not unlabelled, f"alerts firing without a service label: {unlabelled}"


@pytest.mark.parametrize(
    ("path", "rule"),
    [pytest.param(path, rule, id="-".join(alert_key(rule))) for path, rule in alerting_rules()],
)
def test_alert_has_severity_summary_description_and_runbook(
    path: Path, rule: dict[str, Any]
) -> None:
    name = rule["alert"]
    assert ALERT_NAME.fullmatch(name), f"{name}: alert names are CamelCase"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, (
        f"{name}: severity not in {SEVERITIES}"
    )
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name} in {path.name} has no {key}"
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_URL_PREFIX), (
        f"{name}: runbook_url should start {RUNBOOK_URL_PREFIX}"
    )
    runbook = REPO_ROOT / "observability" / "runbooks" / url.removeprefix(RUNBOOK_URL_PREFIX)
    assert runbook.is_file(), f"{name}: {url} names {runbook}, which does not exist"
    assert runbook.read_text(encoding="utf-8").startswith(f"# {name}\n"), (
        f"{runbook.name} should open with the heading '# {name}'"
    )


def test_every_runbook_belongs_to_an_alert() -> None:
    linked = {
        rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL_PREFIX)
        for _, rule in alerting_rules()
    }
    orphans = sorted(p.name for p in RUNBOOKS_DIR.glob("*.md") if p.name not in linked)
    assert not orphans, f"runbooks no alert links to: {orphans}"


def test_recording_rules_are_named_level_metric_operation() -> None:
    records = [rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule]
    assert records
    bad = [name for name in records if not RECORD_NAME.fullmatch(name)]
    assert not bad, f"recording rules not named level:metric:operations: {bad}"
    assert len(records) == len(set(records)), "a recording rule is defined twice"


def test_cost_budget_is_cost_watchers_daily_budget() -> None:
    """The alert and CostWatcher's findings must disagree on nothing but timing."""
    agents = load_yaml(REPO_ROOT / "config" / "agents.yaml")
    budget = agents["agents"]["CostWatcher"]["settings"]["daily_budget"]
    (expr,) = [
        rule["expr"] for _, rule in alerting_rules() if rule["alert"] == "CloudCostOverDailyBudget"
    ]
    match = re.fullmatch(r"sum\(aws_cost_daily_usd\) > ([0-9.]+)", expr.strip())
    assert match, f"unexpected CloudCostOverDailyBudget expression: {expr!r}"
    assert float(match.group(1)) == float(budget), (
        f"CloudCostOverDailyBudget uses {match.group(1)} USD, config/agents.yaml {budget} USD"
    )
