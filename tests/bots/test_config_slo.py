"""`opsgate config check` on the SLO, verification, rollback and budget keys: each mistake is
named by file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from approval_engine.errors import ConfigError
from bots.config import load_config
from bots.settings import PROJECT_ROOT

CONFIG_DIR = PROJECT_ROOT / "config"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_config_check_names_file_and_key_of_each_slo_mistake(config_dir: Path) -> None:
    targets = config_dir / "targets.yaml"
    _replace(
        targets,
        "  latency_p95: {max: 500, worse_than_before_by: 1.5x}",
        "  latency_p95: {max: 500, worse_than_before_by: half}\n  latency_p99: {max: 900}",
    )
    _replace(targets, "  cpu: {max: 90}", "  cpu: {}")
    _replace(
        targets,
        '    argocd_app: "infra-{env}"\n',
        '    argocd_app: "infra-{env}"\n    slo: {iops: {max: 9000}}\n',
    )
    policy = config_dir / "policy.yaml"
    _replace(policy, "    daily_changes: 10\n", "    daily_changes: 0\n")
    _replace(policy, "  fast_track: true\n", "  fast_track: false\n")

    with pytest.raises(ConfigError) as caught:
        load_config(config_dir, repo_root=PROJECT_ROOT)

    problems = caught.value.problems
    assert any(
        p.startswith(f"{policy}: environments.prod.daily_changes: ")
        and "greater than or equal to 1" in p
        for p in problems
    ), problems
    assert any(
        p.startswith(f"{policy}: rollback: ") and "quorum applies only with fast_track" in p
        for p in problems
    ), problems
    assert any(
        p.startswith(f"{targets}: slo.latency_p95.worse_than_before_by: ")
        and "'half' is not a factor" in p
        for p in problems
    ), problems
    assert any(p.startswith(f"{targets}: slo.cpu: ") and "needs `max`" in p for p in problems), (
        problems
    )


def test_config_check_names_slos_on_signals_that_do_not_exist(config_dir: Path) -> None:
    targets = config_dir / "targets.yaml"
    _replace(targets, "  cpu: {max: 90}", "  cpu: {max: 90}\n  latency_p99: {max: 900}")
    _replace(
        targets,
        '    argocd_app: "infra-{env}"\n',
        '    argocd_app: "infra-{env}"\n    slo: {iops: {max: 9000}}\n',
    )

    with pytest.raises(ConfigError) as caught:
        load_config(config_dir, repo_root=PROJECT_ROOT)

    known = "cpu, db_connections, desired_replicas, error_ratio, errors, latency_p95, "
    assert caught.value.problems == [
        f"{targets}: slo.latency_p99: no signal 'latency_p99' in `signals:` (known: {known}"
        "replicas, requests)",
        f"{targets}: services.orders-db.slo.iops: no signal 'iops' in `signals:` (known: "
        f"{known}replicas, requests)",
    ]
