"""Pydantic models -> Kubernetes structural OpenAPI v3 schemas.

Pydantic writes JSON Schema; a CRD wants a structural schema: no ``$ref`` (definitions
inlined), a ``type`` on every node, optional fields as plain properties instead of
``anyOf`` with null, ``int-or-string`` spelled the Kubernetes way, no ``const`` and no
numeric ``exclusiveMinimum``. Defaults of nested objects become the object's non-default
part (``{}`` mostly), so the API server applies the nested defaults too, as
kubebuilder's ``default={}`` idiom does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

Schema = dict[str, Any]

_VALIDATIONS = "x-kubernetes-validations"
_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "anyOf",
    "required",
    "properties",
    "items",
    "additionalProperties",
)


class _WithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves ``default_factory`` out of JSON Schema; a CRD needs it."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            # Whole, not just the non-defaults: the API server checks CEL rules against
            # a default without filling the defaults nested in it.
            return value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return value if value is not None else NoDefault


def structural_schema(model: type[BaseModel], *, defaults: bool = True) -> Schema:
    """The structural schema of ``model``'s JSON form; ``defaults=False`` leaves the
    defaults out (a status is written whole by the operator, never defaulted)."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    defs: Mapping[str, Schema] = raw.pop("$defs", {})
    return _convert(raw, defs, defaults)


def _convert(node: Mapping[str, Any], defs: Mapping[str, Schema], defaults: bool) -> Schema:
    node = _resolve(dict(node), defs)
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "description":
            # kubectl explain reflows text anyway; reST double backticks read as noise there
            out[key] = " ".join(str(value).split()).replace("``", "`")
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, defaults) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, defaults)
        elif key == "additionalProperties":
            if isinstance(value, Mapping):
                out[key] = _convert(value, defs, defaults)
            # ``false`` is pydantic's extra="forbid"; the API server prunes unknown fields
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key == _VALIDATIONS:
            out[key] = [{"rule": r["rule"], **r} for r in value]  # the rule reads first
        elif key == "default":
            if defaults and _keep_default(value, node):
                out[key] = value
        else:
            out[key] = value
    return _ordered(out)


def _resolve(node: Schema, defs: Mapping[str, Schema]) -> Schema:
    """Inline ``$ref`` and unwrap ``anyOf [X, null]`` until the node stands alone."""
    while True:
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            members = [m for m in node.pop("anyOf") if m.get("type") != "null"]
            if node.get("default", NoDefault) is None:
                del node["default"]
            if len(members) == 1:
                node = _merge(members[0], node)
            elif {m.get("type") for m in members} == {"integer", "string"}:
                node = {"anyOf": members, "x-kubernetes-int-or-string": True, **node}
            else:
                raise ValueError(f"a CRD schema cannot express anyOf {members}")
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = _merge(node.pop("allOf")[0], node)
        elif "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[-1]
            node = _merge(dict(defs[name]), node)
        else:
            return node


def _merge(base: Schema, field: Schema) -> Schema:
    """The field's own keys win over its type's (its description, its default); CEL
    rules of both apply."""
    merged = {**base, **field}
    rules = [*base.get(_VALIDATIONS, []), *field.get(_VALIDATIONS, [])]
    if rules:
        merged[_VALIDATIONS] = rules
    return merged


def _keep_default(value: Any, node: Mapping[str, Any]) -> bool:
    """Empty lists and maps are what absence means already; ``{}`` stays on objects
    with properties, so their nested defaults apply."""
    if value is None or value == []:
        return False
    return not (value == {} and "properties" not in node)


def _ordered(node: Schema) -> Schema:
    known = [k for k in _ORDER if k in node]
    rest = sorted(k for k in node if k not in _ORDER)
    return {k: node[k] for k in (*known, *rest)}
