"""`vexil.openfeature.VexilProvider` under OpenFeature's own Python SDK (`openfeature-sdk`)
against a real vexil-server: the SDK's flow as an application sees it."""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any, Iterator

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from vexil.openfeature import VexilProvider, to_vexil_context

from conftest import BOOL_ON_BUT_BOB, Server

FLAGS: list[dict[str, Any]] = [
    BOOL_ON_BUT_BOB,
    {"key": "banner", "kind": "string", "variations": ["blue", "green"], "on": True,
     "off_variation": 1, "fallthrough": {"variation": 0}},
    {"key": "seats", "kind": "number", "variations": [5, 2.5], "on": True, "off_variation": 0,
     "fallthrough": {"variation": 0},
     "rules": [{"id": "big", "clauses": [{"context_kind": "org", "attribute": "plan", "op": "in",
                                          "values": ["enterprise"]}], "serve": {"variation": 1}}]},
    {"key": "limits", "kind": "json", "variations": [{"max": 3}, "not an object"], "on": True,
     "off_variation": 1, "fallthrough": {"variation": 0}},
]
ALICE = EvaluationContext(targeting_key="alice", attributes={"plan": "free"})


def wait_until(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def provider(server: Server) -> Iterator[VexilProvider]:
    server.import_flags(FLAGS)
    provider = VexilProvider(server.keys["server"], endpoint=server.endpoint,
                             initial_backoff=0.1, max_backoff=0.5, flush_interval=3600.0)
    api.set_provider_and_wait(provider)
    try:
        yield provider
    finally:
        api.shutdown()


def client() -> OpenFeatureClient:
    return api.get_client()


def test_the_context_convention() -> None:
    assert to_vexil_context(EvaluationContext("u1", {"kind": "org", "seats": 5})) == \
        {"kind": "org", "key": "u1", "attributes": {"seats": 5}}
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert to_vexil_context(EvaluationContext("u1", {"signed_up": when})) == \
        {"key": "u1", "attributes": {"signed_up": "2026-01-02T03:04:05+00:00"}}
    multi = EvaluationContext(attributes={"kind": "multi", "user": {"targetingKey": "u1"},
                                          "org": {"targetingKey": "o1", "plan": "pro"}})
    assert to_vexil_context(multi) == {"kind": "multi", "contexts": [
        {"kind": "user", "key": "u1", "attributes": {}},
        {"kind": "org", "key": "o1", "attributes": {"plan": "pro"}}]}
    assert to_vexil_context(EvaluationContext(attributes={"plan": "pro"})) is None


def test_values_details_and_reasons(provider: VexilProvider) -> None:
    assert client().get_provider_status() == ProviderStatus.READY
    detail = client().get_boolean_details("checkout", False, ALICE)
    assert (detail.value, detail.reason, detail.variant) == (True, Reason.DEFAULT, "1")
    assert detail.flag_metadata["vexilReason"] == "FALLTHROUGH"
    assert detail.flag_metadata["source"] == "NETWORK"
    bob = client().get_boolean_details("checkout", True, EvaluationContext("bob"))
    assert (bob.value, bob.reason, bob.flag_metadata["ruleId"]) == (False, Reason.TARGETING_MATCH, "bob")
    assert client().get_string_value("banner", "none", ALICE) == "blue"
    assert client().get_integer_value("seats", 0, ALICE) == 5
    assert client().get_float_value("seats", 0.0, ALICE) == 5.0
    assert client().get_object_value("limits", {}, ALICE) == {"max": 3}
    org = EvaluationContext(attributes={"kind": "multi", "user": {"targetingKey": "alice"},
                                        "org": {"targetingKey": "acme", "plan": "enterprise"}})
    assert client().get_float_value("seats", 0.0, org) == 2.5


def test_errors(provider: VexilProvider) -> None:
    missing = client().get_boolean_details("nope", True, ALICE)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    wrong = client().get_integer_details("banner", 7, ALICE)
    assert (wrong.value, wrong.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    fraction = client().get_integer_details("seats", 0, EvaluationContext(attributes={
        "kind": "multi", "user": {"targetingKey": "a"},
        "org": {"targetingKey": "acme", "plan": "enterprise"}}))
    assert (fraction.value, fraction.error_code) == (0, ErrorCode.TYPE_MISMATCH)
    no_key = client().get_boolean_details("checkout", False, EvaluationContext(attributes={"plan": "x"}))
    assert (no_key.value, no_key.error_code) == (False, ErrorCode.TARGETING_KEY_MISSING)
    invalid = client().get_boolean_details("checkout", False, EvaluationContext("a", {"kind": "no spaces!"}))
    assert (invalid.value, invalid.error_code) == (False, ErrorCode.INVALID_CONTEXT)


def test_events_tracking_and_shutdown(provider: VexilProvider, server: Server) -> None:
    changed: list[list[str]] = []
    seen: list[str] = []
    lock = threading.Lock()

    def on_change(details: EventDetails) -> None:
        with lock:
            changed.append(list(details.flags_changed or []))

    def on_status(event: str) -> Any:
        def record(_details: EventDetails) -> None:
            with lock:
                seen.append(event)
        return record

    client().add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    server.cli("flags", "toggle", "banner", "off")
    wait_until(lambda: bool(changed), "PROVIDER_CONFIGURATION_CHANGED")
    assert changed[0] == ["banner"]
    assert client().get_string_value("banner", "none", ALICE) == "green"

    before = server.metric('vexil_events_total{environment="default/production",type="track"}')
    client().track("purchase", ALICE)
    assert provider.client.flush(5.0)
    after = server.metric('vexil_events_total{environment="default/production",type="track"}')
    assert after == before + 1

    stale, ready = on_status("stale"), on_status("ready")
    client().add_handler(ProviderEvent.PROVIDER_STALE, stale)
    client().add_handler(ProviderEvent.PROVIDER_READY, ready)
    server.stop()
    wait_until(lambda: "stale" in seen, "PROVIDER_STALE")
    held = client().get_boolean_details("checkout", False, ALICE)
    assert (held.value, held.reason) == (True, Reason.STALE)
    with lock:
        seen.clear()
    server.start()
    wait_until(lambda: "ready" in seen, "PROVIDER_READY again")
    assert client().get_provider_status() == ProviderStatus.READY

    api.shutdown()
    assert provider.client.status().state == "CLOSED"
