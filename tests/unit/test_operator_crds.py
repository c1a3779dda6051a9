"""The CRDs in ``crds/`` and the chart's copies: generated from the models, structural,
defaulted like the models, with the CEL rules, printer columns and subresources the
design promises.

No API server runs here, so the structural rules Kubernetes enforces on a CRD are
checked by a small walker instead; CEL semantics are left to the envtest suite.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tidings_operator import crdgen
from tidings_operator.models import parse

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"
KINDS = {kind.kind: kind for kind in crdgen.KINDS}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def schema_of(kind: str) -> dict[str, Any]:
    version = crdgen.crd(KINDS[kind])["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node at a dotted path (``spec.kafka.partitions``; ``""``: root)."""
    node = schema
    for part in filter(None, path.split(".")):
        node = node["properties"][part]
    return node


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """What the API server's defaulting does to ``value`` (parents before children)."""
    if isinstance(value, dict) and "properties" in node:
        for name, sub in node["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {k: apply_defaults(node["additionalProperties"], v) for k, v in value.items()}
    elif isinstance(value, list) and "items" in node:
        return [apply_defaults(node["items"], v) for v in value]
    return value


def problems(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Where ``value`` breaks the schema (types, enums, bounds, patterns, required)."""
    found: list[str] = []
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            found.append(f"{path}: {value!r} is not int-or-string")
        return found
    kind = node["type"]
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if not checks[kind](value):
        return [f"{path}: {value!r} is not {kind}"]
    if "enum" in node and value not in node["enum"]:
        found.append(f"{path}: {value!r} not in {node['enum']}")
    if "minimum" in node and (
        value < node["minimum"] or (node.get("exclusiveMinimum") and value == node["minimum"])
    ):
        found.append(f"{path}: {value} below minimum")
    if "maximum" in node and value > node["maximum"]:
        found.append(f"{path}: {value} above maximum")
    if "pattern" in node and not re.search(node["pattern"], value):
        found.append(f"{path}: {value!r} does not match {node['pattern']}")
    if kind == "object":
        found += [f"{path}.{r}: required" for r in node.get("required", []) if r not in value]
        for key, sub_value in value.items():
            sub = node.get("properties", {}).get(key, node.get("additionalProperties"))
            if not isinstance(sub, dict):
                found.append(f"{path}.{key}: unknown field")
            else:
                found += problems(sub, sub_value, f"{path}.{key}")
    if kind == "array":
        for i, item in enumerate(value):
            found += problems(node["items"], item, f"{path}[{i}]")
    return found


def prune_empty(value: Any) -> Any:
    """Drop empty maps and lists: absence and emptiness mean the same to both sides."""
    if isinstance(value, dict):
        pruned = {k: prune_empty(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [prune_empty(v) for v in value]
    return value


# --------------------------------------------------------------------------- generation


def test_committed_crds_are_what_the_models_generate() -> None:
    rendered = crdgen.rendered()
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(rendered)
    for name, text in rendered.items():
        assert (CRDS / name).read_text() == text, (
            f"crds/{name} is stale: run .venv/bin/python -m tidings_operator.crdgen"
        )


def test_the_chart_installs_the_same_crds_and_kopfs_peering() -> None:
    """Helm installs ``charts/tidings/crds/``: byte for byte ``crds/`` plus kopf's two."""
    chart = REPO / "charts" / "tidings" / "crds"
    rendered = crdgen.rendered_chart()
    assert sorted(p.name for p in chart.glob("*.yaml")) == sorted(rendered)
    for name in crdgen.rendered():
        assert (chart / name).read_bytes() == (CRDS / name).read_bytes(), name
    for name, text in rendered.items():
        assert (chart / name).read_text() == text, (
            f"charts/tidings/crds/{name} is stale: run .venv/bin/python -m tidings_operator.crdgen"
        )


def test_kopf_peering_crds() -> None:
    by_kind = {
        yaml.safe_load(text)["spec"]["names"]["kind"]: yaml.safe_load(text)
        for text in crdgen.rendered_chart().values()
    }
    for kind, scope in (("KopfPeering", "Namespaced"), ("ClusterKopfPeering", "Cluster")):
        crd = by_kind[kind]
        assert crd["metadata"]["name"] == f"{kind.lower()}s.kopf.dev"
        assert (crd["spec"]["group"], crd["spec"]["scope"]) == ("kopf.dev", scope)
        (version,) = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crdgen.rendered())
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0


def test_check_mode_covers_the_chart_copies(tmp_path: Path) -> None:
    plain, chart = tmp_path / "crds", tmp_path / "chart"
    assert crdgen.main(["--out", str(plain), "--chart-out", str(chart)]) == 0
    assert sorted(p.name for p in chart.iterdir()) == sorted(crdgen.rendered_chart())
    assert crdgen.main(["--out", str(plain), "--chart-out", str(chart), "--check"]) == 0
    (chart / "chatregions.tidings.dev.yaml").write_text("# edited by hand\n")
    assert crdgen.main(["--out", str(plain), "--chart-out", str(chart), "--check"]) == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_yaml_reads_back_as_the_generated_crd(kind: str) -> None:
    definition = KINDS[kind]
    text = (CRDS / f"{definition.crd_name}.yaml").read_text()
    assert yaml.safe_load(text) == crdgen.crd(definition)


@pytest.mark.parametrize("kind", list(KINDS))
def test_names_group_and_versions(kind: str) -> None:
    crd = crdgen.crd(KINDS[kind])
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.tidings.dev"
    assert spec["group"] == "tidings.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert "tidings" in spec["names"]["categories"]
    served = [(v["name"], v["served"], v["storage"]) for v in spec["versions"]]
    assert served == [("v1beta1", True, False), ("v1alpha1", True, True)]
    for version in spec["versions"]:
        assert version["subresources"]["status"] == {}
    assert schema_of(kind)["required"] == ["spec"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_served_versions_share_one_schema_and_need_no_webhook(kind: str) -> None:
    """``conversion: None`` is only right while every version has the same schema,
    columns and subresources: the API server then rewrites ``apiVersion`` alone."""
    spec = crdgen.crd(KINDS[kind])["spec"]
    assert spec["conversion"] == {"strategy": "None"}
    new, old = spec["versions"]
    for part in ("schema", "subresources", "additionalPrinterColumns"):
        assert new[part] == old[part], part
    assert "deprecated" not in new
    assert old["deprecated"] is True
    assert "tidings.dev/v1beta1" in old["deprecationWarning"]


def test_a_body_read_at_the_old_version_parses_as_the_current_one() -> None:
    for doc in example_docs():
        check_old_version_parses(doc)


def check_old_version_parses(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "tidings.dev/v1beta1", "the examples use the current version"
    old = parse({**doc, "apiVersion": "tidings.dev/v1alpha1"})
    assert old.api_version == "tidings.dev/v1beta1"
    assert old == parse(doc)


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("kind", list(KINDS))
def test_schemas_are_structural(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        assert not {"$ref", "$defs", "allOf", "oneOf", "not", "const", "title"} & set(node), path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node.get("anyOf", [{"type": "integer"}, {"type": "string"}]) == [
                {"type": "integer"},
                {"type": "string"},
            ], path
            continue
        assert "anyOf" not in node, path
        assert node.get("type") in TYPES, path
        if node["type"] == "object":
            assert not ("properties" in node and "additionalProperties" in node), path
            assert set(node.get("required", [])) <= set(node.get("properties", {})), path
        if node["type"] == "array":
            assert "items" in node, path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), path
        if "pattern" in node:
            re.compile(node["pattern"])
            assert not re.search(r"\(\?[=!<]|\\[1-9]", node["pattern"]), f"{path}: not RE2"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), path
        for rule in node.get("x-kubernetes-validations", []):
            assert {"rule", "message"} <= set(rule) <= {"rule", "message", "fieldPath"}, path
            assert "\n" not in rule["message"], path


@pytest.mark.parametrize("kind", list(KINDS))
def test_defaults_satisfy_their_schemas(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        if "default" in node:
            value = apply_defaults(node, copy.deepcopy(node["default"]))
            assert problems(node, value, path) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_descriptions_are_single_line(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        assert "\n" not in node.get("description", ""), path
        assert "``" not in node.get("description", ""), path


# --------------------------------------------------------------------------- one source


def example_docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


@pytest.mark.parametrize(
    "doc", example_docs(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_examples_validate_and_default_like_the_models(doc: dict[str, Any]) -> None:
    """The API server's defaults (from the CRD) and the model's defaults agree."""
    spec_schema = at(schema_of(doc["kind"]), "spec")
    defaulted = apply_defaults(spec_schema, copy.deepcopy(doc["spec"]))
    assert problems(spec_schema, defaulted, "spec") == []
    model = parse(doc)
    assert prune_empty(defaulted) == prune_empty(
        model.spec.model_dump(mode="json", exclude_none=True)
    )


def test_a_minimal_region_defaults_like_the_model() -> None:
    doc = {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "ChatRegion",
        "metadata": {"name": "ap-south"},
        "spec": {
            "image": "tidings:1",
            "kafka": {"bootstrapServers": "k:9092"},
            "cassandra": {"contactPoints": ["c"]},
            "redis": {"url": "redis://r"},
            "s3": {"bucket": "media"},
        },
    }
    schema = at(schema_of("ChatRegion"), "spec")
    defaulted = apply_defaults(schema, copy.deepcopy(doc["spec"]))
    assert defaulted["components"]["gateway"]["replicas"] == 2
    assert defaulted["components"]["router"]["replicas"] == 1
    assert defaulted["failover"] == {"policy": "Manual", "detectionWindowSeconds": 30}
    assert defaulted["deletionPolicy"] == "Retain"
    assert defaulted["slotRange"] == {"first": 0, "last": 1023}
    assert prune_empty(defaulted) == prune_empty(
        parse(doc).spec.model_dump(mode="json", exclude_none=True)
    )


# --------------------------------------------------------------------------- CEL rules

PROMISED_TRANSITION_RULES = {
    ("ChatRegion", "spec.kafka.partitions", "self >= oldSelf"),
    ("ChatRegion", "spec.cassandra.keyspace", "self == oldSelf"),
    ("ChatRegion", "spec.slotRange", "self == oldSelf"),
    ("ChatRegion", "spec.shards", "self == oldSelf"),
    ("MessageShard", "spec.region", "self == oldSelf"),
    ("MessageShard", "spec.index", "self == oldSelf"),
    ("MessageShard", "spec.epoch", "self >= oldSelf"),
    (
        "MessageShard",
        "spec",
        "self.firstSlot == oldSelf.firstSlot && self.lastSlot == oldSelf.lastSlot",
    ),
    ("MessageShard", "spec", "self.owner == oldSelf.owner || self.epoch > oldSelf.epoch"),
    ("PushPool", "spec.region", "self == oldSelf"),
    ("PushPool", "spec.provider", "self == oldSelf"),
}


def rules(kind: str) -> set[tuple[str, str]]:
    return {
        (path.lstrip("."), rule["rule"])
        for path, node in walk(schema_of(kind))
        for rule in node.get("x-kubernetes-validations", [])
    }


def test_transition_rules_are_exactly_the_promised_ones() -> None:
    """Immutability is a promise to users: none missing, none added by accident."""
    found = {
        (kind, path, rule) for kind in KINDS for path, rule in rules(kind) if "oldSelf" in rule
    }
    assert found == PROMISED_TRANSITION_RULES


@pytest.mark.parametrize(
    ("kind", "path", "fragment"),
    [
        ("ChatRegion", "", "self.metadata.name.matches("),
        ("ChatRegion", "", "p.name != self.metadata.name"),
        ("ChatRegion", "", "self.metadata.name) in self.spec.cassandra.replication"),
        ("ChatRegion", "spec", "self.shards <= self.slotRange.last - self.slotRange.first + 1"),
        ("ChatRegion", "spec.redis", "has(self.url) != has(self.urlSecretRef)"),
        ("ChatRegion", "spec.slotRange", "self.first <= self.last"),
        ("ChatRegion", "spec.components.gateway", "'cpu' in self.resources.requests"),
        (
            "ChatRegion",
            "spec.components.delivery.autoscaling",
            "self.minReplicas <= self.maxReplicas",
        ),
        ("MessageShard", "spec", "self.firstSlot <= self.lastSlot"),
        ("PushPool", "spec", "self.provider != 'apns' || has(self.apns)"),
        ("PushPool", "spec.autoscaling", "self.minReplicas <= self.maxReplicas"),
    ],
)
def test_validation_rules_are_where_promised(kind: str, path: str, fragment: str) -> None:
    assert any(p == path and fragment in rule for p, rule in rules(kind)), rules(kind)


def test_root_rules_only_read_what_the_root_may() -> None:
    """Only the root's rules may read ``metadata`` (and then only name)."""
    for kind in KINDS:
        for path, rule in rules(kind):
            if "metadata" in rule:
                assert path == ""
                assert re.sub(r"self\.metadata\.name", "", rule).count("metadata") == 0


def test_cel_rules_are_bounded() -> None:
    """The API server refuses rules whose estimated cost is unbounded: every list and map
    a rule iterates has a maximum size, every string it compares a maximum length."""
    schema = schema_of("ChatRegion")
    assert at(schema, "spec.peers")["maxItems"] <= 16
    assert at(schema, "spec.peers")["items"]["properties"]["name"]["maxLength"] <= 63
    assert at(schema, "spec.cassandra.keyspace")["maxLength"] <= 48
    for kind in ("MessageShard", "PushPool"):
        assert at(schema_of(kind), "spec.region")["maxLength"] <= 63


# --------------------------------------------------------------------------- serving


def test_printer_columns_read_real_fields() -> None:
    for kind in KINDS:
        schema = schema_of(kind)
        columns = crdgen.crd(KINDS[kind])["spec"]["versions"][0]["additionalPrinterColumns"]
        names = [c["name"] for c in columns]
        assert "Ready" in names
        assert "Age" in names
        for column in columns:
            path = column["jsonPath"]
            if path == crdgen.READY or path == crdgen.READY_REASON:
                at(schema, "status.conditions")
                continue
            if path == ".metadata.creationTimestamp":
                assert column["type"] == "date"
                continue
            node = at(schema, path)
            assert node["type"] == column["type"], path


def test_chat_region_columns() -> None:
    columns = crdgen.crd(KINDS["ChatRegion"])["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [c["name"] for c in columns if not c.get("priority")]
    assert shown == ["Ready", "Phase", "Components", "Shards", "Age"]
    ready = next(c for c in columns if c["name"] == "Ready")
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_scale_subresource_only_where_replicas_are_the_point() -> None:
    for kind in KINDS:
        version = crdgen.crd(KINDS[kind])["spec"]["versions"][0]
        assert ("scale" in version["subresources"]) == (kind == "PushPool")
    scale = crdgen.crd(KINDS["PushPool"])["spec"]["versions"][0]["subresources"]["scale"]
    schema = schema_of("PushPool")
    assert at(schema, scale["specReplicasPath"])["type"] == "integer"
    assert at(schema, scale["statusReplicasPath"])["type"] == "integer"
    assert at(schema, scale["labelSelectorPath"])["type"] == "string"


def test_status_is_not_defaulted_and_conditions_are_a_map_by_type() -> None:
    for kind in KINDS:
        status = at(schema_of(kind), "status")
        assert not [p for p, node in walk(status) if "default" in node]
        conditions = at(status, "conditions")
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_root_rules_name_the_field_they_check(kind: str) -> None:
    """Without a fieldPath the API server prints ``<nil>:`` where the field should be."""
    root = schema_of(kind)
    for rule in root.get("x-kubernetes-validations", []):
        path = rule.get("fieldPath", "")
        assert path.startswith("."), rule
        node = root
        for part in path.strip(".").split("."):
            node = node["properties"][part]  # a path the schema has
