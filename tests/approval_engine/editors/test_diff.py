"""Unified diffs in the form git prints them."""

from __future__ import annotations

from approval_engine.editors import unified_diff


def test_equal_texts_give_an_empty_diff() -> None:
    assert unified_diff("values.yaml", "a: 1\n", "a: 1\n") == ""


def test_headers_hunk_and_three_lines_of_context() -> None:
    before = "".join(f"line{i}\n" for i in range(1, 11))
    after = before.replace("line5\n", "LINE5\n")
    assert unified_diff("charts/x/values.yaml", before, after) == (
        "--- a/charts/x/values.yaml\n"
        "+++ b/charts/x/values.yaml\n"
        "@@ -2,7 +2,7 @@\n"
        " line2\n line3\n line4\n-line5\n+LINE5\n line6\n line7\n line8\n"
    )


def test_single_line_file_uses_gits_short_hunk_header() -> None:
    assert unified_diff("x.tf", "x = 1\n", "x = 2\n") == (
        "--- a/x.tf\n+++ b/x.tf\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    )


def test_missing_newline_at_end_of_file_is_marked() -> None:
    assert unified_diff("x.tf", "a = 1\nx = 1", "a = 1\nx = 2") == (
        "--- a/x.tf\n+++ b/x.tf\n@@ -1,2 +1,2 @@\n a = 1\n-x = 1\n"
        "\\ No newline at end of file\n+x = 2\n\\ No newline at end of file\n"
    )


def test_lines_split_on_newline_only() -> None:
    # A form feed or U+2028 inside a value is not a line break for git.
    diff = unified_diff("v.yaml", "a: 'x\x0cy'\nb: 1\n", "a: 'x\x0cy'\nb: 2\n")
    assert "@@ -1,2 +1,2 @@\n a: 'x\x0cy'\n-b: 1\n+b: 2\n" in diff
