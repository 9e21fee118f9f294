"""Every conformance vector through the server's OFREP endpoint and OpenFeature's published
Python OFREP provider (`openfeature-provider-ofrep` under `openfeature-sdk`), unmodified:
each file's flags are imported into a real server, and each case is asked for through the
OpenFeature client with its context in OpenFeature's form (the server's documented
convention: `targetingKey`, `kind`, multi-kind as one object per kind).

How Vexil's answers read in OpenFeature's terms: `OFF` and `PREREQUISITE_FAILED` are
`DISABLED`, `TARGET_MATCH` and `RULE_MATCH` `TARGETING_MATCH`, `FALLTHROUGH` `DEFAULT` (`SPLIT`
in an experiment); `FLAG_NOT_FOUND` is `FLAG_NOT_FOUND`, `WRONG_TYPE` the provider's own
`TYPE_MISMATCH`, `INVALID_CONTEXT` `INVALID_CONTEXT` or `TARGETING_KEY_MISSING`. A Vexil
number is asked for as an integer when the expected value is whole, else as a float (OpenFeature
has both; an expected error is asked as a float, since Python's `isinstance(True, int)` lets the
provider take a bool for an integer). Not representable in OpenFeature, and left out: a `json`
case whose value is not an object or a list (OpenFeature objects are structures), a context
that OpenFeature's form cannot carry (attributes that are not an object, two contexts of one
kind), and a case serving no value without an error (the provider requires a `variant`, which
the protocol makes optional). The two files whose flags the server refuses to store cannot run
here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails

from conftest import VECTORS, Server, same

UNSTORABLE = {"malformed", "prerequisite_cycles"}
FILES = [path for path in sorted(VECTORS.glob("*.json")) if path.stem not in UNSTORABLE]

REASONS = {"OFF": "DISABLED", "PREREQUISITE_FAILED": "DISABLED", "TARGET_MATCH": "TARGETING_MATCH",
           "RULE_MATCH": "TARGETING_MATCH"}
ERRORS = {"FLAG_NOT_FOUND": {"FLAG_NOT_FOUND"}, "WRONG_TYPE": {"TYPE_MISMATCH"},
          "INVALID_CONTEXT": {"INVALID_CONTEXT", "TARGETING_KEY_MISSING"}}


class NotRepresentable(Exception):
    """A Vexil context that OpenFeature's form cannot carry."""


def openfeature_context(context: Any) -> EvaluationContext:
    """A Vexil context JSON in OpenFeature's form. Attributes named `key` and `kind` are left
    out: Vexil's references `key` and `kind` read the context's own, so nothing reads them."""
    def fields(single: dict[str, Any]) -> dict[str, Any]:
        attributes = single.get("attributes", {})
        if not isinstance(attributes, dict):
            raise NotRepresentable("attributes that are not an object")
        if "private_attributes" in single:
            # OpenFeature's form has no private-attribute marks (they only concern events).
            raise NotRepresentable("private-attribute marks")
        out = {name: value for name, value in attributes.items() if name not in ("key", "kind")}
        if "key" in single:
            out["targetingKey"] = single["key"]
        return out

    if not isinstance(context, dict):
        raise NotRepresentable("a context that is not an object")
    if context.get("kind") == "multi":
        contexts = context.get("contexts")
        attributes: dict[str, Any] = {"kind": "multi"}
        for single in contexts if isinstance(contexts, list) else []:
            kind = str(single.get("kind", "user")) if isinstance(single, dict) else ""
            if not kind or kind in attributes:
                raise NotRepresentable("two contexts of one kind, or one that is not an object")
            attributes[kind] = fields(single)
        return EvaluationContext(attributes=attributes)
    attributes = fields(context)
    key = attributes.pop("targetingKey", None)
    if "kind" in context:
        attributes["kind"] = context["kind"]
    return EvaluationContext(targeting_key=key, attributes=attributes)


def resolver(client: OpenFeatureClient, case: dict[str, Any]) -> Callable[..., FlagEvaluationDetails[Any]] | None:
    """The OpenFeature call for the case's type, or None when OpenFeature cannot ask it."""
    default, expected = case["default"], case["expect"].get("value")
    kind = case.get("type") or {bool: "bool", str: "string", int: "number",
                                float: "number"}.get(type(default), "json")
    if kind == "bool":
        return client.get_boolean_details
    if kind == "string":
        return client.get_string_details
    if kind == "number":
        error = case["expect"]["reason"]["kind"] == "ERROR"
        whole = isinstance(expected, int) and not isinstance(expected, bool) and not error
        return client.get_integer_details if whole else client.get_float_details
    return client.get_object_details if isinstance(expected, (dict, list)) else None


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vectors_through_ofrep(path: Path, server: Server) -> None:
    vectors = json.loads(path.read_text())
    server.import_flags(vectors.get("flags", []), vectors.get("segments", []))
    api.set_provider(OFREPProvider(
        f"http://127.0.0.1:{server.http_port}",
        headers_factory=lambda: {"Authorization": f"Bearer {server.keys['server']}"},
    ))
    client = api.get_client()
    failures: list[str] = []
    asked = 0
    try:
        for case in vectors["cases"]:
            expect = case["expect"]
            reason = expect["reason"]
            call = resolver(client, case)
            if call is None or (expect.get("variation") is None and reason["kind"] != "ERROR"):
                continue
            try:
                context = openfeature_context(case["context"])
            except NotRepresentable:
                continue
            asked += 1
            detail = call(case["flag"], case["default"], context)
            name = case["name"]
            if reason["kind"] == "ERROR":
                code = detail.error_code.value if detail.error_code else None
                if code not in ERRORS.get(reason["error_kind"], set()):
                    failures.append(f"{name}: error {code}, expected {reason['error_kind']}")
                if not same(detail.value, case["default"]):
                    failures.append(f"{name}: value {detail.value!r}, expected the default")
                continue
            wanted = REASONS.get(reason["kind"]) or (
                "SPLIT" if expect.get("in_experiment") else "DEFAULT")
            if detail.error_code is not None:
                failures.append(f"{name}: error {detail.error_code} {detail.error_message}")
                continue
            if not same(detail.value, expect["value"]):
                failures.append(f"{name}: value {detail.value!r}, expected {expect['value']!r}")
            if detail.reason != wanted:
                failures.append(f"{name}: reason {detail.reason}, expected {wanted}")
            if detail.variant != str(expect["variation"]):
                failures.append(f"{name}: variant {detail.variant}, expected {expect['variation']}")
            metadata = detail.flag_metadata
            if metadata.get("vexilReason") != reason["kind"] or (
                    "rule_id" in reason and metadata.get("ruleId") != reason["rule_id"]):
                failures.append(f"{name}: metadata {dict(metadata)}, expected {reason}")
    finally:
        api.shutdown()
    assert asked > 0
    assert not failures, f"{len(failures)} of {asked} cases: " + "; ".join(failures[:8])
