"""Helm values editing: one scalar changes, every other byte of the file stays."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ruamel.yaml import YAML

from approval_engine.editors import edit_helm_value, read_helm_value, unified_diff
from approval_engine.errors import EditError
from tests.approval_engine.editors._support import TRICKY_TEXT, only_changed_line

PATH = "helm-charts/checkout/values-prod.yaml"

VALUES = """\
# Default values for checkout.
# This is a YAML-formatted file.
---
replicaCount: 2

image:
  repository: "ghcr.io/acme/checkout"
  tag: '1.4.2'   # pinned by release
  pullPolicy: IfNotPresent

nameOverride: ""

serviceAccount:
  create: true
  annotations:
    eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/checkout"

podAnnotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: "9090"

autoscaling:
  enabled: true
  minReplicas: 2  # floor for zone spread
  maxReplicas: 10
  targetCPUUtilizationPercentage: 70
  # tuned after the Black Friday incident
  scaleDownStabilizationSeconds: 300

resources:
  limits: {cpu: 500m, memory: 512Mi}
  requests:
    cpu: 250m
    memory: 256Mi

env:
  - name: LOG_LEVEL
    value: info
  - name: FEATURE_FLAGS
    value: "checkout-v2,fast-cart"

ingress:
  enabled: false
  className: nginx
  host: checkout.example.com
  tlsSecret:
  canaryWeight: 0.25

config: |
  listen: 0.0.0.0:8080
  workers: 4

defaults: &defaults
  timeoutSeconds: 30
  retries: 3
payments:
  <<: *defaults
  retries: 5
"""


def edit(key: str, value: int | float | bool | str, text: str = VALUES) -> str:
    return edit_helm_value(text, key, value, path=PATH)


# --- reading ---


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("replicaCount", 2),
        ("image.repository", "ghcr.io/acme/checkout"),
        ("image.tag", "1.4.2"),
        ("image.pullPolicy", "IfNotPresent"),
        ("nameOverride", ""),
        ("serviceAccount.create", True),
        (
            "serviceAccount.annotations.eks.amazonaws.com/role-arn",
            ("arn:aws:iam::123456789012:role/checkout"),
        ),
        ("podAnnotations.prometheus.io/scrape", "true"),
        ("autoscaling.minReplicas", 2),
        ("ingress.canaryWeight", 0.25),
        ("resources.limits.cpu", "500m"),
        ("payments.retries", 5),
    ],
)
def test_reads_scalars_of_every_kind(key: str, expected: object) -> None:
    value = read_helm_value(VALUES, key, path=PATH)
    assert value == expected
    assert type(value) is type(expected)


def test_reads_a_key_inherited_through_a_merge_key() -> None:
    assert read_helm_value(VALUES, "payments.timeoutSeconds", path=PATH) == 30


# --- editing: only the value's characters change ---


def test_int_with_trailing_comment_keeps_the_comment() -> None:
    after = edit("autoscaling.minReplicas", 4)
    assert only_changed_line(VALUES, after) == (
        "  minReplicas: 2  # floor for zone spread",
        "  minReplicas: 4  # floor for zone spread",
    )
    assert read_helm_value(after, "autoscaling.minReplicas") == 4


def test_single_quoted_string_stays_single_quoted() -> None:
    after = edit("image.tag", "1.5.0")
    assert only_changed_line(VALUES, after) == (
        "  tag: '1.4.2'   # pinned by release",
        "  tag: '1.5.0'   # pinned by release",
    )


def test_single_quote_inside_single_quoted_string_is_doubled() -> None:
    after = edit("image.tag", "it's")
    assert only_changed_line(VALUES, after)[1] == "  tag: 'it''s'   # pinned by release"
    assert read_helm_value(after, "image.tag") == "it's"


def test_double_quoted_string_stays_double_quoted_and_escaped() -> None:
    after = edit("image.repository", 'ghcr.io/acme/"checkout"\\v2')
    assert only_changed_line(VALUES, after)[1] == (
        '  repository: "ghcr.io/acme/\\"checkout\\"\\\\v2"'
    )
    assert read_helm_value(after, "image.repository") == 'ghcr.io/acme/"checkout"\\v2'


def test_plain_string_stays_plain() -> None:
    after = edit("image.pullPolicy", "Always")
    assert only_changed_line(VALUES, after)[1] == "  pullPolicy: Always"


@pytest.mark.parametrize("text", ["yes", "on", "No", "true", "1.2", "0x1F", "1:20", "2024-01-01"])
def test_plain_string_that_would_read_as_another_type_gets_quoted(text: str) -> None:
    # go-yaml (Helm) follows YAML 1.1, where yes/on/no are booleans and 1:20 is a number.
    after = edit("image.pullPolicy", text)
    assert only_changed_line(VALUES, after)[1] == f'  pullPolicy: "{text}"'
    assert read_helm_value(after, "image.pullPolicy") == text


def test_string_with_a_line_break_is_escaped_on_one_line() -> None:
    after = edit("image.tag", "a\nb")
    assert only_changed_line(VALUES, after)[1] == '  tag: "a\\nb"   # pinned by release'
    assert read_helm_value(after, "image.tag") == "a\nb"


def test_quoted_string_key_becomes_a_plain_boolean_when_asked() -> None:
    after = edit("podAnnotations.prometheus.io/scrape", False)
    assert only_changed_line(VALUES, after)[1] == "  prometheus.io/scrape: false"


def test_bool_float_and_int_are_written_as_yaml_does() -> None:
    assert only_changed_line(VALUES, edit("ingress.enabled", True))[1] == "  enabled: true"
    assert only_changed_line(VALUES, edit("ingress.canaryWeight", 0.5))[1] == (
        "  canaryWeight: 0.5"
    )
    assert only_changed_line(VALUES, edit("ingress.canaryWeight", 1e-05))[1] == (
        "  canaryWeight: 1.0e-05"
    )
    assert only_changed_line(VALUES, edit("replicaCount", 12))[1] == "replicaCount: 12"


def test_number_asked_for_as_text_is_quoted() -> None:
    after = edit("replicaCount", "3")
    assert only_changed_line(VALUES, after)[1] == 'replicaCount: "3"'
    assert read_helm_value(after, "replicaCount") == "3"


def test_value_inside_a_flow_mapping() -> None:
    after = edit("resources.limits.cpu", "1")
    assert only_changed_line(VALUES, after)[1] == '  limits: {cpu: "1", memory: 512Mi}'
    after = edit("resources.limits.memory", "1Gi")
    assert only_changed_line(VALUES, after)[1] == "  limits: {cpu: 500m, memory: 1Gi}"


def test_empty_value_is_filled_in() -> None:
    after = edit("ingress.tlsSecret", "checkout-tls")
    assert only_changed_line(VALUES, after) == ("  tlsSecret:", "  tlsSecret: checkout-tls")


def test_key_with_dots_in_its_name() -> None:
    arn = "arn:aws:iam::123456789012:role/checkout-v2"
    after = edit("serviceAccount.annotations.eks.amazonaws.com/role-arn", arn)
    assert only_changed_line(VALUES, after)[1] == f'    eks.amazonaws.com/role-arn: "{arn}"'


def test_key_that_overrides_a_merged_one() -> None:
    after = edit("payments.retries", 7)
    assert only_changed_line(VALUES, after) == ("  retries: 5", "  retries: 7")


def test_setting_the_current_value_returns_the_text_unchanged() -> None:
    assert edit("autoscaling.minReplicas", 2) == VALUES
    assert edit("image.tag", "1.4.2") == VALUES
    assert edit("serviceAccount.create", True) == VALUES


def test_true_is_not_the_same_value_as_one() -> None:
    text = "flag: 1\n"
    assert edit_helm_value(text, "flag", True) == "flag: true\n"


def test_crlf_line_endings_survive() -> None:
    crlf = VALUES.replace("\n", "\r\n")
    after = edit("autoscaling.maxReplicas", 20, crlf)
    assert after == crlf.replace("  maxReplicas: 10\r\n", "  maxReplicas: 20\r\n")


def test_byte_order_mark_survives() -> None:
    text = "\ufeffreplicaCount: 2 # x\n"
    assert edit_helm_value(text, "replicaCount", 3) == "\ufeffreplicaCount: 3 # x\n"


def flat(text: str) -> dict[str, object]:
    """Every scalar in the file by dotted key, as Helm would see it (merge keys applied)."""
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{prefix}{i}.")
        else:
            out[prefix[:-1]] = (type(node).__name__, node)

    walk(YAML(typ="safe").load(text), "")
    return out


def test_every_key_round_trips_and_leaves_the_rest_alone() -> None:
    wishes: list[tuple[str, int | float | bool | str]] = [
        ("replicaCount", 5),
        ("image.repository", "registry.example.com/checkout"),
        ("image.tag", "2.0.0-rc.1"),
        ("image.pullPolicy", "Never"),
        ("nameOverride", "shop"),
        ("serviceAccount.create", False),
        ("podAnnotations.prometheus.io/port", "9102"),
        ("autoscaling.enabled", False),
        ("autoscaling.minReplicas", 3),
        ("autoscaling.maxReplicas", 30),
        ("autoscaling.targetCPUUtilizationPercentage", 65),
        ("autoscaling.scaleDownStabilizationSeconds", 600),
        ("resources.limits.memory", "1Gi"),
        ("resources.requests.cpu", "300m"),
        ("resources.requests.memory", "384Mi"),
        ("ingress.className", "traefik"),
        ("ingress.host", "shop.example.com"),
        ("ingress.tlsSecret", "shop-tls"),
        ("ingress.canaryWeight", 0.1),
        ("defaults.retries", 4),
        ("payments.retries", 6),
    ]
    original = flat(VALUES)
    for key, value in wishes:
        after = edit(key, value)
        only_changed_line(VALUES, after)
        assert read_helm_value(after, key) == value, key
        assert flat(after) == {**original, key: (type(value).__name__, value)}, key


SMALL = """\
image:
  tag: '1.4.2'   # pinned
  repository: "ghcr.io/acme/checkout"
  pullPolicy: IfNotPresent
limits: {cpu: 500m, memory: 512Mi}
"""


@pytest.mark.parametrize("key", ["image.tag", "image.repository", "image.pullPolicy", "limits.cpu"])
def test_tricky_text_round_trips_in_every_quoting_style(key: str) -> None:
    for text in TRICKY_TEXT:
        after = edit(key, text, SMALL)
        only_changed_line(SMALL, after)
        assert read_helm_value(after, key) == text, text


# --- refusals ---


def refusal(key: str, value: object = 1, text: str = VALUES) -> str:
    with pytest.raises(EditError) as caught:
        edit_helm_value(text, key, value, path=PATH)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{PATH}: {key}: "), message
    return message


def test_missing_key_names_the_keys_that_exist() -> None:
    message = refusal("autoscaling.minReplica")
    assert "no such key" in message
    assert "minReplicas" in message
    assert "maxReplicas" in message


def test_missing_top_level_key() -> None:
    assert "no such key; the top level has: replicaCount, image" in refusal("replicas")


def test_mapping_is_not_a_single_value() -> None:
    assert "is a mapping, not a single value" in refusal("autoscaling")


def test_list_is_not_a_single_value() -> None:
    assert "is a list, not a single value" in refusal("env")


def test_items_of_a_list_cannot_be_addressed() -> None:
    assert "'env' is a list, not a mapping of keys" in refusal("env.0.value")


def test_mapping_inside_a_flow_sequence_is_refused() -> None:
    text = "tolerations: [{key: spot, effect: NoSchedule}]\n"
    assert "'tolerations' is a list" in refusal("tolerations.0.effect", "NoExecute", text)


def test_flow_mapping_spread_over_lines_is_edited_in_place() -> None:
    text = "limits: {cpu: 500m,  # burst\n  memory: 512Mi}\n"
    after = edit("limits.memory", "1Gi", text)
    assert after == text.replace("512Mi", "1Gi")


def test_key_below_a_scalar() -> None:
    assert "'replicaCount' is a single value" in refusal("replicaCount.max")


def test_block_string_is_refused() -> None:
    assert "multi-line block string" in refusal("config", "listen: 0.0.0.0:9090")


def test_key_inherited_through_a_merge_key_is_refused() -> None:
    assert "merge key (<<)" in refusal("payments.timeoutSeconds", 60)


def test_edit_that_would_change_merged_copies_too_is_refused() -> None:
    message = refusal("defaults.timeoutSeconds", 60)
    assert "payments.timeoutSeconds" in message


def test_anchored_scalar_is_refused() -> None:
    text = "base: &port 8080\nservice:\n  port: *port\n"
    assert "anchor" in refusal("service.port", 9090, text)
    assert "anchor" in refusal("base", 9090, text)


def test_explicitly_tagged_scalar_is_refused() -> None:
    assert "tag" in refusal("port", 81, "port: !!str 80\n")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: [1\n", "not valid YAML (line 2"),
        ("a: 1\na: 2\n", 'found duplicate key "a"'),
        ("a: 1\n---\na: 2\n", "expected a single document"),
        ("a: b: c\n", "not valid YAML (line 1"),
        ("", "the file is empty"),
        ("# nothing here\n", "the file is empty"),
        ("- a\n- b\n", "the top level is a list"),
    ],
)
def test_broken_or_unusual_files_are_refused(text: str, reason: str) -> None:
    assert reason in refusal("a", 1, text)


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, float("nan"), float("inf")])
def test_values_a_scalar_cannot_hold_are_refused(value: object) -> None:
    refusal("replicaCount", value)


@pytest.mark.parametrize("key", ["", ".", "autoscaling.", "autoscaling..minReplicas"])
def test_malformed_keys_are_refused(key: str) -> None:
    assert "give a dotted key" in refusal(key)


def test_reading_null_or_a_date_is_refused() -> None:
    with pytest.raises(EditError, match="has no value"):
        read_helm_value(VALUES, "ingress.tlsSecret", path=PATH)
    with pytest.raises(EditError, match="not a number, true/false or text"):
        read_helm_value("released: 2024-01-01\n", "released")


def test_edit_error_keeps_the_parser_error_as_its_cause() -> None:
    with pytest.raises(EditError) as caught:
        edit_helm_value("a: [1\n", "a", 2)
    assert caught.value.__cause__ is not None


# --- golden diffs, as a reviewer sees them in the PR ---


def test_golden_int_with_trailing_comment(golden: Callable[[str, str], None]) -> None:
    after = edit("autoscaling.minReplicas", 4)
    golden("editors/helm_min_replicas.diff", unified_diff(PATH, VALUES, after))


def test_golden_quoted_string(golden: Callable[[str, str], None]) -> None:
    after = edit("image.tag", "1.5.0")
    golden("editors/helm_image_tag.diff", unified_diff(PATH, VALUES, after))
