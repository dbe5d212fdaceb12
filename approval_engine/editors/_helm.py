"""Reads and edits one scalar in a Helm values file, leaving every other byte as it was."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean

from approval_engine.editors._scalar import (
    Scalar,
    canonical,
    check_scalar,
    describe,
    edit_error,
    escape_double_quoted,
)

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./@+:-]*")
# Helm reads values with go-yaml, which still follows YAML 1.1: these words are booleans or
# null there, and digit strings like 1:20, 0x1F or 2024-01-01 are numbers or dates.
_YAML11_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_YAML11_NUMBERISH = re.compile(r"[-+]?(?:[0-9][0-9_:.eE+-]*|0[xXoObB][0-9a-fA-F_]*)")


@dataclass(frozen=True)
class _Entry:
    key: ScalarNode
    value: Node
    inherited: bool  # came in through a `<<` merge key


@dataclass(frozen=True)
class _Located:
    keys: tuple[object, ...]
    key_node: ScalarNode
    node: ScalarNode
    in_flow: bool
    inherited: bool


def read_helm_value(text: str, key: str, *, path: str = "values.yaml") -> Scalar:
    """The scalar at a dotted key such as `autoscaling.minReplicas`."""
    yaml = YAML(typ="rt")
    _, root = _parse(yaml, text, path=path, key=key)
    located = _locate(root, key, path=path)
    value = _builtin(yaml.constructor.construct_object(located.node, deep=True))
    if value is None:
        raise edit_error(path, key, "has no value (null)")
    if not isinstance(value, bool | int | float | str):
        kind = type(value).__name__
        raise edit_error(path, key, f"holds a {kind}, not a number, true/false or text")
    return value


def edit_helm_value(text: str, key: str, value: Scalar, *, path: str = "values.yaml") -> str:
    """The text with only the value at `key` rewritten; everything else stays byte for byte."""
    value = check_scalar(value, path=path, key=key)
    yaml = YAML(typ="rt")
    data, root = _parse(yaml, text, path=path, key=key)
    located = _locate(root, key, path=path)
    node = located.node
    if located.inherited:
        raise edit_error(
            path, key, "is inherited through a YAML merge key (<<); edit the mapping it comes from"
        )
    if node.style in ("|", ">"):
        raise edit_error(path, key, "is a multi-line block string (| or >); edit it by hand")
    if getattr(node, "anchor", None) is not None:
        raise edit_error(
            path, key, "is shared through a YAML anchor (&); editing it would change other keys"
        )
    old = _builtin(yaml.constructor.construct_object(node, deep=True))
    if canonical(old) == canonical(value):
        return text

    start, end = node.start_mark.index, node.end_mark.index
    raw = text[start:end]
    if raw.startswith(("!", "&", "*")):
        raise edit_error(path, key, "has an explicit YAML tag or anchor; edit it by hand")
    rendered = _render(value, style=node.style, in_flow=located.in_flow)
    if raw == "" and node.tag == _NULL_TAG:
        # An empty value has no span of its own: its marks point past the line break.
        colon = _colon_after(text, located.key_node.end_mark.index)
        if colon is None:
            raise edit_error(path, key, "has an empty value this editor cannot place; edit by hand")
        start = end = colon + 1
        rendered = " " + rendered
    after = text[:start] + rendered + text[end:]
    _verify(data, after, located.keys, value, path=path, key=key)
    return after


def _parse(yaml: YAML, text: str, *, path: str, key: str) -> tuple[object, Node]:
    """The loaded data and the node tree, which alone knows where each value sits."""
    try:
        # Loading rejects duplicate keys, which composing lets through. The node tree comes from
        # a parse of its own because constructing data rewrites merge keys (<<) in the nodes.
        data, root = _parse_text(text)
    except YAMLError as e:
        raise edit_error(
            path, key, f"the file is not valid YAML ({_yaml_problem(e)}); fix it first"
        ) from e
    if root is None:
        raise edit_error(path, key, "the file is empty")
    return data, root


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> tuple[object, Node | None]:
    """Parsing is the slow part (pure-Python ruamel); a file is read for many keys, so keep it.

    Callers only read the data and nodes, never change them, so sharing them is safe.
    """
    yaml = YAML(typ="rt")
    return yaml.load(text), yaml.compose(text)


def _yaml_problem(error: YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    if context := getattr(error, "context", None):
        problem = f"{context}, {problem}"
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _locate(root: Node, key: str, *, path: str) -> _Located:
    parts = key.split(".")
    if not key or "" in parts:
        raise edit_error(path, key, "give a dotted key such as autoscaling.minReplicas")
    construct = YAML(typ="rt").constructor.construct_object
    keys: list[object] = []
    node, done, inherited = root, 0, False
    while True:
        where = repr(".".join(parts[:done])) if done else "the top level"
        if not isinstance(node, MappingNode):
            raise edit_error(path, key, f"{where} is {_kind(node)}, not a mapping of keys")
        parent = node
        entry, done = _child(parent, parts, done, path=path, key=key, where=where)
        keys.append(construct(entry.key, deep=True))
        inherited = inherited or entry.inherited
        node = entry.value
        if done == len(parts):
            break
    if not isinstance(node, ScalarNode):
        raise edit_error(path, key, f"is {_kind(node)}, not a single value; name a key inside it")
    return _Located(tuple(keys), entry.key, node, bool(parent.flow_style), inherited)


def _child(
    mapping: MappingNode, parts: list[str], done: int, *, path: str, key: str, where: str
) -> tuple[_Entry, int]:
    entries = _entries(mapping)
    # Keys may contain dots themselves (annotations do), so longer joins are tried too.
    for end in range(done + 1, len(parts) + 1):
        wanted = ".".join(parts[done:end])
        found = [e for e in entries if e.key.value == wanted]
        if len(found) > 1 and not found[1].inherited:
            raise edit_error(path, key, f"{where} has the key {wanted!r} more than once")
        if found:
            return found[0], end
    names = list(dict.fromkeys(e.key.value for e in entries))
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    raise edit_error(path, key, f"no such key; {where} has: {shown or 'no keys'}")


def _entries(mapping: MappingNode) -> list[_Entry]:
    """The mapping's own keys, then those merged in with `<<`, in the order YAML applies them."""
    own = [
        _Entry(k, v, inherited=False)
        for k, v in mapping.value
        if isinstance(k, ScalarNode) and k.tag != _MERGE_TAG
    ]
    merged = []
    for k, v in mapping.value:
        if isinstance(k, ScalarNode) and k.tag == _MERGE_TAG:
            sources = v.value if isinstance(v, SequenceNode) else [v]
            for source in sources:
                if isinstance(source, MappingNode):
                    merged += [_Entry(e.key, e.value, inherited=True) for e in _entries(source)]
    return own + merged


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a single value"


def _colon_after(text: str, index: int) -> int | None:
    while index < len(text) and text[index] in " \t":
        index += 1
    return index if text.startswith(":", index) else None


def _builtin(value: object) -> object:
    """ruamel's scalar subclasses as plain Python values (ScalarBoolean is an int there)."""
    if isinstance(value, ScalarBoolean):
        return bool(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _render(value: Scalar, *, style: str | None, in_flow: bool) -> str:
    """The value written as YAML, in the old quoting style where the value is text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        mantissa, e, exponent = repr(value).partition("e")
        # YAML 1.1 readers (go-yaml) want a dot in the mantissa: 1.0e-05, not 1e-05.
        return mantissa + ("" if "." in mantissa else ".0") + e + exponent if e else mantissa
    if style == "'" and value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_is_safe(value, in_flow=in_flow):
        return value
    return _double_quoted(value)


def _plain_is_safe(value: str, *, in_flow: bool) -> bool:
    if not _PLAIN_CHARS.fullmatch(value) or value.endswith(":"):
        return False
    if in_flow and ":" in value:
        return False
    if value.lower() in _YAML11_WORDS or _YAML11_NUMBERISH.fullmatch(value):
        return False
    try:
        loaded = YAML(typ="rt").load(value)
    except YAMLError:
        return False
    return type(loaded) is str and loaded == value


def _double_quoted(value: str) -> str:
    return '"' + escape_double_quoted(value) + '"'


def _verify(
    before: object, after: str, keys: tuple[object, ...], value: Scalar, *, path: str, key: str
) -> None:
    """Re-read the new text and insist that exactly the one key changed, to the new value."""
    expected = _tree(before)
    try:
        actual = _tree(YAML(typ="rt").load(after))
    except YAMLError as e:
        raise edit_error(path, key, f"writing {describe(value)} would break the YAML") from e
    parent: object = None
    slot = expected
    for k in keys:
        parent, slot = slot, slot.get(canonical(k)) if isinstance(slot, dict) else None
    if isinstance(parent, dict):
        parent[canonical(keys[-1])] = canonical(value)
    if actual != expected:
        changed = ", ".join(_changed(expected, actual, ())) or "the document"
        raise edit_error(
            path,
            key,
            f"writing {describe(value)} would not change just this key (differs at: {changed}); "
            "edit it by hand",
        )


def _tree(data: object) -> object:
    if isinstance(data, dict):
        return {canonical(_builtin(k)): _tree(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_tree(v) for v in data]
    return canonical(_builtin(data))


def _changed(a: object, b: object, where: tuple[str, ...]) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in [*a, *(k for k in b if k not in a)]:
            name = (*where, str(k[1]) if isinstance(k, tuple) else str(k))
            out += _changed(a.get(k), b.get(k), name) if k in a and k in b else [".".join(name)]
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [p for i, (x, y) in pairs for p in _changed(x, y, (*where, str(i)))]
    return [] if a == b else [".".join(where) or "the document"]
