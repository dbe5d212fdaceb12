"""Loading config/: durations, and a ConfigError naming file, key and reason for each problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from approval_engine.config import (
    PolicyConfig,
    ServiceLimits,
    TargetsConfig,
    UsersConfig,
    load_model,
    parse_duration,
)
from approval_engine.errors import ConfigError
from approval_engine.targets import Targets
from tests.approval_engine._support import CONFIG_DIR

PROD_ONLY = "environments: {prod: {quorum: 2}}\n"


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, model: type[PolicyConfig | TargetsConfig | UsersConfig]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_model(path, model)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        (" 90 s ", timedelta(seconds=90)),
    ],
)
def test_durations_are_written_with_a_unit(tmp_path: Path, text: str, expected: timedelta) -> None:
    path = write(tmp_path, PROD_ONLY + f"proposal_ttl: '{text}'\nsync_timeout: {text.strip()}\n")

    policy = load_model(path, PolicyConfig)

    assert (policy.proposal_ttl, policy.sync_timeout) == (expected, expected)


def test_a_bare_number_of_seconds_is_taken_as_pydantic_takes_it(tmp_path: Path) -> None:
    policy = load_model(write(tmp_path, PROD_ONLY + "sync_timeout: 600\n"), PolicyConfig)

    assert policy.sync_timeout == timedelta(minutes=10)


@pytest.mark.parametrize("text", ["5 weeks", "1.5h", "-5m", "5", "", "h", "5x"])
def test_a_duration_without_a_known_unit_names_file_key_and_reason(
    tmp_path: Path, text: str
) -> None:
    path = write(tmp_path, PROD_ONLY + f"proposal_ttl: '{text}'\n")

    assert problems(path, PolicyConfig) == [
        f"{path}: proposal_ttl: Value error, {text!r} is not a duration like 30s, 15m, 24h or 7d"
    ]


def test_parse_duration_leaves_non_strings_to_pydantic() -> None:
    assert parse_duration(timedelta(hours=1)) == timedelta(hours=1)
    assert parse_duration(60) == 60


@pytest.mark.parametrize("value", ["0s", "-5"])
def test_a_duration_that_is_not_positive_is_refused(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, PROD_ONLY + f"proposal_ttl: {value}\n")

    assert "proposal_ttl" in problems(path, PolicyConfig)[0]


# --- files that are broken ------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"

    assert problems(path, PolicyConfig) == [f"{path}: file not found"]


def test_a_missing_optional_file_gives_the_defaults(tmp_path: Path) -> None:
    limits = load_model(tmp_path / "limits.yaml", ServiceLimits, missing_ok=True)

    assert limits == ServiceLimits(min_replicas=1, max_replicas=50)


def test_a_missing_optional_file_whose_model_needs_values_is_still_a_config_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.yaml"

    with pytest.raises(ConfigError, match=f"{path}: environments: Field required"):
        load_model(path, PolicyConfig, missing_ok=True)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("environments: [unclosed\n", "line 1, column 15"),
        ("environments: {prod: {quorum: 2}}\nenvironments: {}\n", 'duplicate key "environments"'),
        ("environments:\n\tprod: {}\n", "line 2"),
    ],
    ids=["unclosed", "duplicate-key", "tab"],
)
def test_invalid_yaml_is_one_line_naming_the_file_and_where(
    tmp_path: Path, text: str, where: str
) -> None:
    path = write(tmp_path, text)

    [problem] = problems(path, PolicyConfig)

    assert problem.startswith(f"{path}: not valid YAML: ")
    assert where in problem
    assert "\n" not in problem


def test_a_file_that_is_not_a_mapping_is_refused_at_the_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, "- staging\n- prod\n")

    assert problems(path, PolicyConfig) == [f"{path}: (top level): expected a mapping, got list"]


def test_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")

    assert problems(path, PolicyConfig) == [f"{path}: environments: Field required"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "environments: {prod: {quorum: two}}\n",
            "environments.prod.quorum: Input should be a valid integer",
        ),
        (
            "environments: {prod: {quorom: 2}}\n",
            "environments.prod.quorom: Extra inputs are not permitted",
        ),
        (
            "environments: {prod: {quorum: 0}}\n",
            "environments.prod.quorum: Input should be greater than or equal to 1",
        ),
        (
            PROD_ONLY + "limits: {checkout: {max_replicas: many}}\n",
            "limits.checkout.max_replicas: Input should be a valid integer",
        ),
        (
            PROD_ONLY + "approve_role: wizard\n",
            "approve_role: Input should be 'viewer', 'operator', 'approver' or 'admin'",
        ),
        ("environments: prod\n", "environments: Input should be a valid dictionary"),
    ],
    ids=["not-a-number", "misspelt-key", "out-of-range", "nested", "not-a-role", "not-a-map"],
)
def test_a_wrong_value_names_file_key_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)

    [problem] = problems(path, PolicyConfig)

    assert problem.startswith(f"{path}: {expected}")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "environments: {prod: {quorum: 0}}\npropose_role: wizard\n")

    found = problems(path, PolicyConfig)

    assert [p.split(": ")[1] for p in found] == ["environments.prod.quorum", "propose_role"]


def test_a_knob_with_both_a_file_and_a_value_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "services:\n  cart:\n    environments: [prod]\n    knobs:\n"
        "      replicas: {file: values.yaml, key: replicaCount, value: 3}\n",
        name="targets.yaml",
    )

    assert problems(path, TargetsConfig) == [
        f"{path}: services.cart.knobs.replicas: Value error, "
        "a knob has either `file` and `key`, or `value`, not both"
    ]


def test_one_identity_claimed_by_two_people_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "people:\n  ann: {roles: [viewer], identities: ['slack:U1']}\n"
        "  ben: {roles: [admin], identities: ['slack:U1']}\n",
        name="users.yaml",
    )

    [problem] = problems(path, UsersConfig)

    assert problem.startswith(str(path))
    assert problem.endswith("identity slack:U1 is claimed by ann and ben")


# --- the repository's own config ------------------------------------------------------------


def test_the_shipped_policy_says_what_the_design_says() -> None:
    policy = load_model(CONFIG_DIR / "policy.yaml", PolicyConfig)

    assert {env: p.quorum for env, p in policy.environments.items()} == {"staging": 1, "prod": 2}
    assert (policy.proposal_ttl, policy.sync_timeout) == (
        timedelta(hours=24),
        timedelta(minutes=10),
    )
    assert policy.limits_for("checkout").max_replicas == 40
    assert policy.limits_for("cart").max_replicas == 30


def test_the_shipped_targets_resolve_merge_keys_and_overrides() -> None:
    targets = Targets(load_model(CONFIG_DIR / "targets.yaml", TargetsConfig))

    assert (
        targets.locate("search", "prod", "replicas").path == "helm-charts/search/values-prod.yaml"
    )
    assert targets.locate("search", "prod", "min_replicas").path == (
        "terraform/environments/prod/hpa.tf"
    )
    assert targets.locate("search", "prod", "hpa_enabled").constant is True
    assert targets.locate("cart", "staging", "min_replicas").key == "autoscaling.minReplicas"
    assert targets.app("checkout", "prod") == "checkout-prod"
