"""JSON on the message path: orjson, with the standard library's answers kept.

Every frame, envelope and wake-up is encoded or decoded at least once per hop; orjson
does it several times faster than ``json``. Where orjson refuses what the standard
library accepts (a lone surrogate escape such as ``"\\ud800"``, ``NaN``, a lone
surrogate in a string to encode), the standard library decides, so a client sees the
same answers as before: the service's own checks still name the field at fault.

``orjson`` writes non-ASCII characters as UTF-8 where ``json`` escapes them; both are
the same JSON text to any parser.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # int keys become strings, as json.dumps does


def loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # raises ValueError if it is not JSON either


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def dumps_text(value: Any) -> str:
    """JSON text for a WebSocket text frame."""
    return dumps(value).decode()
