"""Against a real vexil-server: initial sync, a change reaching a listener, remote
evaluation with a mobile key and identify, track + flush counted by the server."""

from __future__ import annotations

import asyncio
import logging
import queue
import sys
import time
from typing import Any

import pytest
import vexil

from conftest import BOOL_ON, Server

ALICE = {"kind": "user", "key": "alice"}


def local_client(server: Server, **options: Any) -> vexil.Client:
    client = vexil.Client(server.keys["server"], endpoint=server.endpoint,
                          initial_backoff=0.1, max_backoff=0.5, **options)
    status = client.wait_for_initialization(10)
    assert status.state == "READY", status
    return client


def test_initial_sync(server: Server) -> None:
    server.import_flags([BOOL_ON])
    with local_client(server) as client:
        detail = client.variation_detail("checkout", ALICE, False)
        assert detail.value is True
        assert detail.source == "NETWORK"
        assert detail.version > 0 and client.version == detail.version
        assert client.status().ready


def test_a_change_reaches_a_listener(server: Server) -> None:
    server.import_flags([BOOL_ON])
    with local_client(server) as client:
        changes: queue.Queue[vexil.FlagChange] = queue.Queue()
        broken_calls = []

        def broken(change: vexil.FlagChange) -> None:
            broken_calls.append(change)
            raise RuntimeError("a listener that fails")

        unraisable: list[Any] = []
        previous_hook = sys.unraisablehook
        sys.unraisablehook = unraisable.append
        try:
            client.on_change(broken)
            client.on_change(changes.put)
            server.cli("flags", "toggle", "checkout", "off")
            deadline = time.time() + 10
            while True:
                change = changes.get(timeout=max(0.1, deadline - time.time()))
                if "checkout" in change.flag_keys:
                    break
        finally:
            sys.unraisablehook = previous_hook
        assert change.version > 0
        assert client.bool_variation("checkout", ALICE, True) is False
        # The failing listener was called, reported, and stopped nothing.
        assert broken_calls
        assert any(isinstance(u.exc_value, RuntimeError) for u in unraisable)
        assert client.status().ready


def test_remote_evaluation_and_identify(server: Server) -> None:
    flag = dict(BOOL_ON, client_side=True, rules=[{
        "id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
        "serve": {"variation": 0}}])
    server.import_flags([flag, dict(BOOL_ON, key="server-only")])
    with vexil.Client(server.keys["mobile"], endpoint=server.endpoint,
                      context=ALICE) as client:
        assert client.mode == "remote"
        assert client.wait_for_initialization(10).state == "READY"
        assert client.bool_variation("checkout", ALICE, False) is True
        hidden = client.variation_detail("server-only", ALICE, False)
        assert hidden.reason == {"kind": "ERROR", "error_kind": "FLAG_NOT_FOUND"}
        bob = vexil.Context("bob")
        assert client.identify(bob, timeout=10) is True
        detail = client.variation_detail("checkout", bob, True)
        assert detail.value is False and detail.reason_kind == "RULE_MATCH"
        assert set(client.all_flags(bob)) == {"checkout"}


def test_track_and_flush_are_counted_by_the_server(server: Server) -> None:
    experiment = dict(BOOL_ON, key="experiment-flag", fallthrough={
        "rollout": {"variations": [{"variation": 0, "weight": 50000},
                                   {"variation": 1, "weight": 50000}]},
        "experiment": {"key": "checkout-test"}})
    server.import_flags([experiment])
    with local_client(server, flush_interval=3600) as client:
        for context in (ALICE, vexil.Context("bob")):
            for _ in range(3):
                detail = client.variation_detail("experiment-flag", context, False)
                assert detail.in_experiment and detail.experiment_key == "checkout-test"
        for value in (1, 2, 3):
            client.track("purchase", ALICE, value)
        assert client.flush(10) is True
        assert client.event_stats()["sent"] >= 5

    def counted(kind: str) -> float:
        return server.metric(
            f'vexil_events_total{{environment="default/production",type="{kind}"}}')

    assert counted("track") == 3
    assert counted("exposure") == 2  # deduplicated per context
    assert counted("summary") >= 1


def test_asyncio_initialization_against_a_server(server: Server) -> None:
    server.import_flags([BOOL_ON])

    async def main() -> bool:
        async with vexil.Client(server.keys["server"], endpoint=server.endpoint) as client:
            status = await client.wait_for_initialization_async(10)
            assert status.state == "READY"
            return client.bool_variation("checkout", ALICE, False)

    assert asyncio.run(main()) is True


def test_a_refused_key_fails_without_retrying(server: Server) -> None:
    with vexil.Client("vxl-server-not-a-real-key", endpoint=server.endpoint) as client:
        status = client.wait_for_initialization(10)
        assert status.state == "FAILED" and status.reason


def test_a_refused_key_is_logged_once_to_the_vexil_logger(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vexil")
    with vexil.Client("vxl-server-not-a-real-key", endpoint=server.endpoint) as client:
        assert client.wait_for_initialization(10).state == "FAILED"

    def refused() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused the SDK key" in r.getMessage()]

    deadline = time.time() + 5
    while not refused() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(refused()) == 1, caplog.records
    assert refused()[0].name == "vexil" and refused()[0].levelno == logging.ERROR
    # INFO: the status changes, at DEBUG, are not even handed over.
    assert not [r for r in caplog.records if r.levelno < logging.INFO]

