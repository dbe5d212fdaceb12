"""`opsgate serve` with Slack enabled, as an operator runs it: the real binary, a fake Slack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.bots.test_slack import slack_config
from tests.bots.test_web import wait_for, wait_until_ready
from tests.fakes.slack_api import (
    ALICE,
    BOT_USER_ID,
    OPS,
    FakeSlack,
    signed_headers,
    slash_command_body,
)
from tests.prometheus_server import free_port

OPSGATE = str(Path(sys.executable).parent / "opsgate")
SECRET = "serve-test-signing-secret"


def enable_slack(config_dir: Path, api_url: str) -> None:
    settings = config_dir / "settings.yaml"
    settings.write_text(
        settings.read_text()
        + f"\nchat:\n  slack:\n    enabled: true\n    api_base_url: {api_url}\n"
    )


def test_serve_answers_a_signed_slash_command_in_slack(tmp_path: Path) -> None:
    config_dir = slack_config(tmp_path)
    port = free_port()
    with FakeSlack() as fake:
        enable_slack(config_dir, fake.api_url)
        env = {
            **os.environ,
            "OPSGATE_SCHEDULER": "false",
            "OPSGATE_SLACK_BOT_TOKEN": fake.bot_token,
            "OPSGATE_SLACK_SIGNING_SECRET": SECRET,
        }
        process = subprocess.Popen(
            [
                OPSGATE,
                "serve",
                "--port",
                str(port),
                "--config",
                str(config_dir),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base)
            assert httpx.get(f"{base}/readyz").json()["checks"]["slack"] == "ok"
            body = slash_command_body(text="scale checkout 4", user_id=ALICE, channel_id=OPS)
            answer = httpx.post(
                f"{base}/slack/events", content=body, headers=signed_headers(body, SECRET)
            )
            assert answer.status_code == 200
            forged = httpx.post(
                f"{base}/slack/events", content=body, headers=signed_headers(body, "not-the-secret")
            )
            assert forged.status_code == 401

            def replied() -> bool:
                return any(m.user == BOT_USER_ID for m in fake.channel_messages(OPS))

            wait_for(replied, what="the card in Slack", timeout=15)
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        card = next(m for m in fake.channel_messages(OPS) if m.user == BOT_USER_ID)
        assert "Opened scale-1" in card.text
        assert "Traceback" not in output


def test_serve_refuses_to_start_slack_without_its_secrets(tmp_path: Path) -> None:
    config_dir = slack_config(tmp_path)
    enable_slack(config_dir, "http://127.0.0.1:9/api/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSGATE_SLACK")}
    result = subprocess.run(
        [
            OPSGATE,
            "serve",
            "--port",
            str(free_port()),
            "--config",
            str(config_dir),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "OPSGATE_SLACK_BOT_TOKEN and OPSGATE_SLACK_SIGNING_SECRET are not both set" in (
        result.stderr
    )
