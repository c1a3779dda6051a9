"""The YAML writer: whatever it writes, a YAML 1.1 reader (PyYAML) reads back equal."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tidings_operator.yamltext import dumps, dumps_all

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
keys = st.text(min_size=1)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trips_through_pyyaml(value: Any) -> None:
    assert yaml.safe_load(dumps(value)) == value


@given(st.lists(st.dictionaries(keys, json_values, max_size=3), min_size=1, max_size=3))
def test_documents_round_trip(docs: list[dict[str, Any]]) -> None:
    assert list(yaml.safe_load_all(dumps_all(docs))) == docs


@pytest.mark.parametrize(
    "text",
    [
        "yes", "No", "on", "OFF", "y", "n", "true", "null", "~", "", " lead", "trail ",
        "1e3", "0x1f", "010", "1_000", "1:20", ".inf", "-.inf", ".nan", "2024-01-01",
        "a: b", "a #b", "#c", "- x", "? x", "[x]", "{x}", "*a", "&a", "!t", "|x", ">x",
        "%x", "@x", "`x", "'x'", '"x"', "x\ty", "multi\nline", "multi\nline\n", "\n",
        "line\u2028sep", "tab\tend\n", "emoji \U0001f600", "ctrl\x07", "x\n\n",
    ],
)  # fmt: skip
def test_tricky_strings_stay_strings(text: str) -> None:
    assert yaml.safe_load(dumps({"k": text, "l": [text]})) == {"k": text, "l": [text]}


def test_a_trailing_newline_is_never_plain() -> None:
    assert dumps({"A\n": None}) == '"A\\n": null\n'


def test_a_scalar_document_cannot_end_itself() -> None:
    text = "a\n---\nb"
    assert yaml.safe_load(dumps(text)) == text
    assert list(yaml.safe_load_all(dumps_all([text, {"k": text}]))) == [text, {"k": text}]


def test_plain_where_safe_and_quoted_where_not() -> None:
    text = dumps({"name": "us-east", "flag": "yes", "url": "http://x", "port": "8080"})
    assert text == 'name: us-east\nflag: "yes"\nurl: "http://x"\nport: "8080"\n'


def test_floats_always_read_back_as_floats() -> None:
    for value in (1e-05, 1e16, 0.5, 500.0, -2.5e-300):
        loaded = yaml.safe_load(dumps(value))
        assert isinstance(loaded, float)
        assert loaded == value


def test_literal_block_for_multiline_text() -> None:
    assert dumps({"doc": "a\nb\n"}) == "doc: |\n  a\n  b\n"
    assert dumps({"doc": "a\nb"}) == "doc: |-\n  a\n  b\n"


def test_lists_sit_at_their_keys_indentation() -> None:
    assert dumps({"a": [{"b": 1, "c": [2]}]}) == "a:\n- b: 1\n  c:\n  - 2\n"


def test_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(ValueError, match="no JSON form"):
        dumps(math.inf)
    with pytest.raises(TypeError, match="keys must be strings"):
        dumps({1: "x"})  # type: ignore[dict-item]
