"""Terraform editing: one literal attribute changes, comments and layout stay."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import hcl2
import pytest

from approval_engine.editors import edit_terraform_value, read_terraform_value, unified_diff
from approval_engine.errors import EditError
from tests.approval_engine.editors._support import TRICKY_TEXT, only_changed_line

PATH = "terraform/environments/prod/main.tf"

# Written to be `terraform fmt` clean, with the traps a naive editor falls into: the same
# attribute name in a comment, a heredoc, an object and nested blocks, and braces, quotes and
# comment markers inside strings.
MAIN_TF = """\
# Production search stack.
# Owned by team-search; changes go through opsgate.

terraform {
  required_version = ">= 1.5.0"
}

locals {
  team        = "search"
  cost_center = "cc-1234" # finance tag
}

/*
 * Horizontal pod autoscaler for the search API.
 * min_replicas = 99 in this comment must not be touched { }
 */
module "search_hpa" {
  source = "../../modules/hpa"

  name      = "search-${local.team}"
  namespace = "search"
  # keep at least two pods, one per zone
  min_replicas = 2
  max_replicas = 12 // raised after the 2024 sale
  target_cpu   = 0.7
  enabled      = true

  labels = {
    "app.kubernetes.io/name" = "search"
    min_replicas             = "not this one"
  }

  behavior {
    scale_down {
      min_replicas = 1
    }
    stabilization_window_seconds = 300
  }

  description = <<-EOT
    Scales the search API. } { "
    min_replicas = 42 # not an attribute
  EOT

  note = "braces { } and # hash // slashes \\"quoted\\""
}

module "checkout_hpa" {
  source       = "../../modules/hpa"
  min_replicas = 3
  max_replicas = var.checkout_max
}

resource "aws_db_instance" "orders" {
  identifier        = "orders-prod"
  engine            = "postgres"
  instance_class    = "db.t3.medium"
  allocated_storage = 100
  multi_az          = true

  tags = merge(local.tags, { Name = "orders" })

  lifecycle { prevent_destroy = true }

  timeouts {
    create = "40m"
  }
}

resource "aws_eks_node_group" "default" {
  cluster_name = module.eks.cluster_name

  scaling_config {
    desired_size = 3
    min_size     = 2
    max_size     = 6
  }
}
"""

Wish = int | float | bool | str


def edit(address: str, value: Wish, text: str = MAIN_TF) -> str:
    return edit_terraform_value(text, address, value, path=PATH)


# --- reading ---


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("terraform.required_version", ">= 1.5.0"),
        ("locals.cost_center", "cc-1234"),
        ("module.search_hpa.min_replicas", 2),
        ("module.search_hpa.max_replicas", 12),
        ("module.search_hpa.target_cpu", 0.7),
        ("module.search_hpa.enabled", True),
        ("module.search_hpa.note", 'braces { } and # hash // slashes "quoted"'),
        ("module.search_hpa.behavior.stabilization_window_seconds", 300),
        ("module.search_hpa.behavior.scale_down.min_replicas", 1),
        ("module.checkout_hpa.min_replicas", 3),
        ("resource.aws_db_instance.orders.instance_class", "db.t3.medium"),
        ("aws_db_instance.orders.allocated_storage", 100),
        ("resource.aws_db_instance.orders.lifecycle.prevent_destroy", True),
        ("resource.aws_db_instance.orders.timeouts.create", "40m"),
        ("resource.aws_eks_node_group.default.scaling_config.desired_size", 3),
    ],
)
def test_reads_literals_of_every_kind(address: str, expected: Wish) -> None:
    value = read_terraform_value(MAIN_TF, address, path=PATH)
    assert value == expected
    assert type(value) is type(expected)


# --- editing: only the value's characters change ---


def test_int_below_a_comment_line() -> None:
    after = edit("module.search_hpa.min_replicas", 4)
    assert only_changed_line(MAIN_TF, after) == ("  min_replicas = 2", "  min_replicas = 4")
    # The same name in the comment, the object, the heredoc and the nested block stays.
    assert read_terraform_value(after, "module.search_hpa.behavior.scale_down.min_replicas") == 1
    assert "min_replicas = 99 in this comment" in after
    assert "min_replicas = 42 # not an attribute" in after
    assert 'min_replicas             = "not this one"' in after


def test_int_with_trailing_comment() -> None:
    after = edit("module.search_hpa.max_replicas", 20)
    assert only_changed_line(MAIN_TF, after) == (
        "  max_replicas = 12 // raised after the 2024 sale",
        "  max_replicas = 20 // raised after the 2024 sale",
    )


def test_string() -> None:
    after = edit("resource.aws_db_instance.orders.instance_class", "db.r6g.large")
    assert only_changed_line(MAIN_TF, after) == (
        '  instance_class    = "db.t3.medium"',
        '  instance_class    = "db.r6g.large"',
    )


def test_alignment_of_equals_signs_is_kept() -> None:
    after = edit("resource.aws_eks_node_group.default.scaling_config.min_size", 10)
    assert only_changed_line(MAIN_TF, after) == ("    min_size     = 2", "    min_size     = 10")


def test_bool_and_float() -> None:
    after = edit("module.search_hpa.enabled", False)
    assert only_changed_line(MAIN_TF, after)[1] == "  enabled      = false"
    after = edit("module.search_hpa.target_cpu", 0.85)
    assert only_changed_line(MAIN_TF, after)[1] == "  target_cpu   = 0.85"


def test_nested_blocks() -> None:
    after = edit("module.search_hpa.behavior.scale_down.min_replicas", 2)
    assert only_changed_line(MAIN_TF, after) == ("      min_replicas = 1", "      min_replicas = 2")
    after = edit("resource.aws_db_instance.orders.timeouts.create", "60m")
    assert only_changed_line(MAIN_TF, after)[1] == '    create = "60m"'


def test_one_line_block() -> None:
    after = edit("resource.aws_db_instance.orders.lifecycle.prevent_destroy", False)
    assert only_changed_line(MAIN_TF, after)[1] == "  lifecycle { prevent_destroy = false }"


def test_short_resource_address_as_terraform_writes_it() -> None:
    assert edit("aws_db_instance.orders.allocated_storage", 200) == edit(
        "resource.aws_db_instance.orders.allocated_storage", 200
    )


def test_string_with_quotes_backslashes_and_template_sigils_is_escaped() -> None:
    wanted = 'say "hi" \\ to ${name} and %{ if x }'
    after = edit("module.search_hpa.note", wanted)
    assert only_changed_line(MAIN_TF, after)[1] == (
        '  note = "say \\"hi\\" \\\\ to $${name} and %%{ if x }"'
    )
    assert read_terraform_value(after, "module.search_hpa.note") == wanted


def test_setting_the_current_value_returns_the_text_unchanged() -> None:
    assert edit("module.search_hpa.min_replicas", 2) == MAIN_TF
    assert edit("module.search_hpa.min_replicas", 2.0) == MAIN_TF  # one number type in HCL
    assert edit("resource.aws_db_instance.orders.instance_class", "db.t3.medium") == MAIN_TF


def test_true_is_not_the_same_value_as_one() -> None:
    assert edit_terraform_value("x = 1\n", "x", True) == "x = true\n"


def test_crlf_line_endings_survive() -> None:
    crlf = MAIN_TF.replace("\n", "\r\n")
    after = edit("module.checkout_hpa.min_replicas", 5, crlf)
    assert after == crlf.replace("min_replicas = 3\r\n", "min_replicas = 5\r\n")


def test_tfvars_top_level_attribute() -> None:
    tfvars = '# prod sizing\nmin_replicas = 2 # floor\ninstance_class = "db.t3.medium"\n'
    after = edit_terraform_value(tfvars, "min_replicas", 3, path="prod.tfvars")
    assert after == tfvars.replace("min_replicas = 2", "min_replicas = 3")


def test_locals_spread_over_several_blocks() -> None:
    text = 'locals {\n  a = 1\n}\n\nlocals {\n  b = "x"\n}\n'
    assert edit_terraform_value(text, "locals.b", "y") == text.replace('"x"', '"y"')


def test_value_at_end_of_file_without_newline() -> None:
    assert edit_terraform_value("x = 1", "x", 2) == "x = 2"


def test_every_attribute_round_trips_and_leaves_the_rest_alone() -> None:
    wishes: list[tuple[str, Wish]] = [
        ("terraform.required_version", ">= 1.6.0"),
        ("locals.team", "discovery"),
        ("locals.cost_center", "cc-9999"),
        ("module.search_hpa.source", "../../modules/hpa-v2"),
        ("module.search_hpa.namespace", "search-prod"),
        ("module.search_hpa.min_replicas", 6),
        ("module.search_hpa.max_replicas", 24),
        ("module.search_hpa.target_cpu", 0.55),
        ("module.search_hpa.enabled", False),
        ("module.search_hpa.behavior.stabilization_window_seconds", 120),
        ("module.search_hpa.behavior.scale_down.min_replicas", 2),
        ("module.search_hpa.note", "plain"),
        ("module.checkout_hpa.min_replicas", 4),
        ("resource.aws_db_instance.orders.identifier", "orders-prod-2"),
        ("resource.aws_db_instance.orders.instance_class", "db.m6g.xlarge"),
        ("resource.aws_db_instance.orders.allocated_storage", 500),
        ("resource.aws_db_instance.orders.multi_az", False),
        ("resource.aws_db_instance.orders.timeouts.create", "90m"),
        ("resource.aws_eks_node_group.default.scaling_config.desired_size", 4),
        ("resource.aws_eks_node_group.default.scaling_config.max_size", 9),
    ]
    for address, value in wishes:
        after = edit(address, value)
        only_changed_line(MAIN_TF, after)
        assert read_terraform_value(after, address) == value, address
        # python-hcl2, reading the whole file, sees that one attribute change and nothing else.
        changes = tree_changes(hcl2.loads(MAIN_TF), hcl2.loads(after), ())
        assert len(changes) == 1, (address, changes)
        assert changes[0][-1] == address.rsplit(".", 1)[-1], (address, changes)


def tree_changes(a: object, b: object, where: tuple[object, ...]) -> list[tuple[object, ...]]:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [c for k in a for c in tree_changes(a[k], b[k], (*where, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            c
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for c in tree_changes(x, y, (*where, i))
        ]
    return [] if (type(a), a) == (type(b), b) else [where]


def test_tricky_text_round_trips() -> None:
    small = 'module "m" {\n  # why\n  note  = "x" // c\n  other = 1\n}\n'
    for text in TRICKY_TEXT:
        after = edit("module.m.note", text, small)
        only_changed_line(small, after)
        assert read_terraform_value(after, "module.m.note") == text, text


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_edited_file_is_still_terraform_fmt_clean() -> None:
    wishes: list[tuple[str, Wish]] = [
        ("module.search_hpa.min_replicas", 10),
        ("resource.aws_db_instance.orders.instance_class", "db.r6g.2xlarge"),
        ("resource.aws_eks_node_group.default.scaling_config.min_size", 12),
    ]
    for address, value in wishes:
        after = edit(address, value)
        formatted = subprocess.run(
            ["terraform", "fmt", "-no-color", "-"],
            input=after,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert formatted == after, address


# --- refusals ---


def refusal(address: str, value: object = 1, text: str = MAIN_TF) -> str:
    with pytest.raises(EditError) as caught:
        edit_terraform_value(text, address, value, path=PATH)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{PATH}: {address}: "), message
    return message


def test_missing_block_names_the_blocks_that_exist() -> None:
    message = refusal("module.serch_hpa.min_replicas")
    assert 'no module "serch_hpa" block' in message
    assert 'module "search_hpa", module "checkout_hpa"' in message


def test_missing_attribute_names_the_attributes_that_exist() -> None:
    message = refusal("module.checkout_hpa.desired_replicas")
    assert 'no such attribute; module "checkout_hpa" sets max_replicas, min_replicas, source' in (
        message
    )


def test_attribute_inside_a_nested_block_is_not_found_at_the_top() -> None:
    message = refusal("resource.aws_eks_node_group.default.desired_size")
    assert "no such attribute" in message


def test_nested_block_is_not_an_attribute() -> None:
    assert "is a nested block" in refusal("module.search_hpa.behavior")


def test_missing_nested_block() -> None:
    assert "has no autoscaling block" in refusal("module.search_hpa.autoscaling.min")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("module.checkout_hpa.max_replicas", "an expression (var.checkout_max)"),
        ("module.search_hpa.name", 'a string template ("search-${local.team}")'),
        ("module.search_hpa.labels", "an object"),
        ("module.search_hpa.description", "a heredoc (<<-EOT …)"),
        ("resource.aws_db_instance.orders.tags", "an expression (merge(local.tags"),
        ("resource.aws_eks_node_group.default.cluster_name", "an expression"),
    ],
)
def test_computed_values_are_refused(address: str, kind: str) -> None:
    message = refusal(address)
    assert kind in message
    assert "edit it by hand" in message


def test_list_is_refused() -> None:
    assert "is a list" in refusal("zones", "c", 'zones = ["a", "b"]\n')


def test_same_block_twice_is_ambiguous() -> None:
    text = 'module "a" {\n  x = 1\n}\n\nmodule "a" {\n  x = 2\n}\n'
    assert 'module "a" is defined more than once (lines 1, 5)' in refusal("module.a.x", 3, text)


def test_same_attribute_twice_is_ambiguous() -> None:
    # python-hcl2 quietly keeps the last one; Terraform rejects the file.
    text = 'module "a" {\n  x = 1\n  x = 2\n}\n'
    assert "is set more than once" in refusal("module.a.x", 3, text)


def test_two_nested_blocks_of_a_kind_are_ambiguous() -> None:
    text = 'resource "t" "n" {\n  rule {\n    x = 1\n  }\n  rule {\n    x = 2\n  }\n}\n'
    assert "has 2 rule block(s)" in refusal("resource.t.n.rule.x", 3, text)


@pytest.mark.parametrize(
    "text",
    [
        'module "a" {\n  x = 1\n',
        'module "a" {\n  x =\n}\n',
        'module "a" {\n  x = "open\n}\n',
        "x = 1 +\n",
    ],
)
def test_unparseable_hcl_is_refused(text: str) -> None:
    assert "not valid HCL" in refusal("module.a.x", 3, text)


@pytest.mark.parametrize(
    "address", ["", "module", "module.search_hpa", "resource.aws_db_instance.orders", "a..b"]
)
def test_malformed_addresses_are_refused(address: str) -> None:
    message = refusal(address)
    assert "give an address" in message or "label(s) and then an attribute" in message


@pytest.mark.parametrize("value", [None, ["a"], float("nan"), float("-inf")])
def test_values_a_literal_cannot_hold_are_refused(value: object) -> None:
    refusal("module.search_hpa.min_replicas", value)


def test_reading_null_is_refused() -> None:
    with pytest.raises(EditError, match="is null"):
        read_terraform_value('variable "x" {\n  default = null\n}\n', "variable.x.default")


def test_null_can_be_replaced() -> None:
    text = 'variable "x" {\n  default = null\n}\n'
    assert edit_terraform_value(text, "variable.x.default", 3) == text.replace("null", "3")


# --- golden diffs, as a reviewer sees them in the PR ---


def test_golden_int_below_a_comment(golden: Callable[[str, str], None]) -> None:
    after = edit("module.search_hpa.min_replicas", 4)
    golden("editors/terraform_min_replicas.diff", unified_diff(PATH, MAIN_TF, after))


def test_golden_string(golden: Callable[[str, str], None]) -> None:
    after = edit("resource.aws_db_instance.orders.instance_class", "db.r6g.large")
    golden("editors/terraform_instance_class.diff", unified_diff(PATH, MAIN_TF, after))


def test_golden_nested_block(golden: Callable[[str, str], None]) -> None:
    after = edit("resource.aws_eks_node_group.default.scaling_config.desired_size", 5)
    golden("editors/terraform_desired_size.diff", unified_diff(PATH, MAIN_TF, after))
