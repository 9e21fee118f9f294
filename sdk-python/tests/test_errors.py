"""Bad input gets a clear exception naming what is wrong; evaluation itself never raises
for an invalid context (it answers the default with ERROR/INVALID_CONTEXT)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import vexil

ALICE = {"kind": "user", "key": "alice"}


@pytest.fixture
def client(bootstrap_file: Path):
    with vexil.Client("vxl-server-test", offline=True, bootstrap=bootstrap_file) as c:
        yield c


def test_hierarchy() -> None:
    for error in (vexil.ConfigurationError, vexil.InvalidContextError,
                  vexil.ClientStartError, vexil.InternalError):
        assert issubclass(error, vexil.VexilError)
    assert issubclass(vexil.VexilError, Exception)


def test_invalid_sdk_key() -> None:
    with pytest.raises(vexil.ConfigurationError, match="sdk_key"):
        vexil.Client("not-a-key", offline=True)


def test_sdk_key_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="sdk_key"):
        vexil.Client(42, offline=True)  # type: ignore[arg-type]


def test_invalid_endpoint() -> None:
    with pytest.raises(vexil.ConfigurationError, match="endpoint"):
        vexil.Client("vxl-server-x", endpoint="not a url")


@pytest.mark.parametrize("option,value", [
    ("connect_timeout", -1.0), ("stream_timeout", float("nan")), ("max_backoff", float("inf")),
    ("flush_interval", 0.0), ("event_batch_size", 0), ("event_capacity", 0),
])
def test_invalid_options(option: str, value: float) -> None:
    with pytest.raises(vexil.ConfigurationError, match=option):
        vexil.Client("vxl-server-x", offline=True, **{option: value})


def test_invalid_private_attribute_names_its_position() -> None:
    with pytest.raises(vexil.ConfigurationError, match=r"^private_attributes\[1\]: "):
        vexil.Client("vxl-server-x", offline=True, private_attributes=["email", ""])


def test_private_attribute_marks_of_a_context() -> None:
    marked = vexil.Context("alice", attributes={"email": "a@x"}, private_attributes=["email"])
    assert marked.to_dict()["private_attributes"] == ["email"]
    assert vexil.Context.from_dict(marked.to_dict()) == marked
    with pytest.raises(vexil.InvalidContextError, match="private_attributes"):
        vexil.Context("alice", private_attributes=["/bad~2"])


def test_unknown_option() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        vexil.Client("vxl-server-x", no_such_option=1)  # type: ignore[call-arg]


def test_invalid_initial_context() -> None:
    with pytest.raises(vexil.InvalidContextError, match="key"):
        vexil.Client("vxl-mobile-x", offline=True, context={"kind": "user"})


def test_context_constructor_errors() -> None:
    with pytest.raises(vexil.InvalidContextError, match="key"):
        vexil.Context("")
    with pytest.raises(vexil.InvalidContextError, match="kind"):
        vexil.Context("alice", kind="no spaces")
    with pytest.raises(vexil.InvalidContextError, match="more than once"):
        vexil.Context.multi(vexil.Context("a"), vexil.Context("b"))
    with pytest.raises(vexil.InvalidContextError, match="multi"):
        vexil.Context.multi(
            vexil.Context.multi(vexil.Context("a"), vexil.Context("o", kind="org")))
    with pytest.raises(TypeError, match=r"contexts\[1\]"):
        vexil.Context.multi(vexil.Context("a"), {"key": "b"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attributes"):
        vexil.Context("alice", attributes=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(vexil.InvalidContextError, match="contexts"):
        vexil.Context.from_dict({"kind": "multi", "contexts": []})
    with pytest.raises(TypeError, match="dict"):
        vexil.Context.from_dict("alice")  # type: ignore[arg-type]


def test_attribute_that_is_not_json_names_its_path(client: vexil.Client) -> None:
    context = {"key": "alice", "attributes": {"profile": {"born": datetime.date(2000, 1, 1)}}}
    with pytest.raises(TypeError, match=r'context\["attributes"\]\["profile"\]\["born"\]: date is not JSON' ):
        client.bool_variation("checkout", context, False)
    with pytest.raises(TypeError, match=r'attributes\["x"\]: set' ):
        vexil.Context("alice", attributes={"x": {1, 2}})
    with pytest.raises(ValueError, match="finite"):
        vexil.Context("alice", attributes={"x": float("nan")})
    with pytest.raises(ValueError, match="64-bit"):
        vexil.Context("alice", attributes={"x": 2**80})


def test_context_of_wrong_type(client: vexil.Client) -> None:
    with pytest.raises(TypeError, match="context: expected a vexil.Context or a dict, got str"):
        client.bool_variation("checkout", "alice", False)  # type: ignore[arg-type]


def test_invalid_dict_context_answers_the_default(client: vexil.Client) -> None:
    assert client.bool_variation("checkout", {"kind": "user"}, False) is False
    detail = client.variation_detail("checkout", {"kind": "user", "key": ""}, False)
    assert detail.value is False
    assert detail.reason == {"kind": "ERROR", "error_kind": "INVALID_CONTEXT"}
    # The flag's own errors come first, in the engine's order.
    missing = client.variation_detail("missing", {"key": 3}, False)
    assert missing.reason == {"kind": "ERROR", "error_kind": "FLAG_NOT_FOUND"}
    # Marks of private attributes are read, not skipped: a bad one is a bad context.
    marked = client.variation_detail("checkout", {"key": "a", "private_attributes": [""]}, False)
    assert marked.reason == {"kind": "ERROR", "error_kind": "INVALID_CONTEXT"}


def test_invalid_context_where_one_is_required(client: vexil.Client) -> None:
    with pytest.raises(vexil.InvalidContextError, match="key"):
        client.track("purchase", {"kind": "user"})
    with pytest.raises(vexil.InvalidContextError):
        client.identify({"kind": "multi", "contexts": []})
    with pytest.raises(vexil.InvalidContextError):
        client.all_flags({"attributes": {}})


def test_default_of_wrong_type(client: vexil.Client) -> None:
    with pytest.raises(TypeError, match="default"):
        client.bool_variation("checkout", ALICE, "yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="default"):
        client.string_variation("banner", ALICE, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r'default\["when"\]' ):
        client.json_variation("theme", ALICE, {"when": object()})


def test_bad_method_arguments(client: vexil.Client) -> None:
    with pytest.raises(ValueError, match="timeout"):
        client.wait_for_initialization(-1)
    with pytest.raises(ValueError, match="timeout"):
        client.flush(float("nan"))
    with pytest.raises(ValueError, match="type"):
        client.variation_detail("checkout", ALICE, False, type="boolean")
    with pytest.raises(ValueError, match="value"):
        client.track("purchase", ALICE, float("inf"))
    with pytest.raises(ValueError, match="event_name"):
        client.track("", ALICE)
    with pytest.raises(TypeError, match="listener"):
        client.on_change("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="flag_key"):
        client.bool_variation(None, ALICE, False)  # type: ignore[arg-type]


def test_a_rust_panic_becomes_an_exception() -> None:
    with pytest.raises(vexil.InternalError, match="deliberate panic"):
        vexil._native._panic_for_test()
    # The interpreter and the module go on working.
    assert vexil.Context("alice").key == "alice"
