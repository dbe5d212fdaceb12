"""The `opsgate` command as a newcomer runs it: piped demo conversations, config check, audit."""

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

OPSGATE = str(Path(sys.executable).parent / "opsgate")
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: bytes = b"", cwd: Path) -> subprocess.CompletedProcess[str]:
    raw = subprocess.run(
        [OPSGATE, *args], input=stdin, capture_output=True, cwd=cwd, timeout=120, check=False
    )
    return subprocess.CompletedProcess(
        raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode()
    )


def status_row(output: str, env: str, service: str) -> str:
    section = output.split(f"{env} (simulated cluster)", 1)[1]
    return next(line for line in section.splitlines() if line.startswith(service))


def test_the_readme_conversation_applies_the_new_floor(tmp_path: Path) -> None:
    script = b"/as alice\n/scale checkout 4\n/as bob\n/approve scale-1\n/status\n"
    result = run("demo", stdin=script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("approved by bob", "merged as", "syncing checkout-staging", "applied"):
        assert step in out
    assert "4-6 @70%" in status_row(out, "staging", "checkout")
    assert (tmp_path / "opsgate-data" / "gitops.git").is_dir()


def test_prod_variant_shows_the_quorum(tmp_path: Path) -> None:
    script = (
        b"/scale checkout 6 prod\n/as bob\n/approve scale-1\n/as dave\n/approve scale-1\n/status\n"
    )
    out = run("demo", stdin=script, cwd=tmp_path).stdout
    assert "Approved scale-1 (1 of 2 approvals). 1 more approval(s) needed." in out
    assert "Approved scale-1 (2 of 2 approvals)." in out
    assert "6-12 @70%" in status_row(out, "prod", "checkout")


def test_demo_continues_on_the_same_data_dir_and_reset_starts_over(tmp_path: Path) -> None:
    data = tmp_path / "state"
    run("demo", "--data-dir", str(data), stdin=b"/scale checkout 4\n", cwd=tmp_path)
    again = run("demo", "--data-dir", str(data), stdin=b"/proposals\n", cwd=tmp_path)
    assert "scale-1" in again.stdout
    fresh = run("demo", "--data-dir", str(data), "--reset", stdin=b"/proposals\n", cwd=tmp_path)
    assert "No open proposals." in fresh.stdout


def test_data_dir_from_the_environment(tmp_path: Path) -> None:
    env_dir = tmp_path / "from-env"
    raw = subprocess.run(
        [OPSGATE, "demo"],
        input=b"/status\n",
        capture_output=True,
        cwd=tmp_path,
        env={"OPSGATE_DATA_DIR": str(env_dir), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert raw.returncode == 0, raw.stderr
    assert (env_dir / "opsgate.db").exists()


def test_garbage_on_stdin_gets_replies_and_changes_nothing(tmp_path: Path) -> None:
    script = b"\n/scale checkout \xff\xfe\n/scale checkout " + b"9" * 10_000 + b"\n/proposals\n"
    result = run("demo", stdin=script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Type /help" in result.stdout
    assert "not UTF-8" in result.stdout
    assert "commands are at most 4000" in result.stdout
    assert "No open proposals." in result.stdout


def test_chat_needs_a_known_user(tmp_path: Path) -> None:
    result = run("chat", "--user", "zed", stdin=b"/status\n", cwd=tmp_path)
    assert result.returncode == 2
    assert "no person 'zed'" in result.stderr


def test_chat_has_no_as_command(tmp_path: Path) -> None:
    out = run("chat", "--user", "carol", stdin=b"/as alice\n", cwd=tmp_path).stdout
    assert "There is no /as command" in out


def test_config_check_accepts_the_shipped_config(tmp_path: Path) -> None:
    result = run("config", "check", "--config", str(REPO / "config"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_config_check_names_file_key_and_reason(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    shutil.copytree(REPO / "config", broken)
    policy = broken / "policy.yaml"
    policy.write_text(policy.read_text().replace("quorum: 2", "quorum: zero"))
    targets = broken / "targets.yaml"
    targets.write_text(targets.read_text().replace("key: replicaCount", "key: replicaCnt"))
    result = run("config", "check", "--config", str(broken), cwd=tmp_path)
    assert result.returncode == 2
    assert "policy.yaml: environments.prod.quorum:" in result.stderr
    assert "Traceback" not in result.stderr
    # The demo refuses to start on the same problems, with the same message.
    demo = run("demo", "--config", str(broken), stdin=b"/status\n", cwd=tmp_path)
    assert demo.returncode == 2
    assert "environments.prod.quorum" in demo.stderr


def test_config_check_finds_a_knob_that_points_nowhere(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    shutil.copytree(REPO / "config", broken)
    targets = broken / "targets.yaml"
    targets.write_text(targets.read_text().replace("key: replicaCount", "key: replicaCnt"))
    result = run("config", "check", "--config", str(broken), cwd=tmp_path)
    assert result.returncode == 2
    assert "services.checkout.knobs.replicas (staging)" in result.stderr
    assert "replicaCnt" in result.stderr


def test_config_check_names_bad_agent_settings_and_signal_templates(tmp_path: Path) -> None:
    broken = tmp_path / "config"
    shutil.copytree(REPO / "config", broken)
    agents = broken / "agents.yaml"
    agents.write_text(
        agents.read_text().replace("      horizon: 7d", "      horizon: 9d\n      colour: red")
    )
    targets = broken / "targets.yaml"
    targets.write_text(targets.read_text().replace('service="$service"', 'service="$svc"', 1))
    result = run("config", "check", "--config", str(broken), cwd=tmp_path)
    assert result.returncode == 2
    assert "agents.yaml: agents.BurstPredictor.settings.horizon: Input should be less" in (
        result.stderr
    )
    assert "agents.yaml: agents.BurstPredictor.settings.colour: Extra inputs" in result.stderr
    assert "targets.yaml: signals: Value error, requests: unknown placeholder $svc" in (
        result.stderr
    )


@pytest.fixture
def demo_data(tmp_path: Path) -> Path:
    script = b"/scale checkout 4\n/as bob\n/approve scale-1\n/as carol\n/reject scale-1\n"
    assert run("demo", stdin=script, cwd=tmp_path).returncode == 0
    return tmp_path / "opsgate-data"


def test_audit_verify_passes_on_an_intact_log(demo_data: Path) -> None:
    result = run("audit", "verify", "--data-dir", str(demo_data), cwd=demo_data.parent)
    assert result.returncode == 0, result.stderr
    assert "audit log intact" in result.stdout
    tail = run("audit", "tail", "--data-dir", str(demo_data), cwd=demo_data.parent).stdout
    assert "proposed" in tail and "applied" in tail and "denied" in tail


def test_audit_verify_names_a_changed_row(demo_data: Path) -> None:
    with sqlite3.connect(demo_data / "opsgate.db") as db:
        db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2")
    result = run("audit", "verify", "--data-dir", str(demo_data), cwd=demo_data.parent)
    assert result.returncode == 1
    assert "BROKEN at row 2" in result.stderr


def test_audit_verify_names_a_removed_row(demo_data: Path) -> None:
    with sqlite3.connect(demo_data / "opsgate.db") as db:
        db.execute("DELETE FROM audit WHERE id = 3")
    result = run("audit", "verify", "--data-dir", str(demo_data), cwd=demo_data.parent)
    assert result.returncode == 1
    assert "row 3 is missing" in result.stderr


def test_the_readme_burst_conversation(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    if now.weekday() == 0 and 8 <= now.hour < 12:
        pytest.skip("during Monday's burst the window is too late for a reviewed change")
    script = (
        b"/predict checkout prod\n/agent BurstPredictor optimize\n"
        b"/as bob\n/approve burst-1\n/as dave\n/approve burst-1\n/status checkout\n"
    )
    result = run("demo", stdin=script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "checkout/prod: Mon" in out
    graphs = list((tmp_path / "opsgate-data" / "graphs").glob("graph-*.png"))
    assert graphs and graphs[0].read_bytes()[:4] == b"\x89PNG"
    assert f"(graph: {graphs[0].relative_to(tmp_path)})" in out
    assert "opened burst-1" in out
    assert "1 of 2 approvals" in out and "2 of 2 approvals" in out
    assert "applied" in out.split("2 of 2 approvals", 1)[1]
    floor = re.search(r" (\d+)-\d+ @70%", status_row(out, "prod", "checkout"))
    assert floor is not None and int(floor.group(1)) > 3  # was 3 before burst-1
