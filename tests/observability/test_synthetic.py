"""The k6 synthetic tests: one script per example service, with thresholds, that parses."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.observability._support import REPO_ROOT, SYNTHETIC_DIR, load_yaml, run

SERVICES = sorted(
    name
    for name, spec in load_yaml(REPO_ROOT / "config" / "targets.yaml")["services"].items()
    if spec.get("kind", "workload") == "workload"
)
SCRIPTS = sorted(SYNTHETIC_DIR.glob("*.js"))


def test_every_example_service_has_a_script() -> None:
    assert SERVICES == ["cart", "checkout", "search"]
    missing = [s for s in SERVICES if not (SYNTHETIC_DIR / f"{s}.js").is_file()]
    assert not missing, f"no k6 script for {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_script_declares_options_and_a_default_function(service: str) -> None:
    text = (SYNTHETIC_DIR / f"{service}.js").read_text(encoding="utf-8")
    assert re.search(r"^export const options = ", text, re.MULTILINE)
    assert re.search(r"^export default function", text, re.MULTILINE)
    assert f"const SERVICE = '{service}';" in text


def test_thresholds_follow_the_slos() -> None:
    lib = (SYNTHETIC_DIR / "lib.js").read_text(encoding="utf-8")
    assert "thresholds:" in lib
    assert "http_req_failed: ['rate<" in lib
    assert "http_req_duration: [`p(95)<${p95Ms}`]" in lib
    assert "p95Ms = 500" in lib, "the latency SLO is 500 ms (slo.rules.yaml)"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    """k6 is rarely installed where tests run; node parses the same ES module syntax.
    observability/synthetic-tests/package.json makes node read the scripts as modules."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip(
            "node is not on PATH, so the k6 scripts' syntax is not checked (apt-get install nodejs)"
        )
    result = run([node, "--check", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr
