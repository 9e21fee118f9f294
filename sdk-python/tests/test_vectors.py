"""Every conformance vector (conformance/vectors/*.json) through the public API: an offline
client bootstrapped with each file's ruleset, as conformance/run does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

import vexil

from conftest import VECTORS, same

VECTOR_FILES = sorted(VECTORS.glob("*.json"))
CASES = [
    pytest.param(path, case, id=f"{path.stem}/{case['name']}")
    for path in VECTOR_FILES
    for case in json.loads(path.read_text())["cases"]
]
TYPED = {"bool": "bool_variation", "string": "string_variation",
         "number": "number_variation", "json": "json_variation"}


_clients: dict[Path, vexil.Client] = {}


@pytest.fixture(scope="module", autouse=True)
def close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.close()
    _clients.clear()


def client_for(path: Path, tmp_dir: Path) -> vexil.Client:
    if path not in _clients:
        vectors = json.loads(path.read_text())
        ruleset = tmp_dir / f"bootstrap-{path.stem}.json"
        ruleset.write_text(json.dumps({"flags": vectors.get("flags", []),
                                       "segments": vectors.get("segments", [])}))
        _clients[path] = vexil.Client("vxl-server-conformance", offline=True,
                                      bootstrap=ruleset)
    return _clients[path]


def test_every_vector_file_is_covered() -> None:
    assert len(VECTOR_FILES) >= 10
    assert len(CASES) > 100


@pytest.mark.parametrize("path,case", CASES)
def test_vector(path: Path, case: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    client = client_for(path, tmp_path_factory.getbasetemp())
    expect = case["expect"]
    detail = client.variation_detail(case["flag"], case["context"], case["default"],
                                     type=case.get("type"))
    got = {"value": detail.value, "variation": detail.variation, "reason": detail.reason,
           "in_experiment": detail.in_experiment}
    for field in ("value", "variation", "reason", "in_experiment"):
        assert same(got[field], expect.get(field)), (
            f"{field}: {got[field]!r}, expected {expect.get(field)!r}")
    assert detail.source == "BOOTSTRAP"

    # The same answer from a reused vexil.Context, when the context is valid.
    try:
        context: Any = vexil.Context.from_dict(case["context"])
    except (vexil.InvalidContextError, TypeError):
        context = case["context"]
        assert expect["reason"] == {"kind": "ERROR", "error_kind": "INVALID_CONTEXT"}
    again = client.variation_detail(case["flag"], context, case["default"],
                                    type=case.get("type"))
    assert same(again.value, expect["value"]) and same(again.reason, expect["reason"])

    # And the typed call for the requested type returns the same value.
    kind = case.get("type") or {bool: "bool", str: "string", int: "number",
                                float: "number"}.get(type(case["default"]), "json")
    if kind == "number" and not isinstance(case["default"], (int, float)):
        return  # a typed call cannot take this default; variation_detail covered it
    if kind == "bool" and not isinstance(case["default"], bool):
        return
    if kind == "string" and not isinstance(case["default"], str):
        return
    value = getattr(client, TYPED[kind])(case["flag"], context, case["default"])
    assert same(value, expect["value"]), f"{TYPED[kind]}: {value!r}"
