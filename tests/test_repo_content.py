"""The Terraform and Helm content that agents edit: parses, and holds the agreed values.

Other code (config/targets.yaml, the HCL and values editors, the demo) relies on the
keys and numbers checked here, so a change to them should be deliberate.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from ruamel.yaml import YAML

REPO_ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = REPO_ROOT / "terraform"
ENVIRONMENTS_DIR = TERRAFORM_DIR / "environments"
CHARTS_DIR = REPO_ROOT / "helm-charts"
ARGOCD_DIR = CHARTS_DIR / "argocd"

TF_FILES = sorted(TERRAFORM_DIR.rglob("*.tf"))
ENVIRONMENTS = ("dev", "staging", "prod")
SERVICES = ("checkout", "cart", "search")
CHART_ENVIRONMENTS = ("staging", "prod")

# (min_replicas, max_replicas) of module "search_hpa" per environment.
SEARCH_HPA = {"dev": (1, 2), "staging": (1, 4), "prod": (2, 24)}

# (instance_class, deletion_protection) of module "orders_db" per environment.
ORDERS_DB = {
    "dev": ("db.t3.medium", False),
    "staging": ("db.t3.medium", True),
    "prod": ("db.r6g.large", True),
}

# Exact knobs per service and environment file.
VALUES: dict[tuple[str, str], dict[str, Any]] = {
    ("checkout", "staging"): {
        "replicaCount": 2,
        "autoscaling": (True, 2, 6, 70),
        "cpu": "250m",
    },
    ("checkout", "prod"): {
        "replicaCount": 3,
        "autoscaling": (True, 3, 12, 70),
        "cpu": "500m",
    },
    ("cart", "staging"): {
        "replicaCount": 2,
        "autoscaling": (False, 1, 4, 75),
        "cpu": "250m",
    },
    ("cart", "prod"): {
        "replicaCount": 2,
        "autoscaling": (True, 2, 8, 75),
        "cpu": "250m",
    },
    ("search", "staging"): {
        "replicaCount": 2,
        "autoscaling": (False, 1, 4, 70),
        "cpu": "250m",
    },
    ("search", "prod"): {
        "replicaCount": 3,
        "autoscaling": (False, 2, 24, 70),
        "cpu": "500m",
    },
}

VALUES_FILES = [
    CHARTS_DIR / service / name
    for service in SERVICES
    for name in ("values.yaml", *(f"values-{env}.yaml" for env in CHART_ENVIRONMENTS))
]
ARGO_APPS = sorted(ARGOCD_DIR.glob("*.yaml"))


def _unquote(value: Any) -> Any:
    """python-hcl2 may keep the quotes of string literals and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _modules(env: str) -> list[tuple[str, Path, dict[str, Any]]]:
    """Every module block of an environment: (name, file, attributes)."""
    found = []
    for path in sorted((ENVIRONMENTS_DIR / env).glob("*.tf")):
        parsed = hcl2.loads(path.read_text(encoding="utf-8"))
        for block in parsed.get("module", []):
            for label, body in block.items():
                attributes = {key: _unquote(value) for key, value in body.items()}
                found.append((_unquote(label), path, attributes))
    return found


def _module(env: str, name: str) -> dict[str, Any]:
    matches = [attrs for label, _, attrs in _modules(env) if label == name]
    assert len(matches) == 1, f'{env}: expected exactly one module "{name}", found {len(matches)}'
    return matches[0]


def _load_yaml(path: Path) -> Any:
    return YAML(typ="rt").load(path.read_text(encoding="utf-8"))


# --- Terraform ---------------------------------------------------------------


def test_terraform_tree_is_not_empty() -> None:
    assert len(TF_FILES) >= 10
    for module in ("hpa", "rds", "s3"):
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (TERRAFORM_DIR / "modules" / module / name).is_file()
    for env in ENVIRONMENTS:
        assert (ENVIRONMENTS_DIR / env / "main.tf").is_file()


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM_DIR)))
def test_tf_file_parses(path: Path) -> None:
    parsed = hcl2.loads(path.read_text(encoding="utf-8"))
    assert parsed, f"{path} parsed to nothing"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform CLI not installed")
def test_terraform_fmt_is_clean() -> None:
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_has_backend_and_providers(env: str) -> None:
    parsed = hcl2.loads((ENVIRONMENTS_DIR / env / "main.tf").read_text(encoding="utf-8"))
    (terraform,) = parsed["terraform"]
    (providers,) = terraform["required_providers"]
    assert {"aws", "kubernetes"} <= providers.keys()
    (backend,) = terraform["backend"]
    assert [_unquote(label) for label in backend] == ["s3"]
    configured = {_unquote(label) for block in parsed["provider"] for label in block}
    assert configured == {"aws", "kubernetes"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_search_hpa_module(env: str) -> None:
    module = _module(env, "search_hpa")
    min_replicas, max_replicas = SEARCH_HPA[env]
    assert module["source"] == "../../modules/hpa"
    assert module["name"] == "search"
    assert module["namespace"] == env
    assert module["min_replicas"] == min_replicas
    assert module["max_replicas"] == max_replicas
    assert module["target_cpu_utilization"] == 70


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_search_hpa_attributes_sit_on_their_own_lines(env: str) -> None:
    """Editors change these by line; keep one attribute per line and the comment above."""
    (path,) = {path for label, path, _ in _modules(env) if label == "search_hpa"}
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    min_replicas, max_replicas = SEARCH_HPA[env]
    min_index = next(i for i, line in enumerate(lines) if line.startswith("min_replicas"))
    assert lines[min_index - 1].startswith("#")
    for key, value in (
        ("name", '"search"'),
        ("namespace", f'"{env}"'),
        ("min_replicas", str(min_replicas)),
        ("max_replicas", str(max_replicas)),
        ("target_cpu_utilization", "70"),
    ):
        assert sum(1 for line in lines if line.split("=")[0].strip() == key) == 1
        assert any(line.split() == [key, "=", value] for line in lines), (key, value)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_orders_db_module(env: str) -> None:
    module = _module(env, "orders_db")
    instance_class, deletion_protection = ORDERS_DB[env]
    assert module["source"] == "../../modules/rds"
    assert module["instance_class"] == instance_class
    assert module["deletion_protection"] is deletion_protection
    assert isinstance(module["allocated_storage"], int)
    assert module.get("publicly_accessible", False) is False


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_module_sources_exist(env: str) -> None:
    for label, _, attributes in _modules(env):
        source = ENVIRONMENTS_DIR / env / attributes["source"]
        assert (source / "main.tf").is_file(), f"{env}: module {label} -> {source}"


def test_hpa_module_declares_validated_variables() -> None:
    parsed = hcl2.loads((TERRAFORM_DIR / "modules/hpa/variables.tf").read_text(encoding="utf-8"))
    variables = {
        _unquote(label): body for block in parsed["variable"] for label, body in block.items()
    }
    expected = {"name", "namespace", "min_replicas", "max_replicas", "target_cpu_utilization"}
    assert expected <= variables.keys()
    for name in expected:
        assert "description" in variables[name], name
        assert "type" in variables[name], name
    for name in ("min_replicas", "max_replicas", "target_cpu_utilization"):
        assert variables[name].get("validation"), name
    main = hcl2.loads((TERRAFORM_DIR / "modules/hpa/main.tf").read_text(encoding="utf-8"))
    resources = {_unquote(label) for block in main["resource"] for label in block}
    assert "kubernetes_horizontal_pod_autoscaler_v2" in resources


# --- Helm --------------------------------------------------------------------


PLAIN_YAML = sorted(
    path
    for path in CHARTS_DIR.rglob("*.yaml")
    if "templates" not in path.relative_to(CHARTS_DIR).parts
)


@pytest.mark.parametrize("path", PLAIN_YAML, ids=lambda p: str(p.relative_to(CHARTS_DIR)))
def test_yaml_outside_templates_parses(path: Path) -> None:
    assert _load_yaml(path) is not None


@pytest.mark.parametrize("service", SERVICES)
def test_chart_layout(service: str) -> None:
    chart_dir = CHARTS_DIR / service
    chart = _load_yaml(chart_dir / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == service
    assert chart["type"] == "application"
    for name in ("_helpers.tpl", "deployment.yaml", "service.yaml", "hpa.yaml"):
        assert (chart_dir / "templates" / name).is_file(), name
    hpa = (chart_dir / "templates/hpa.yaml").read_text(encoding="utf-8")
    assert hpa.startswith("{{- if .Values.autoscaling.enabled }}")
    assert "apiVersion: autoscaling/v2" in hpa
    deployment = (chart_dir / "templates/deployment.yaml").read_text(encoding="utf-8")
    assert "{{- if not .Values.autoscaling.enabled }}\n  replicas:" in deployment


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: str(p.relative_to(CHARTS_DIR)))
def test_values_file_holds_every_knob(path: Path) -> None:
    service = path.parent.name
    values = _load_yaml(path)
    assert isinstance(values["replicaCount"], int)
    assert values["image"]["repository"] == f"ghcr.io/example/{service}"
    assert isinstance(values["image"]["tag"], str)
    assert values["image"]["tag"].count(".") == 2
    assert values["image"]["pullPolicy"] == "IfNotPresent"
    assert values["service"]["type"] == "ClusterIP"
    assert values["service"]["port"] == 8080
    autoscaling = values["autoscaling"]
    assert isinstance(autoscaling["enabled"], bool)
    for key in ("minReplicas", "maxReplicas", "targetCPUUtilizationPercentage"):
        assert isinstance(autoscaling[key], int), key
    assert 1 <= autoscaling["minReplicas"] <= autoscaling["maxReplicas"]
    assert values["resources"]["requests"]["cpu"]
    assert values["resources"]["requests"]["memory"] == "256Mi"
    assert values["resources"]["limits"]["memory"] == "512Mi"
    # block style, so that editors change one line per knob
    assert "{" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("service", "env"), sorted(VALUES), ids=[f"{s}-{e}" for s, e in sorted(VALUES)]
)
def test_values_per_environment(service: str, env: str) -> None:
    values = _load_yaml(CHARTS_DIR / service / f"values-{env}.yaml")
    expected = VALUES[(service, env)]
    enabled, min_replicas, max_replicas, target = expected["autoscaling"]
    assert values["replicaCount"] == expected["replicaCount"]
    assert values["autoscaling"]["enabled"] is enabled
    assert values["autoscaling"]["minReplicas"] == min_replicas
    assert values["autoscaling"]["maxReplicas"] == max_replicas
    assert values["autoscaling"]["targetCPUUtilizationPercentage"] == target
    assert values["resources"]["requests"]["cpu"] == expected["cpu"]


def test_search_chart_leaves_autoscaling_to_terraform() -> None:
    for env in CHART_ENVIRONMENTS:
        values = _load_yaml(CHARTS_DIR / "search" / f"values-{env}.yaml")
        assert values["autoscaling"]["enabled"] is False
        assert SEARCH_HPA[env] == (
            values["autoscaling"]["minReplicas"],
            values["autoscaling"]["maxReplicas"],
        )


# --- ArgoCD ------------------------------------------------------------------


def test_one_application_per_service_and_environment() -> None:
    names = {path.stem for path in ARGO_APPS}
    assert names == {f"{service}-{env}" for service in SERVICES for env in CHART_ENVIRONMENTS}


@pytest.mark.parametrize("path", ARGO_APPS, ids=lambda p: p.name)
def test_application_points_at_existing_chart_and_values(path: Path) -> None:
    app = _load_yaml(path)
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    assert app["kind"] == "Application"
    assert app["metadata"]["name"] == path.stem
    assert app["metadata"]["namespace"] == "argocd"
    service, env = path.stem.rsplit("-", 1)
    source = app["spec"]["source"]
    assert source["path"] == f"helm-charts/{service}"
    chart_dir = REPO_ROOT / source["path"]
    assert (chart_dir / "Chart.yaml").is_file()
    value_files = source["helm"]["valueFiles"]
    assert value_files == [f"values-{env}.yaml"]
    for name in value_files:
        assert (chart_dir / name).is_file(), name
    assert app["spec"]["destination"]["namespace"] == env
    automated = app["spec"]["syncPolicy"]["automated"]
    assert automated["prune"] is True
    assert automated["selfHeal"] is True
