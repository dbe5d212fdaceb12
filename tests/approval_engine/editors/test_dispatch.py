"""read_value and edit_value pick the editor from the file name."""

from __future__ import annotations

import pytest

from approval_engine.editors import edit_value, read_value
from approval_engine.errors import EditError

VALUES = "autoscaling:\n  minReplicas: 2 # floor\n"
MAIN_TF = 'module "hpa" {\n  min_replicas = 2 # floor\n}\n'


@pytest.mark.parametrize("path", ["values.yaml", "charts/x/values-prod.yml", "VALUES.YAML"])
def test_yaml_files_go_to_the_helm_editor(path: str) -> None:
    assert read_value(VALUES, "autoscaling.minReplicas", path=path) == 2
    after = edit_value(VALUES, "autoscaling.minReplicas", 3, path=path)
    assert after == "autoscaling:\n  minReplicas: 3 # floor\n"


@pytest.mark.parametrize("path", ["main.tf", "terraform/environments/prod/hpa.tf"])
def test_tf_files_go_to_the_terraform_editor(path: str) -> None:
    assert read_value(MAIN_TF, "module.hpa.min_replicas", path=path) == 2
    after = edit_value(MAIN_TF, "module.hpa.min_replicas", 3, path=path)
    assert after == MAIN_TF.replace("= 2", "= 3")


def test_tfvars_files_go_to_the_terraform_editor() -> None:
    assert edit_value("replicas = 2\n", "replicas", 4, path="prod.tfvars") == "replicas = 4\n"


@pytest.mark.parametrize("path", ["Chart.json", "main.tf.json", "values", "kustomization.toml"])
def test_other_files_are_refused_with_the_supported_kinds(path: str) -> None:
    with pytest.raises(EditError, match=r"can only edit Helm values \(\.yaml, \.yml\)") as caught:
        edit_value("{}", "a", 1, path=path)
    assert str(caught.value).startswith(f"{path}: a: ")
    with pytest.raises(EditError):
        read_value("{}", "a", path=path)


def test_errors_carry_the_path_given() -> None:
    with pytest.raises(EditError, match=r"^envs/prod/values\.yaml: autoscaling\.max: no such key"):
        edit_value(VALUES, "autoscaling.max", 1, path="envs/prod/values.yaml")
