"""HCL syntax that could fool a text editor into touching the wrong span, or the wrong block."""

from __future__ import annotations

import pytest

from approval_engine.editors import edit_terraform_value, read_terraform_value
from tests.approval_engine.editors._support import only_changed_line


@pytest.mark.parametrize(
    "before",
    [
        # Braces inside a template inside a string inside a template.
        'module "m" {\n  a = "${format("%s}", "{")}"\n  x = 1\n}\n',
        # Comment markers inside strings.
        'module "m" {\n  a = "http://example.com/#top"\n  x = 1\n}\n',
        # A block comment holding quotes and a brace, before the attribute on its line.
        'module "m" {\n  /* "} */ x = 1\n}\n',
        # A multi-line list with a comment holding a brace.
        'module "m" {\n  a = [\n    1, # }\n    2,\n  ]\n  x = 1\n}\n',
        # A heredoc whose body looks like HCL, closed by an indented marker.
        'module "m" {\n  a = <<-EOT\n    }\n    x = 99\n    EOT\n  x = 1\n}\n',
        # A multi-line object and a for expression.
        'module "m" {\n  a = { for k, v in var.m : k => v if v != "}" }\n  b = {\n    x = 5\n  }\n'
        "  x = 1\n}\n",
        # Escaped quotes and template sigils.
        'module "m" {\n  a = "\\"}\\" $${not} %%{not}"\n  x = 1\n}\n',
        # A nested block before the attribute, with the same name inside.
        'module "m" {\n  inner {\n    x = 7\n  }\n  x = 1\n}\n',
        # Labels written as identifiers, and a dynamic block.
        'module m {\n  dynamic "rule" {\n    content {\n      x = 3\n    }\n  }\n  x = 1\n}\n',
    ],
)
def test_only_the_top_level_attribute_changes(before: str) -> None:
    after = edit_terraform_value(before, "module.m.x", 2)
    old, new = only_changed_line(before, after)
    assert (old.strip(), new.strip()) in [("x = 1", "x = 2"), ('/* "} */ x = 1', '/* "} */ x = 2')]


def test_heredoc_with_crlf_line_endings() -> None:
    before = 'module "m" {\r\n  a = <<EOT\r\n}\r\nEOT\r\n  x = 1\r\n}\r\n'
    after = edit_terraform_value(before, "module.m.x", 2)
    assert after == before.replace("x = 1", "x = 2")


def test_unicode_escapes_in_strings_are_read() -> None:
    text = 'module "m" {\n  x = "caf\\u00e9 \\U0001F600\\t"\n}\n'
    assert read_terraform_value(text, "module.m.x") == "caf\u00e9 \U0001f600\t"


def test_negative_and_exponent_numbers_are_literals() -> None:
    text = 'module "m" {\n  a = -3\n  b = 1.5e3\n}\n'
    assert read_terraform_value(text, "module.m.a") == -3
    assert read_terraform_value(text, "module.m.b") == 1500.0
    assert edit_terraform_value(text, "module.m.a", -4) == text.replace("-3", "-4")


def test_hyphenated_names() -> None:
    text = 'resource "aws_s3_bucket" "logs-prod" {\n  force-destroy = false\n}\n'
    after = edit_terraform_value(text, "aws_s3_bucket.logs-prod.force-destroy", True)
    assert after == text.replace("false", "true")
