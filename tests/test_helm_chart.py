"""The chart that deploys opsgate (helm-charts/opsgate): static checks, then what `helm` renders.

The static checks always run. The rendering checks need a `helm` binary on the PATH and skip,
saying so, without one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import typing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from ruamel.yaml import YAML

from bots.settings import RuntimeSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "helm-charts" / "opsgate"
TEMPLATES = CHART / "templates"
RULES = REPO_ROOT / "observability" / "prometheus-rules" / "opsgate.rules.yaml"
README = REPO_ROOT / "README.md"

WEBHOOK_PATHS = ["/slack/events", "/telegram/webhook", "/github/webhook", "/alertmanager"]
NOT_SECRET_BUT_READ_FROM_THE_SECRET = {"OPSGATE_ALERTMANAGER_USERNAME"}  # basic_auth's user

# A configuration that can run in several pods, as a user would put it under config.files.
CLUSTER_SETTINGS = """\
gitops:
  backend: github
  github:
    repo: acme/gitops
deploy:
  kind: argocd
  argocd:
    url: https://argocd.example.com
chat:
  telegram:
    enabled: true
    mode: webhook
    webhook_url: https://opsgate.example.com/telegram/webhook
    allowed_chats: [-1001234567890]
"""


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _inline_config(settings: str = CLUSTER_SETTINGS) -> dict[str, Any]:
    files = {
        name: (REPO_ROOT / "config" / name).read_text(encoding="utf-8")
        for name in ("users.yaml", "policy.yaml", "targets.yaml")
    }
    return {"config": {"files": {"settings.yaml": settings, **files}}}


def _secret_variables() -> list[str]:
    """The list in _helpers.tpl's `opsgate.secretVariables`, in its order."""
    text = (TEMPLATES / "_helpers.tpl").read_text(encoding="utf-8")
    match = re.search(r'define "opsgate\.secretVariables" -}}\n(.*?)\{\{- end }}', text, re.S)
    assert match, "_helpers.tpl has no opsgate.secretVariables"
    return [line.removeprefix("- ").strip() for line in match.group(1).splitlines()]


# --- static: layout, values, what the chart promises ---------------------------------------


def test_chart_metadata() -> None:
    chart = _load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "opsgate"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{chart["appVersion"]}"' in pyproject


def test_chart_layout() -> None:
    for name in (
        "_helpers.tpl",
        "deployment-web.yaml",
        "deployment-scheduler.yaml",
        "service.yaml",
        "configmap.yaml",
        "secret.yaml",
        "serviceaccount.yaml",
        "ingress.yaml",
        "pdb.yaml",
        "podmonitor.yaml",
        "prometheusrule.yaml",
        "NOTES.txt",
    ):
        assert (TEMPLATES / name).is_file(), name
    assert (CHART / ".helmignore").is_file()


def _references(text: str) -> set[tuple[str, ...]]:
    """Every values path a template reads: `.Values.a.b`, and `$v.a.b` where `$v` is .Values."""
    found = {tuple(m.split(".")[1:]) for m in re.findall(r"\.Values((?:\.\w+)+)", text)}
    if re.search(r"\$v := (?:\$root)?\.Values\b", text):
        found |= {tuple(m.split(".")[1:]) for m in re.findall(r"\$v((?:\.\w+)+)", text)}
    # `$part` is .Values.web or .Values.scheduler: whatever it reads, both must have.
    for path in re.findall(r"\$part((?:\.\w+)+)", text):
        found |= {(part, *path.split(".")[1:]) for part in ("web", "scheduler")}
    return found


def test_every_value_a_template_reads_is_in_values_yaml() -> None:
    values = _load(CHART / "values.yaml")
    references: set[tuple[str, ...]] = set()
    for template in TEMPLATES.iterdir():
        references |= _references(template.read_text(encoding="utf-8"))
    assert len(references) > 40, "the reference scan found too little to be trusted"
    for path in sorted(references):
        node: Any = values
        for depth, key in enumerate(path):
            assert isinstance(node, dict) and key in node, (
                f".Values.{'.'.join(path)}: values.yaml has no {'.'.join(path[: depth + 1])}"
            )
            node = node[key]

    def unread(node: Any, prefix: tuple[str, ...]) -> list[str]:
        if not isinstance(node, dict):
            return []
        found = []
        for key, child in node.items():
            path = (*prefix, key)
            if not any(r[: len(path)] == path or path[: len(r)] == r for r in references):
                found.append(".".join(path))
            else:
                found += unread(child, path)
        return found

    assert unread(values, ()) == [], "values.yaml holds values no template reads"


def test_every_top_level_value_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if not re.match(r"\w+:", line):
            continue
        paragraph = []
        for above in reversed(lines[:index]):
            if not above.strip():
                break
            paragraph.append(above)
        assert "#" in line or any(p.lstrip().startswith("#") for p in paragraph), line


def test_secret_variables_are_every_secret_of_the_runtime_settings() -> None:
    secrets = {
        f"OPSGATE_{name.upper()}"
        for name, field in RuntimeSettings.model_fields.items()
        if SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr
    }
    listed = _secret_variables()
    assert len(listed) == len(set(listed))
    assert set(listed) == secrets | NOT_SECRET_BUT_READ_FROM_THE_SECRET
    documented = (CHART / "values.yaml").read_text(encoding="utf-8")
    for name in listed:
        assert name in documented, f"values.yaml's secrets comment does not name {name}"


def test_the_chart_rules_are_a_copy_of_observability() -> None:
    copy = CHART / "files" / "opsgate.rules.yaml"
    assert copy.read_bytes() == RULES.read_bytes(), (
        f"{copy.relative_to(REPO_ROOT)} differs from {RULES.relative_to(REPO_ROOT)}: copy it again"
    )


def test_readme_explains_how_to_deploy_with_helm() -> None:
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^## .+$", text, re.M)
    assert "## Deploy with Helm" in headings
    assert headings.index("## Deploy with Helm") + 1 == headings.index("## How it is built")
    section = text.split("## Deploy with Helm", 1)[1].split("## How it is built", 1)[0]
    for phrase in (
        "helm install opsgate helm-charts/opsgate",
        "kubectl -n opsgate create secret generic opsgate",
        "kubectl -n opsgate create configmap opsgate-config",
        "PostgreSQL",
        "Recreate",
        *WEBHOOK_PATHS,
    ):
        assert phrase in section, phrase


# --- helm: lint and render -----------------------------------------------------------------

HELM = shutil.which("helm")
needs_helm = pytest.mark.skipif(
    HELM is None,
    reason="no helm binary on the PATH (https://helm.sh/docs/intro/install/); "
    "the chart's static checks above still ran",
)


def _helm(
    *args: str, values: dict[str, Any] | None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    command = [HELM, *args]
    if values is not None:
        file = tmp_path / "values.json"  # JSON is YAML
        file.write_text(json.dumps(values), encoding="utf-8")
        command += ["-f", str(file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _template(tmp_path: Path, values: dict[str, Any] | None) -> subprocess.CompletedProcess[str]:
    """Release "opsgate", so objects are named opsgate, opsgate-web, opsgate-scheduler."""
    return _helm("template", "opsgate", str(CHART), "-n", "ops", values=values, tmp_path=tmp_path)


def _render(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = _template(tmp_path, values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in YAML(typ="safe").load_all(result.stdout) if doc]


def _refused(tmp_path: Path, values: dict[str, Any]) -> str:
    result = _template(tmp_path, values)
    assert result.returncode != 0, "the render should have failed"
    return " ".join(result.stderr.split())


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return typing.cast(dict[str, Any], container)


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(deployment)["env"]}


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@needs_helm
def test_helm_lint(tmp_path: Path) -> None:
    for values in (None, _inline_config()):
        result = _helm("lint", "--strict", str(CHART), values=values, tmp_path=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_helm
def test_defaults_render_web_replicas_and_one_scheduler(tmp_path: Path) -> None:
    docs = _render(tmp_path)
    kinds = Counter(d["kind"] for d in docs)
    assert kinds == {
        "Deployment": 2,
        "Service": 1,
        "ServiceAccount": 1,
        "PodDisruptionBudget": 1,
    }, "the defaults create no ConfigMap or Secret: they name existing ones"

    web = _one(docs, "Deployment", "opsgate-web")
    assert web["spec"]["replicas"] == 2
    assert web["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert _env(web)["OPSGATE_SCHEDULER"] == "false"

    scheduler = _one(docs, "Deployment", "opsgate-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    assert _env(scheduler)["OPSGATE_SCHEDULER"] == "true"

    service = _one(docs, "Service")
    web_labels = web["spec"]["template"]["metadata"]["labels"]
    scheduler_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert _labels_match(service["spec"]["selector"], web_labels)
    assert not _labels_match(service["spec"]["selector"], scheduler_labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == web["spec"]["selector"]["matchLabels"]


@needs_helm
def test_pods_probe_run_unprivileged_and_stop_gracefully(tmp_path: Path) -> None:
    for deployment in (d for d in _render(tmp_path) if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        assert container["args"][:2] == ["opsgate", "serve"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["resources"]["requests"]["memory"]
        assert "cpu" not in container["resources"]["limits"]

        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes["data"]
        assert mounts["data"] == _env(deployment)["OPSGATE_DATA_DIR"]
        assert volumes["config"]["configMap"]["name"] == "opsgate-config"
        assert mounts["config"] == _env(deployment)["OPSGATE_CONFIG_DIR"]

        sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] >= sleep + 30  # uvicorn's graceful timeout


@needs_helm
def test_secrets_are_referenced_by_name_never_inlined(tmp_path: Path) -> None:
    docs = _render(tmp_path)
    assert not [d for d in docs if d["kind"] == "Secret"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in _container(deployment)["env"]
            if "valueFrom" in e
        }
        assert list(refs) == _secret_variables()
        for name, ref in refs.items():
            assert ref["name"] == "opsgate"
            assert ref["key"] == name
            assert ref["optional"] is (name != "OPSGATE_STORE_URL")


@needs_helm
def test_sqlite_in_several_pods_fails_the_render(tmp_path: Path) -> None:
    sqlite = {"store": {"kind": "sqlite"}}
    assert "web.replicaCount 2: each pod would keep its own database" in _refused(tmp_path, sqlite)
    assert "scheduler pod would keep its own database" in _refused(
        tmp_path, {**sqlite, "web": {"replicaCount": 1}}
    )
    assert "neither postgresql nor sqlite" in _refused(tmp_path, {"store": {"kind": "mysql"}})
    trial_secret = {"existingSecret": "", "values": {"OPSGATE_STORE_URL": "sqlite:///x.db"}}
    assert "needs a PostgreSQL SQLAlchemy URL" in _refused(tmp_path, {"secrets": trial_secret})


@needs_helm
def test_sqlite_in_one_pod_runs_the_scheduler_there(tmp_path: Path) -> None:
    docs = _render(
        tmp_path,
        {"store": {"kind": "sqlite"}, "web": {"replicaCount": 1}, "scheduler": {"enabled": False}},
    )
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == ["opsgate-web"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    web = _one(docs, "Deployment")
    assert web["spec"]["replicas"] == 1
    assert web["spec"]["strategy"] == {"type": "Recreate"}
    env = _env(web)
    assert env["OPSGATE_SCHEDULER"] == "true"
    assert "OPSGATE_STORE_URL" not in env


@needs_helm
def test_inline_config_becomes_a_configmap_that_restarts_the_pods(tmp_path: Path) -> None:
    values = _inline_config()
    docs = _render(tmp_path, values)
    config_map = _one(docs, "ConfigMap")
    assert config_map["metadata"]["name"] == "opsgate-config"
    assert config_map["data"] == values["config"]["files"]
    changed = _inline_config(CLUSTER_SETTINGS + "default_env: prod\n")
    checksums = []
    for rendered in (docs, _render(tmp_path, changed)):
        web = _one(rendered, "Deployment", "opsgate-web")
        checksums.append(web["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
    assert checksums[0] != checksums[1]


@needs_helm
def test_inline_config_that_cannot_run_in_several_pods_fails_the_render(tmp_path: Path) -> None:
    local = CLUSTER_SETTINGS.replace("backend: github", "backend: local")
    assert "gitops.backend must be github" in _refused(tmp_path, _inline_config(local))
    polling = CLUSTER_SETTINGS.replace("mode: webhook", "mode: polling")
    assert "chat.telegram.mode must be webhook" in _refused(tmp_path, _inline_config(polling))
    values = _inline_config()
    del values["config"]["files"]["users.yaml"]
    assert "config.files: users.yaml is required" in _refused(tmp_path, values)


@needs_helm
def test_a_trial_secret_from_values_is_created_and_referenced(tmp_path: Path) -> None:
    url = "postgresql+psycopg://opsgate:pw@postgres:5432/opsgate"
    docs = _render(
        tmp_path, {"secrets": {"existingSecret": "", "values": {"OPSGATE_STORE_URL": url}}}
    )
    secret = _one(docs, "Secret")
    assert secret["stringData"] == {"OPSGATE_STORE_URL": url}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        ref = _env(deployment)["OPSGATE_STORE_URL"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert "checksum/secret" in deployment["spec"]["template"]["metadata"]["annotations"]


@needs_helm
def test_ingress_exposes_only_the_webhooks(tmp_path: Path) -> None:
    docs = _render(tmp_path, {"ingress": {"enabled": True, "className": "nginx"}})
    ingress = _one(docs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "opsgate.example.com"
    paths = rule["http"]["paths"]
    assert [p["path"] for p in paths] == WEBHOOK_PATHS
    for path in paths:
        assert path["pathType"] == "Exact"
        assert path["backend"]["service"] == {"name": "opsgate", "port": {"name": "http"}}


@needs_helm
def test_monitoring_scrapes_every_pod_as_job_opsgate_with_the_shipped_rules(
    tmp_path: Path,
) -> None:
    docs = _render(
        tmp_path,
        {"metrics": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}},
    )
    monitor = _one(docs, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        assert _labels_match(selector, deployment["spec"]["template"]["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": "opsgate"} in endpoint[
        "relabelings"
    ]
    assert _one(docs, "PrometheusRule")["spec"] == _load(RULES)
