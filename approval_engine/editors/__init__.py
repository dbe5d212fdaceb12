"""File editors: change one value in a Helm values or Terraform file, keep every other byte."""

# Every failure is an approval_engine.errors.EditError whose message names the file, the key
# and the reason in words a chat user can act on.

from approval_engine.editors._diff import unified_diff
from approval_engine.editors._dispatch import edit_value, read_value
from approval_engine.editors._helm import edit_helm_value, read_helm_value
from approval_engine.editors._scalar import Scalar
from approval_engine.editors._terraform import edit_terraform_value, read_terraform_value

__all__ = [
    "Scalar",
    "edit_helm_value",
    "edit_terraform_value",
    "edit_value",
    "read_helm_value",
    "read_terraform_value",
    "read_value",
    "unified_diff",
]
