"""Reads and edits one literal attribute in a Terraform file, leaving every other byte as it was."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import hcl2

from approval_engine.editors._hcl_scan import (
    Attribute,
    Block,
    HclScanError,
    scan,
    string_literal,
)
from approval_engine.editors._scalar import (
    Scalar,
    canonical,
    check_scalar,
    edit_error,
    escape_double_quoted,
)

# How many labels each top-level block type takes; a first segment not listed here means
# Terraform's own short form, `aws_db_instance.orders.instance_class`, of a resource.
_LABELS = {
    "resource": 2,
    "data": 2,
    "module": 1,
    "variable": 1,
    "output": 1,
    "provider": 1,
    "locals": 0,
    "terraform": 0,
}
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


@dataclass(frozen=True)
class _Address:
    block_type: str  # "" for an attribute at the top of the file, as in .tfvars
    labels: tuple[str, ...]
    nested: tuple[str, ...]
    attribute: str

    @property
    def names(self) -> tuple[str, ...]:
        head = (self.block_type, *self.labels) if self.block_type else ()
        return (*head, *self.nested, self.attribute)


def read_terraform_value(text: str, address: str, *, path: str = "main.tf") -> Scalar:
    """The literal value of an attribute such as `module.search_hpa.min_replicas`."""
    _parse(text, path=path, key=address)
    attribute = _locate(text, _address(address, path=path), path=path, key=address)
    value = _decode(text[attribute.value_start : attribute.value_end], path=path, key=address)
    if value is None:
        raise edit_error(path, address, "is null")
    return value


def edit_terraform_value(text: str, address: str, value: Scalar, *, path: str = "main.tf") -> str:
    """The text with only that attribute's value rewritten; comments and layout stay."""
    value = check_scalar(value, path=path, key=address)
    before = _parse(text, path=path, key=address)
    parsed = _address(address, path=path)
    attribute = _locate(text, parsed, path=path, key=address)
    start, end = attribute.value_start, attribute.value_end
    if _same(_decode(text[start:end], path=path, key=address), value):
        return text
    rendered = _render(value)
    after = text[:start] + rendered + text[end:]
    _verify(before, after, parsed, rendered, path=path, key=address)
    return after


def _parse(text: str, *, path: str, key: str) -> Any:
    try:
        return _loads(text)
    # python-hcl2 raises lark's exceptions, and others from its transformer; any of them
    # means the same thing here.
    except Exception as e:
        raise edit_error(
            path, key, f"the file is not valid HCL ({_first_line(e)}); fix it first"
        ) from e


@functools.lru_cache(maxsize=256)
def _loads(text: str) -> Any:
    """python-hcl2 is slow and a file is read for many attributes; callers never change it."""
    return hcl2.loads(text)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _address(address: str, *, path: str) -> _Address:
    parts = address.split(".")
    if not address or "" in parts:
        raise edit_error(path, address, "give an address such as module.search_hpa.min_replicas")
    if len(parts) == 1 and address not in _LABELS:
        return _Address("", (), (), address)
    first = 1 if parts[0] in _LABELS else 0
    block_type = parts[0] if first else "resource"
    count = _LABELS[block_type]
    labels, rest = parts[first : first + count], parts[first + count :]
    if len(labels) < count or not rest:
        raise edit_error(
            path,
            address,
            f"a {block_type} block takes {count} label(s) and then an attribute name, "
            "as in resource.aws_db_instance.orders.instance_class",
        )
    return _Address(block_type, tuple(labels), tuple(rest[:-1]), rest[-1])


def _locate(text: str, address: _Address, *, path: str, key: str) -> Attribute:
    try:
        root = scan(text)
    except HclScanError as e:
        raise edit_error(path, key, f"cannot follow the HCL ({e}); edit it by hand") from e
    where = _title(address.block_type, address.labels) if address.block_type else "the file"
    bodies: list[Block] = [root]
    if address.block_type:
        bodies = [
            b for b in root.blocks if b.type == address.block_type and b.labels == address.labels
        ]
        if not bodies:
            present = [
                _title(b.type, b.labels) for b in root.blocks if b.type == address.block_type
            ]
            have = f"; the file has {', '.join(present)}" if present else ""
            raise edit_error(path, key, f"no {where} block{have}")
        if len(bodies) > 1 and address.labels:
            lines = ", ".join(str(b.line) for b in bodies)
            raise edit_error(path, key, f"{where} is defined more than once (lines {lines})")
    for name in address.nested:
        children = [c for b in bodies for c in b.blocks if c.type == name]
        if len(children) != 1 or children[0].labels:
            many = f"{len(children)} {name} block(s)" if children else f"no {name} block"
            raise edit_error(path, key, f"{where} has {many}; name a single nested block")
        bodies, where = children, f"the {name} block of {where}"
    found = [a for b in bodies for a in b.attributes if a.name == address.attribute]
    if len(found) > 1:
        lines = ", ".join(str(a.line) for a in found)
        raise edit_error(path, key, f"is set more than once in {where} (lines {lines})")
    if found:
        return found[0]
    if any(c.type == address.attribute for b in bodies for c in b.blocks):
        raise edit_error(path, key, "is a nested block, not an attribute; name an attribute in it")
    names = sorted({a.name for b in bodies for a in b.attributes})
    raise edit_error(path, key, f"no such attribute; {where} sets {', '.join(names) or 'nothing'}")


def _same(old: Scalar | None, new: Scalar) -> bool:
    # Terraform has one number type, so 2 and 2.0 are the same value there; YAML keeps them apart.
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
    return old == new if numbers else canonical(old) == canonical(new)


def _title(block_type: str, labels: tuple[str, ...]) -> str:
    return " ".join([block_type, *(f'"{label}"' for label in labels)])


def _decode(raw: str, *, path: str, key: str) -> Scalar | None:
    """The value of a literal; an EditError for anything computed, listed or templated."""
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    number = _NUMBER.fullmatch(raw)
    if number:
        return float(raw) if number.group(1) or number.group(2) else int(raw)
    text = string_literal(raw)
    if text is not None:
        return text
    shown = raw if len(raw) <= 40 and "\n" not in raw else raw.splitlines()[0][:40] + " …"
    kinds = {"<<": "a heredoc", "[": "a list", "{": "an object", '"': "a string template"}
    kind = next((k for start, k in kinds.items() if raw.startswith(start)), "an expression")
    raise edit_error(
        path,
        key,
        f"is {kind} ({shown}), not a literal number, true/false or string; edit it by hand",
    )


def _render(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # `${` and `%{` start templates; doubling the sigil writes them literally.
    escaped = escape_double_quoted(value)
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def _verify(
    before: Any, after_text: str, address: _Address, rendered: str, *, path: str, key: str
) -> None:
    """Parse the result and insist that exactly that one attribute changed, as intended."""
    try:
        after = hcl2.loads(after_text)
        # Parsing the new literal on its own gives python-hcl2's form of it, whatever its version.
        expected = hcl2.loads(f"x = {rendered}\n")["x"]
    except Exception as e:
        # Terraform may well accept it: python-hcl2 8 rejects a lone escaped `$${`, for one.
        raise edit_error(
            path,
            key,
            f"cannot check the file after writing {rendered}: python-hcl2 fails to parse it "
            f"({_first_line(e)}); edit it by hand",
        ) from e
    changed = _differences(before, after, ())
    ok = (
        len(changed) == 1
        and _names(changed[0]) == address.names
        and canonical(_at(after, changed[0])) == canonical(expected)
    )
    if not ok:
        shown = ", ".join(".".join(_names(p)) for p in changed) or "nothing"
        raise edit_error(
            path,
            key,
            f"writing {rendered} would not change just this attribute "
            f"(changed: {shown}); edit it by hand",
        )


def _differences(a: Any, b: Any, where: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [p for k in a for p in _differences(a[k], b[k], (*where, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for p in _differences(x, y, (*where, i))
        ]
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return [where]
    return [] if canonical(a) == canonical(b) else [where]


def _names(where: tuple[str | int, ...]) -> tuple[str, ...]:
    """A tree path as address parts: list positions dropped, python-hcl2 8's label quotes too."""
    return tuple(
        p[1:-1] if p[:1] == p[-1:] == '"' and len(p) > 1 else p for p in where if isinstance(p, str)
    )


def _at(tree: Any, where: tuple[str | int, ...]) -> Any:
    for step in where:
        tree = tree[step]
    return tree
