"""A small YAML writer for JSON-shaped data: the CRDs and golden manifests.

Output is block style, keys in insertion order, byte-for-byte stable, so a regenerated
CRD can be compared with the committed file as text. Strings are written plain only when
no YAML 1.1 reader could take them for anything else (``yes``, ``1e3``, ``0x1f``...);
otherwise double-quoted with JSON escapes, which are also YAML escapes; multi-line strings
use literal blocks. It writes; it never reads (tests read the output back with PyYAML).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias, TypeGuard

Json: TypeAlias = "bool | int | float | str | Sequence[Json] | Mapping[str, Json] | None"

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9 _./()',+=;@~<>-]*")
"""Safe as a plain scalar in block context: starts with no indicator or digit, holds no
``:`` or ``#``."""
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
"""Plain words YAML 1.1 reads as booleans or null."""


def dumps(document: Json) -> str:
    """One YAML document, ending with a newline."""
    return "\n".join(_block(document, 0)) + "\n"


def dumps_all(documents: Iterable[Json]) -> str:
    """Several documents separated by ``---``."""
    return "---\n".join(dumps(doc) for doc in documents)


def _block(value: Json, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping) and value:
        lines: list[str] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, not {key!r}")
            head = f"{pad}{_key(key)}:"
            if _is_collection(item) and item:
                lines.append(head)
                # Lists sit at their key's indentation, as kubectl and PyYAML write them.
                lines.extend(_block(item, indent if _is_list(item) else indent + 2))
            else:
                lines.extend(_inline(head, item, indent))
        return lines
    if _is_list(value) and value:
        lines = []
        for item in value:
            if _is_collection(item) and item:
                nested = _block(item, indent + 2)
                nested[0] = f"{pad}- {nested[0][indent + 2 :]}"
                lines.extend(nested)
            else:
                lines.extend(_inline(f"{pad}-", item, indent))
        return lines
    # A bare scalar document: never a literal block, whose "---" line would end it.
    return [_scalar(value)]


def _inline(head: str, value: Json, indent: int) -> list[str]:
    """``head`` followed by a scalar or an empty collection (a literal block may follow
    on the next lines)."""
    sep = " " if head else ""
    if isinstance(value, str) and _literal_ok(value):
        marker = "|" if value.endswith("\n") else "|-"
        body = value.removesuffix("\n").split("\n")
        inner = " " * (indent + 2)
        return [f"{head}{sep}{marker}", *(f"{inner}{line}" if line else "" for line in body)]
    return [f"{head}{sep}{_scalar(value)}"]


def _is_list(value: Json) -> TypeGuard[Sequence[Json]]:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_collection(value: Json) -> bool:
    return isinstance(value, Mapping) or _is_list(value)


def _key(key: str) -> str:
    return key if _plain_ok(key) else _quoted(key)


def _scalar(value: Json) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return value if _plain_ok(value) else _quoted(value)
    if isinstance(value, Mapping):
        return "{}"
    return "[]"


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON form")
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:  # YAML 1.1 floats need a dot: 1e-05 would read as a string
        mantissa += ".0"
    return f"{mantissa}{e}{exponent}"


def _plain_ok(text: str) -> bool:
    return bool(_PLAIN.fullmatch(text)) and not text.endswith(" ") and text.lower() not in _RESERVED


def _literal_ok(text: str) -> bool:
    """Multi-line text a literal block keeps exactly: no leading space on the first line
    (it would set the indentation), no trailing spaces, no control characters, at most
    one final newline."""
    if "\n" not in text.removesuffix("\n") or text.endswith("\n\n"):
        return False
    if text.startswith((" ", "\n")):
        return False
    lines = text.removesuffix("\n").split("\n")
    return all(line == line.rstrip() and all(ch.isprintable() for ch in line) for line in lines)


def _quoted(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    # JSON leaves line and paragraph separators and other unprintables raw; YAML would
    # fold or reject them, so they get escapes too.
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in encoded)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
