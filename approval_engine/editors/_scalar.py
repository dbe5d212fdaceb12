"""The scalar values editors read and write, and the checks both file formats share."""

from __future__ import annotations

import math
from typing import TypeAlias

from approval_engine.errors import EditError

Scalar: TypeAlias = int | float | bool | str


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_double_quoted(value: str) -> str:
    """The body of a double-quoted string, as YAML and HCL both read it (no quotes added)."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


def edit_error(path: str, key: str, reason: str) -> EditError:
    """An EditError whose text names the file, the key and what to do about it."""
    return EditError(f"{path}: {key}: {reason}")


def check_scalar(value: object, *, path: str, key: str) -> Scalar:
    """Refuse values a file cannot hold as one plain scalar."""
    if not isinstance(value, bool | int | float | str):
        kind = "null" if value is None else f"a {type(value).__name__}"
        raise edit_error(path, key, f"cannot write {kind}; give a number, true/false or text")
    if isinstance(value, float) and not math.isfinite(value):
        raise edit_error(path, key, f"cannot write {value!r}; give a finite number")
    return value


def canonical(value: object) -> object:
    """A form where equal means the same type and the same value.

    Plain `==` would say True == 1 == 1.0 and nan != nan, which is wrong both ways for
    deciding whether a file changed.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", repr(float(value)))
    if isinstance(value, str):
        return ("str", str(value))
    if value is None:
        return ("null", None)
    return (type(value).__name__, repr(value))


def describe(value: Scalar) -> str:
    """How a value reads in a message: text quoted, numbers and booleans as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
