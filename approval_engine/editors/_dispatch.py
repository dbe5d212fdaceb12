"""Picks the Helm or the Terraform editor from a file's name."""

from __future__ import annotations

from typing import Literal

from approval_engine.editors._helm import edit_helm_value, read_helm_value
from approval_engine.editors._scalar import Scalar, edit_error
from approval_engine.editors._terraform import edit_terraform_value, read_terraform_value


def read_value(text: str, key: str, *, path: str) -> Scalar:
    """The value at `key`: a dotted key in .yaml/.yml, an address in .tf/.tfvars."""
    if _kind(path, key) == "helm":
        return read_helm_value(text, key, path=path)
    return read_terraform_value(text, key, path=path)


def edit_value(text: str, key: str, value: Scalar, *, path: str) -> str:
    """The text with only the value at `key` changed, by the editor for the file's type."""
    if _kind(path, key) == "helm":
        return edit_helm_value(text, key, value, path=path)
    return edit_terraform_value(text, key, value, path=path)


def _kind(path: str, key: str) -> Literal["helm", "terraform"]:
    name = path.lower()
    if name.endswith((".yaml", ".yml")):
        return "helm"
    if name.endswith((".tf", ".tfvars")):
        return "terraform"
    raise edit_error(
        path, key, "can only edit Helm values (.yaml, .yml) or Terraform (.tf, .tfvars) files"
    )
