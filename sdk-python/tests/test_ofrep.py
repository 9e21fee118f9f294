"""The server's OFREP endpoint through clients no one here wrote: the OpenFeature Python SDK
(`openfeature-sdk`) with the published generic OFREP provider
(`openfeature-provider-ofrep`), against a real vexil-server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from conftest import BOOL_ON_BUT_BOB, Server

FLAGS: list[dict[str, Any]] = [
    BOOL_ON_BUT_BOB,
    {"key": "banner", "kind": "string", "variations": ["blue", "green"], "on": False,
     "off_variation": 1, "fallthrough": {"variation": 0}},
    {"key": "limits", "kind": "json", "variations": [{"max": 5}], "on": True,
     "fallthrough": {"variation": 0}},
    {"key": "retries", "kind": "number", "variations": [3, 2.5], "on": True,
     "off_variation": 0, "fallthrough": {"variation": 0},
     "rules": [{"id": "pro", "clauses": [{"context_kind": "org", "attribute": "plan", "op": "in",
                                          "values": ["pro"]}], "serve": {"variation": 1}}]},
]


@pytest.fixture
def client(server: Server) -> Any:
    server.import_flags(FLAGS)
    provider = OFREPProvider(
        f"http://127.0.0.1:{server.http_port}",
        headers_factory=lambda: {"Authorization": f"Bearer {server.keys['server']}"},
    )
    api.set_provider(provider)
    try:
        yield api.get_client()
    finally:
        api.shutdown()


def test_values_reasons_and_variants(client: Any) -> None:
    alice = EvaluationContext(targeting_key="alice", attributes={"plan": "free"})
    detail = client.get_boolean_details("checkout", False, alice)
    assert (detail.value, detail.reason, detail.variant) == (True, Reason.DEFAULT, "1")
    assert detail.error_code is None
    assert detail.flag_metadata["vexilReason"] == "FALLTHROUGH"

    bob = EvaluationContext(targeting_key="bob")
    detail = client.get_boolean_details("checkout", True, bob)
    assert (detail.value, detail.reason) == (False, Reason.TARGETING_MATCH)
    assert detail.flag_metadata["ruleId"] == "bob"

    detail = client.get_string_details("banner", "none", alice)
    assert (detail.value, detail.reason) == ("green", Reason.DISABLED)
    assert client.get_object_value("limits", {}, alice) == {"max": 5}
    assert client.get_integer_value("retries", 0, alice) == 3


def test_a_flag_change_reaches_the_provider(client: Any, server: Server) -> None:
    alice = EvaluationContext(targeting_key="alice")
    assert client.get_boolean_value("checkout", False, alice) is True
    server.cli("flags", "toggle", "checkout", "off")
    deadline = time.time() + 10
    while client.get_boolean_value("checkout", True, alice) is not False:
        assert time.time() < deadline, "the change never reached the provider"
        time.sleep(0.02)
    detail = client.get_boolean_details("checkout", True, alice)
    assert detail.reason == Reason.DISABLED


def test_a_multi_kind_context_by_the_documented_convention(client: Any) -> None:
    context = EvaluationContext(attributes={
        "kind": "multi", "user": {"targetingKey": "alice"},
        "org": {"targetingKey": "acme", "plan": "pro"},
    })
    detail = client.get_float_details("retries", 0.0, context)
    assert (detail.value, detail.reason) == (2.5, Reason.TARGETING_MATCH)


def test_errors_reach_the_caller_as_openfeature_error_codes(client: Any) -> None:
    alice = EvaluationContext(targeting_key="alice")
    missing = client.get_boolean_details("no-such-flag", True, alice)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    no_key = client.get_boolean_details("checkout", True, EvaluationContext(attributes={"plan": "x"}))
    assert (no_key.value, no_key.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    assert "targetingKey" in (no_key.error_message or "")
    wrong = client.get_string_details("checkout", "d", alice)
    assert (wrong.value, wrong.error_code) == ("d", ErrorCode.TYPE_MISMATCH)


def test_a_client_key_sees_client_side_flags_only(server: Server) -> None:
    server.import_flags([dict(FLAGS[0], client_side=True), FLAGS[2]])
    api.set_provider(OFREPProvider(
        f"http://127.0.0.1:{server.http_port}",
        headers_factory=lambda: {"Authorization": f"Bearer {server.keys['client']}"},
    ))
    try:
        client = api.get_client()
        alice = EvaluationContext(targeting_key="alice")
        assert client.get_boolean_value("checkout", False, alice) is True
        hidden = client.get_object_details("limits", {"hidden": True}, alice)
        assert hidden.error_code == ErrorCode.FLAG_NOT_FOUND
        assert hidden.value == {"hidden": True}
        metered = server.metric(
            'vexil_evaluations_total{environment="default/production",rpc="OFREP.EvaluateFlag"}')
        assert metered == 2
    finally:
        api.shutdown()
