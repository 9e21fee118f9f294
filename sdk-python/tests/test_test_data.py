"""vexil.TestData: flags a test changes one at a time, without a server or a file."""

from __future__ import annotations

import threading

import pytest

import vexil

ALICE = {"kind": "user", "key": "alice"}
BOB = {"kind": "user", "key": "bob"}


def test_changes_reach_the_client_at_once_and_its_listeners() -> None:
    data = vexil.TestData()
    data.set_value("checkout", True)
    with vexil.Client("vxl-server-test", test_data=data) as client:
        assert client.status().state == "READY"
        assert client.bool_variation("checkout", ALICE, False) is True
        changed = threading.Event()
        seen: list[list[str]] = []

        def listener(change: vexil.FlagChange) -> None:
            seen.append(change.flag_keys)
            changed.set()

        client.on_change(listener)
        data.set_value("checkout", False)
        assert client.bool_variation("checkout", ALICE, True) is False
        assert changed.wait(5) and seen == [["checkout"]]

        data.update_flag({
            "key": "banner", "kind": "string", "variations": ["plain", "gold"], "on": True,
            "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
                       "serve": {"variation": 1}}],
            "fallthrough": {"variation": 0},
        })
        assert client.string_variation("banner", BOB, "?") == "gold"
        assert client.string_variation("banner", ALICE, "?") == "plain"
        assert data.flag_keys == ["banner", "checkout"]
        assert data.remove_flag("banner") and not data.remove_flag("banner")
        assert client.string_variation("banner", BOB, "?") == "?"


def test_a_flag_that_does_not_compile_is_refused_and_changes_nothing() -> None:
    data = vexil.TestData()
    data.set_value("limit", 3)
    with vexil.Client("vxl-server-test", test_data=data) as client:
        with pytest.raises(ValueError, match="fallthrough"):
            data.update_flag({"key": "limit", "kind": "number", "variations": [1], "on": True,
                              "fallthrough": {"variation": 4}})
        assert client.number_variation("limit", ALICE, 0) == 3
        with pytest.raises(ValueError, match="flag.key"):
            data.update_flag({"kind": "bool"})
