"""Risk assessment on its own: each factor's level and reason, the level rule, freeze windows
(UTC, start included, end excluded), determinism, and the policy.yaml keys it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from approval_engine.config import Freeze, PolicyConfig, load_model
from approval_engine.errors import ConfigError
from approval_engine.model import EditedKnob, Risk, RiskLevel, Scalar
from approval_engine.risk import Factor, assess, combine, freeze_until
from tests.approval_engine._support import CONFIG_DIR, REPO_ROOT

LOW, MEDIUM, HIGH, CRITICAL = RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL
NOW = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday noon
VALUES = "helm-charts/checkout/values-prod.yaml"
DATABASES = "terraform/environments/prod/databases.tf"
DATABASES_TF = (REPO_ROOT / DATABASES).read_text(encoding="utf-8")  # orders_db: multi_az = true
SINGLE_AZ_TF = DATABASES_TF.replace("multi_az              = true", "multi_az              = false")


def policy(**overrides: Any) -> PolicyConfig:
    data: dict[str, Any] = {
        "environments": {"staging": {"quorum": 1}, "prod": {"quorum": 2, "production": True}}
    }
    return PolicyConfig.model_validate(data | overrides)


def helm(key: str, old: Scalar, new: Scalar, *, knob: str = "") -> EditedKnob:
    return EditedKnob(knob=knob or key.rsplit(".", 1)[-1], path=VALUES, key=key, old=old, new=new)


def tf(key: str, old: Scalar, new: Scalar, *, path: str = DATABASES) -> EditedKnob:
    return EditedKnob(knob=key.rsplit(".", 1)[-1], path=path, key=key, old=old, new=new)


def rate(
    *knobs: EditedKnob,
    env: str = "staging",
    stateful: bool = False,
    confidence: float | None = None,
    text: str = DATABASES_TF,
    config: PolicyConfig | None = None,
    now: datetime = NOW,
) -> Risk:
    return assess(
        env=env,
        knobs=knobs,
        files={DATABASES: text},
        stateful=stateful,
        confidence=confidence,
        policy=config or policy(),
        now=now,
    )


def reason_for(risk: Risk, fragment: str) -> str:
    found = [r for r in risk.reasons if fragment in r]
    assert len(found) == 1, f"{fragment!r} in {risk.reasons}"
    return found[0]


# --- the level rule ---------------------------------------------------------------------------


def test_the_level_is_the_highest_factor_and_its_reason_comes_first() -> None:
    risk = combine([Factor(LOW, "a"), Factor(HIGH, "b"), Factor(MEDIUM, "c"), Factor(HIGH, "d")])

    assert risk == Risk(level=HIGH, reasons=("b", "d", "c", "a"))
    assert risk.summary() == "high — b; d; c; a"


def test_no_factor_at_all_is_low() -> None:
    assert combine([]) == Risk(level=LOW, reasons=())


def test_levels_rank_low_medium_high_critical() -> None:
    assert [lv.rank for lv in (LOW, MEDIUM, HIGH, CRITICAL)] == [0, 1, 2, 3]


def test_the_same_change_rates_the_same_every_time() -> None:
    knobs = (
        helm("autoscaling.minReplicas", 12, 3),
        helm("resources.requests.cpu", "500m", "400m"),
        tf("module.orders_db.instance_class", "db.r6g.xlarge", "db.r6g.large"),
    )

    risks = {rate(*knobs, env="prod", confidence=0.6) for _ in range(5)}

    assert len(risks) == 1


# --- environment ------------------------------------------------------------------------------


def test_a_production_environment_rates_medium_and_others_low() -> None:
    raise_floor = helm("autoscaling.minReplicas", 2, 4)

    assert rate(raise_floor, env="prod").level == MEDIUM
    assert "prod environment" in rate(raise_floor, env="prod").reasons
    assert rate(raise_floor, env="staging").level == LOW
    assert "staging environment" in rate(raise_floor).reasons


# --- capacity and cost ------------------------------------------------------------------------


def test_a_large_floor_cut_in_prod_is_high_and_says_by_how_much() -> None:
    risk = rate(helm("autoscaling.minReplicas", 12, 3), env="prod")

    assert risk.level == HIGH
    assert risk.reasons[0] == "lowers minReplicas 12 → 3 (−75 % capacity)"


@pytest.mark.parametrize(
    ("env", "old", "new", "level"),
    [
        ("staging", 12, 3, MEDIUM),  # −75 %: large, outside production
        ("staging", 4, 3, LOW),  # −25 %: small
        ("prod", 4, 3, MEDIUM),
        ("prod", 4, 2, HIGH),  # exactly large_cut (50 %) counts as large
    ],
)
def test_capacity_cuts_rate_by_size_and_environment(
    env: str, old: int, new: int, level: RiskLevel
) -> None:
    assert rate(helm("autoscaling.maxReplicas", old, new), env=env).level == level


def test_a_capacity_increase_is_low_and_says_it_costs_more() -> None:
    risk = rate(helm("replicaCount", 2, 4, knob="replicas"))

    assert risk.level == LOW
    assert "raises replicaCount 2 → 4 (+100 % capacity; costs more)" in risk.reasons


def test_cpu_requests_compare_as_kubernetes_quantities() -> None:
    cut = rate(helm("resources.requests.cpu", "1", "250m", knob="cpu_request"), env="prod")
    more = rate(helm("resources.requests.cpu", "500m", "1", knob="cpu_request"))

    assert cut.level == HIGH
    assert "lowers requests.cpu 1 → 250m (−75 % capacity)" in cut.reasons
    assert "raises requests.cpu 500m → 1 (+100 % capacity; costs more)" in more.reasons


def test_a_higher_hpa_target_leaves_less_headroom() -> None:
    key = "autoscaling.targetCPUUtilizationPercentage"

    risk = rate(helm(key, 70, 90, knob="target_cpu"), env="prod")

    assert risk.level == MEDIUM
    assert reason_for(risk, "targetCPU") == (
        "raises targetCPUUtilizationPercentage 70 → 90 (less headroom: −22 % capacity)"
    )
    assert "costs more" in reason_for(rate(helm(key, 70, 50)), "targetCPU")


def test_turning_autoscaling_off_is_high_in_prod() -> None:
    risk = rate(helm("autoscaling.enabled", True, False, knob="hpa_enabled"), env="prod")

    assert risk.level == HIGH
    assert risk.reasons[0] == "turns autoscaling off (autoscaling.enabled true → false)"


def test_a_value_risk_cannot_compare_is_medium() -> None:
    risk = rate(helm("autoscaling.minReplicas", 2, "lots"))

    assert risk.level == MEDIUM
    assert "which risk cannot size" in risk.reasons[0]


def test_a_knob_no_rule_knows_is_medium() -> None:
    risk = rate(helm("image.tag", "1.14.2", "1.15.0", knob="image"))

    assert risk.level == MEDIUM
    assert (
        risk.reasons[0]
        == "changes tag 1.14.2 → 1.15.0, which no risk rule knows: review it by hand"
    )


# --- databases and other stateful Terraform ---------------------------------------------------


def test_downsizing_a_multi_az_database_fails_over_and_names_the_capacity_cut() -> None:
    risk = rate(
        tf("module.orders_db.instance_class", "db.r6g.2xlarge", "db.r6g.large"),
        env="prod",
        stateful=True,
    )

    assert risk.level == HIGH
    assert (
        risk.reasons[0] == "downsizes instance_class db.r6g.2xlarge → db.r6g.large (−75 % capacity)"
    )
    assert (
        "instance_class change fails module.orders_db over to its Multi-AZ standby (about a minute)"
        in risk.reasons
    )


def test_resizing_a_single_az_database_means_downtime() -> None:
    knob = tf("module.orders_db.instance_class", "db.t4g.large", "db.r6g.xlarge")

    prod = rate(knob, env="prod", stateful=True, text=SINGLE_AZ_TF)
    staging = rate(knob, env="staging", stateful=True, text=SINGLE_AZ_TF)

    assert prod.level == HIGH
    assert (
        prod.reasons[0]
        == "instance_class change restarts module.orders_db with downtime (not Multi-AZ)"
    )
    assert "upsizes instance_class db.t4g.large → db.r6g.xlarge (+100 % capacity; costs more)" in (
        prod.reasons
    )
    assert staging.level == MEDIUM


def test_a_move_to_a_burstable_class_of_the_same_size_is_called_out() -> None:
    risk = rate(tf("module.orders_db.instance_class", "db.r6g.large", "db.t4g.large"), env="prod")

    assert risk.level == MEDIUM
    assert "to a burstable class" in reason_for(risk, "db.t4g.large")


@pytest.mark.parametrize("attribute", ["engine", "identifier", "storage_encrypted"])
def test_an_argument_that_replaces_a_stateful_resource_is_critical_in_prod(attribute: str) -> None:
    knob = tf(f"module.orders_db.{attribute}", "a", "b")

    assert rate(knob, env="prod", stateful=True).level == CRITICAL
    assert rate(knob, env="staging", stateful=True).level == HIGH
    assert (
        "a stateful resource: its data is lost unless restored"
        in (rate(knob, env="prod", stateful=True).reasons[0])
    )


def test_a_resource_type_in_the_table_is_stateful_even_outside_a_database_target() -> None:
    knob = tf("aws_db_instance.reports.engine", "postgres", "mysql", path="main.tf")

    risk = rate(knob, env="prod", stateful=False)

    assert risk.level == CRITICAL
    assert "replaces aws_db_instance.reports, a stateful resource" in risk.reasons[0]


def test_replacing_something_stateless_is_less_than_critical() -> None:
    knob = tf("aws_launch_template.web.identifier", "a", "b", path="main.tf")

    assert rate(knob, env="prod").level == HIGH


def test_shrinking_storage_replaces_the_database_and_growing_it_costs_more() -> None:
    shrink = rate(tf("module.orders_db.allocated_storage", 100, 50), env="prod", stateful=True)
    grow = rate(tf("module.orders_db.allocated_storage", 100, 200), env="staging", stateful=True)

    assert shrink.level == CRITICAL
    assert shrink.reasons[0].startswith(
        "shrinking allocated_storage 100 → 50 (storage cannot shrink in place) replaces "
        "module.orders_db"
    )
    assert grow.level == LOW
    assert "grows allocated_storage 100 → 200 GiB in place (costs more)" in grow.reasons


def test_an_engine_upgrade_has_downtime() -> None:
    assert rate(tf("module.orders_db.engine_version", "15", "16"), env="prod").level == HIGH


@pytest.mark.parametrize(
    ("attribute", "old", "new", "staging", "prod"),
    [
        ("deletion_protection", True, False, HIGH, CRITICAL),
        ("deletion_protection", False, True, LOW, MEDIUM),
        ("skip_final_snapshot", False, True, MEDIUM, HIGH),
        ("multi_az", True, False, MEDIUM, HIGH),
        ("multi_az", False, True, LOW, MEDIUM),
        ("backup_retention_period", 30, 7, LOW, MEDIUM),
        ("backup_retention_period", 7, 0, HIGH, CRITICAL),
        ("publicly_accessible", False, True, CRITICAL, CRITICAL),
        ("publicly_accessible", True, False, LOW, MEDIUM),
    ],
)
def test_protection_and_exposure_arguments(
    attribute: str, old: Scalar, new: Scalar, staging: RiskLevel, prod: RiskLevel
) -> None:
    knob = tf(f"module.orders_db.{attribute}", old, new)

    assert rate(knob, env="staging", stateful=True).level == staging
    assert rate(knob, env="prod", stateful=True).level == prod


def test_turning_deletion_protection_off_says_so() -> None:
    risk = rate(tf("module.orders_db.deletion_protection", True, False), stateful=True)

    assert risk.reasons[0] == (
        "turns deletion protection off for module.orders_db (deletion_protection true → false)"
    )


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_a_value_open_to_the_whole_internet_is_critical_whatever_the_key(cidr: str) -> None:
    knob = tf("aws_security_group_rule.db.cidr_block", "10.0.0.0/8", cidr, path="network.tf")

    risk = rate(knob)

    assert risk.level == CRITICAL
    assert risk.reasons[0] == (
        f"opens cidr_block of aws_security_group_rule.db to the whole internet ({cidr})"
    )


# --- how many targets -------------------------------------------------------------------------


def test_the_number_of_resources_touched_counts_files_and_terraform_blocks() -> None:
    floor = helm("autoscaling.minReplicas", 2, 3)
    ceiling = helm("autoscaling.maxReplicas", 6, 8)
    hpa = tf("module.search_hpa.min_replicas", 2, 3, path="terraform/environments/prod/hpa.tf")
    db = tf("module.orders_db.allocated_storage", 100, 120)

    assert not any("touches" in r for r in rate(floor, ceiling).reasons)  # one values file
    two = rate(floor, hpa)
    assert two.level == LOW
    assert f"touches 2 resources: {VALUES}, module.search_hpa" in two.reasons
    three = rate(floor, hpa, db)
    assert three.level == MEDIUM
    assert reason_for(three, "touches").startswith("touches 3 resources")


# --- confidence -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "level", "reason"),
    [
        (None, LOW, None),
        (0.95, LOW, "proposer's confidence 0.95"),
        (0.8, LOW, "proposer's confidence 0.80"),  # the threshold itself is not below it
        (0.79, MEDIUM, "proposer's confidence 0.79 is below 0.8"),
        (0.42, HIGH, "proposer's confidence 0.42 is below 0.5"),
    ],
)
def test_low_confidence_raises_the_level(
    confidence: float | None, level: RiskLevel, reason: str | None
) -> None:
    risk = rate(helm("autoscaling.minReplicas", 2, 3), confidence=confidence)

    assert risk.level == level
    if reason is None:
        assert not any("confidence" in r for r in risk.reasons)
    else:
        assert reason in risk.reasons


def test_the_thresholds_come_from_policy_yaml() -> None:
    strict = policy(
        risk={"rules": {"large_cut": 0.2, "confidence": {"medium_below": 0.95, "high_below": 0.9}}}
    )

    assert rate(helm("autoscaling.minReplicas", 4, 3), config=strict).level == MEDIUM
    assert rate(helm("autoscaling.minReplicas", 2, 3), confidence=0.85, config=strict).level == (
        HIGH
    )


# --- freezes ----------------------------------------------------------------------------------


BLACK_FRIDAY = {
    "name": "black-friday",
    "envs": ["prod"],
    "start": "2026-11-26T00:00:00Z",
    "end": "2026-11-30T08:00:00Z",
}
WEEKEND = {"name": "weekend", "envs": ["prod"], "weekly": "fri 16:00 - mon 08:00"}


def test_a_freeze_makes_a_change_in_its_environment_critical_and_says_until_when() -> None:
    config = policy(freezes=[BLACK_FRIDAY])
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)

    risk = rate(helm("autoscaling.minReplicas", 2, 3), env="prod", config=config, now=at)

    assert risk.level == CRITICAL
    assert risk.reasons[0] == "inside freeze 'black-friday' until 2026-11-30 08:00 UTC"
    other_env = rate(helm("autoscaling.minReplicas", 2, 3), env="staging", config=config, now=at)
    assert other_env.level == LOW


@pytest.mark.parametrize(
    ("at", "until"),
    [
        ("2026-11-25T23:59:59Z", None),
        ("2026-11-26T00:00:00Z", "2026-11-30T08:00:00Z"),  # the start is inside
        ("2026-11-30T07:59:59Z", "2026-11-30T08:00:00Z"),
        ("2026-11-30T08:00:00Z", None),  # the end is not
        ("2026-11-30T09:59:00+02:00", "2026-11-30T08:00:00Z"),  # 07:59 UTC
    ],
)
def test_an_absolute_freeze_holds_from_its_start_to_just_before_its_end(
    at: str, until: str | None
) -> None:
    freeze = Freeze.model_validate(BLACK_FRIDAY)

    found = freeze_until(freeze, datetime.fromisoformat(at))

    assert found == (datetime.fromisoformat(until) if until else None)


@pytest.mark.parametrize(
    ("at", "until"),
    [
        ("2026-01-09T15:59:00", None),  # Friday, a minute before
        ("2026-01-09T16:00:00", "2026-01-12T08:00:00"),  # Friday 16:00: inside
        ("2026-01-10T12:00:00", "2026-01-12T08:00:00"),  # Saturday
        ("2026-01-11T23:59:59", "2026-01-12T08:00:00"),  # Sunday, the week wraps
        ("2026-01-12T00:00:00", "2026-01-12T08:00:00"),  # Monday midnight
        ("2026-01-12T07:59:59", "2026-01-12T08:00:00"),
        ("2026-01-12T08:00:00", None),  # Monday 08:00: over
        ("2026-01-07T12:00:00", None),  # Wednesday
    ],
)
def test_a_weekly_freeze_wraps_the_week_in_utc(at: str, until: str | None) -> None:
    freeze = Freeze.model_validate(WEEKEND)

    found = freeze_until(freeze, datetime.fromisoformat(at).replace(tzinfo=UTC))

    assert found == (datetime.fromisoformat(until).replace(tzinfo=UTC) if until else None)


def test_a_weekly_freeze_reads_the_clock_in_utc_whatever_its_zone() -> None:
    freeze = Freeze.model_validate(WEEKEND)
    friday_17_berlin = datetime.fromisoformat("2026-01-09T17:00:00+01:00")  # 16:00 UTC
    friday_16_new_york = datetime.fromisoformat("2026-01-09T16:00:00-05:00")  # 21:00 UTC
    friday_10_tokyo = datetime.fromisoformat("2026-01-10T00:30:00+09:00")  # Fri 15:30 UTC

    assert freeze_until(freeze, friday_17_berlin) is not None
    assert freeze_until(freeze, friday_16_new_york) is not None
    assert freeze_until(freeze, friday_10_tokyo) is None


def test_a_weekly_window_inside_one_week() -> None:
    freeze = Freeze(name="deploy-standup", weekly="Tue 09:00 - tue 09:30")

    assert freeze_until(freeze, datetime(2026, 1, 6, 9, 15, tzinfo=UTC)) == datetime(
        2026, 1, 6, 9, 30, tzinfo=UTC
    )
    assert freeze_until(freeze, datetime(2026, 1, 6, 9, 30, tzinfo=UTC)) is None
    assert freeze_until(freeze, datetime(2026, 1, 13, 9, 0, tzinfo=UTC)) is not None


def test_a_freeze_without_envs_freezes_every_environment() -> None:
    config = policy(freezes=[{"name": "all-hands", "weekly": "wed 11:00 - wed 13:00"}])

    assert rate(helm("autoscaling.minReplicas", 2, 3), config=config).level == CRITICAL


def test_a_datetime_without_an_offset_is_utc() -> None:
    freeze = Freeze.model_validate(BLACK_FRIDAY | {"start": "2026-11-26 00:00"})

    assert freeze.start == datetime(2026, 11, 26, tzinfo=UTC)


# --- policy.yaml ------------------------------------------------------------------------------


def test_the_repository_policy_loads_with_risk_and_freezes() -> None:
    config = load_model(CONFIG_DIR / "policy.yaml", PolicyConfig)

    assert config.environments["prod"].production is True
    assert config.risk.high.quorum_at_least == 2
    assert config.risk.critical.approver_role == "admin"


def test_critical_needs_an_admin_even_when_policy_yaml_does_not_say() -> None:
    assert policy().risk.critical.approver_role == "admin"
    assert policy(risk={"critical": {"quorum_at_least": 3}}).risk.critical.approver_role == "admin"


@pytest.mark.parametrize(
    ("freeze", "problem"),
    [
        ({"name": "x", "weekly": "friday 16:00 - mon 08:00"}, "is not a weekly window"),
        ({"name": "x", "weekly": "fri 25:00 - mon 08:00"}, "is not a weekly window"),
        ({"name": "x", "weekly": "fri 16:00 - fri 16:00"}, "starts where it ends"),
        ({"name": "x", "start": "2026-11-26T00:00:00Z"}, "needs `start` and `end`"),
        (
            {"name": "x", "start": "2026-11-26T00:00:00Z", "end": "2026-11-25T00:00:00Z"},
            "`end` must be after `start`",
        ),
        (BLACK_FRIDAY | {"weekly": "fri 16:00 - mon 08:00"}, "not both"),
        (BLACK_FRIDAY | {"envs": ["qa"]}, "names environment 'qa'"),
    ],
)
def test_a_malformed_freeze_is_a_config_error_naming_the_problem(
    tmp_path: Path, freeze: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "environments: {prod: {quorum: 2}}\nfreezes:\n"
        + "".join(
            f"  {'-' if i == 0 else ' '} {k}: {v!r}\n" for i, (k, v) in enumerate(freeze.items())
        ),
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as caught:
        load_model(path, PolicyConfig)

    assert problem in str(caught.value)
    assert str(path) in str(caught.value)


def test_two_freezes_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two freezes are named 'weekend'"):
        policy(freezes=[WEEKEND, WEEKEND])


def test_yaml_timestamps_load_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "environments: {prod: {quorum: 2}}\n"
        "freezes:\n"
        "  - name: bf\n"
        "    start: 2026-11-26T01:00:00+01:00\n"
        "    end: 2026-11-30T08:00:00Z\n",
        encoding="utf-8",
    )

    freeze = load_model(path, PolicyConfig).freezes[0]

    assert freeze.start == datetime(2026, 11, 26, tzinfo=UTC)
    assert freeze.end is not None and freeze.end - freeze.start == timedelta(days=4, hours=8)
