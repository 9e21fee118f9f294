"""The client's API offline: typed variations, details, contexts, listeners, lifecycle,
asyncio forms and the GIL released while waiting."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest

import vexil

ALICE = {"kind": "user", "key": "alice"}


@pytest.fixture
def client(bootstrap_file: Path):
    with vexil.Client("vxl-server-test", offline=True, bootstrap=bootstrap_file) as c:
        yield c


def test_typed_variations(client: vexil.Client) -> None:
    assert client.bool_variation("checkout", ALICE, False) is True
    assert client.string_variation("banner", ALICE, "x") == "new"
    pro = {"key": "bob", "attributes": {"plan": "pro"}}
    assert client.string_variation("banner", pro, "x") == "old"
    number = client.number_variation("limit", ALICE, 1.0)
    assert number == 10.0 and isinstance(number, float)
    assert client.json_variation("theme", ALICE, {}) == {"color": "red", "sizes": [1, 2]}


def test_defaults_for_unknown_flag_and_wrong_type(client: vexil.Client) -> None:
    assert client.bool_variation("missing", ALICE, True) is True
    assert client.string_variation("checkout", ALICE, "d") == "d"
    assert client.number_variation("banner", ALICE, 7) == 7.0
    default = {"fallback": [1]}
    assert client.json_variation("missing", ALICE, default) == default
    detail = client.variation_detail("checkout", ALICE, "d")
    assert detail.value == "d" and detail.variation is None
    assert detail.reason == {"kind": "ERROR", "error_kind": "WRONG_TYPE"}
    assert detail.error_kind == "WRONG_TYPE" and detail.reason_kind == "ERROR"


def test_detail_fields(client: vexil.Client) -> None:
    detail = client.variation_detail("banner", {"key": "b", "attributes": {"plan": "pro"}}, "x")
    assert detail.value == "old"
    assert detail.variation == 0
    assert detail.reason == {"kind": "RULE_MATCH", "rule_index": 0, "rule_id": "pro"}
    assert detail.reason_kind == "RULE_MATCH" and detail.error_kind is None
    assert detail.in_experiment is False and detail.experiment_key is None
    assert detail.source == "BOOTSTRAP"
    assert detail.version == 0
    assert "old" in repr(detail)
    typed = client.variation_detail("limit", ALICE, None, type="number")
    assert typed.value == 10 and typed.reason == {"kind": "FALLTHROUGH"}


def test_reused_context_and_dict_agree(client: vexil.Client) -> None:
    pro = vexil.Context("bob", attributes={"plan": "pro"})
    assert client.string_variation("banner", pro, "x") == "old"
    assert pro.kind == "user" and pro.key == "bob" and pro.kinds == ["user"]
    assert pro.to_dict() == {"kind": "user", "key": "bob", "attributes": {"plan": "pro"}}
    assert vexil.Context.from_dict(pro.to_dict()) == pro


def test_multi_kind_contexts(client: vexil.Client) -> None:
    org = vexil.Context("acme", kind="organization", attributes={"plan": "pro"})
    multi = vexil.Context.multi(vexil.Context("alice"), org)
    assert multi.kind == "multi" and multi.key is None
    assert multi.kinds == ["user", "organization"]
    as_dict = multi.to_dict()
    assert as_dict["kind"] == "multi" and len(as_dict["contexts"]) == 2
    assert client.bool_variation("checkout", multi, False) is True
    assert client.bool_variation("checkout", as_dict, False) is True


def test_all_flags(client: vexil.Client) -> None:
    flags = client.all_flags(ALICE)
    assert set(flags) == {"checkout", "banner", "limit", "theme"}
    assert flags["checkout"].value is True
    assert flags["theme"].value == {"color": "red", "sizes": [1, 2]}
    assert flags["banner"].reason == {"kind": "FALLTHROUGH"}


def test_status_and_source_offline(tmp_path: Path, bootstrap_file: Path) -> None:
    with vexil.Client("vxl-server-test", offline=True) as empty:
        assert empty.status().state == "OFFLINE"
        assert empty.status() == empty.status() and empty.status().ready is False
        assert empty.source == "DEFAULTS"
        assert empty.mode == "local"
        detail = empty.variation_detail("checkout", ALICE, True)
        assert detail.value is True and detail.source == "DEFAULTS"
        assert detail.reason == {"kind": "ERROR", "error_kind": "CLIENT_NOT_READY"}
        assert empty.wait_for_initialization(0.01).state == "OFFLINE"
    assert empty.status().state == "CLOSED"
    with vexil.Client("vxl-mobile-test", offline=True) as mobile:
        assert mobile.mode == "remote"


def test_close_is_idempotent_and_values_keep_answering(bootstrap_file: Path) -> None:
    client = vexil.Client("vxl-server-test", offline=True, bootstrap=bootstrap_file)
    client.close()
    client.close()
    assert client.bool_variation("checkout", ALICE, False) is True
    assert client.status().state == "CLOSED"
    assert client.flush(0.1) is True


def test_track_identify_and_event_stats(client: vexil.Client) -> None:
    client.track("purchase", ALICE, 9.5)
    client.track("signup", vexil.Context("bob"))
    assert client.identify(ALICE) is True
    stats = client.event_stats()
    assert set(stats) == {"dropped", "sent", "failed_batches", "queued"}


def test_listener_registration(client: vexil.Client) -> None:
    listener_id = client.on_change(lambda change: None)
    assert isinstance(listener_id, int)
    assert client.remove_listener(listener_id) is True
    assert client.remove_listener(listener_id) is False


def test_wait_releases_the_gil() -> None:
    # Nothing listens on this port: the client stays INITIALIZING for the whole wait.
    client = vexil.Client("vxl-server-test", endpoint="http://127.0.0.1:9", events=False,
                          initial_backoff=5.0)
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    worker = threading.Thread(target=count)
    worker.start()
    started = time.monotonic()
    status = client.wait_for_initialization(0.5)
    waited = time.monotonic() - started
    stop.set()
    worker.join()
    client.close()
    assert status.state in ("INITIALIZING", "STALE")
    assert waited >= 0.45
    # A thread that needs the GIL ran a lot while the main thread waited.
    assert counted[0] > 10_000


def test_async_wait_does_not_block_the_event_loop() -> None:
    async def main() -> tuple[vexil.Status, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        async with vexil.Client("vxl-server-test", endpoint="http://127.0.0.1:9",
                                events=False) as client:
            status = await client.wait_for_initialization_async(0.5)
            assert await client.flush_async(0.1) is True
            assert await client.identify_async(ALICE, 0.1) is True
        task.cancel()
        return status, ticks

    status, ticks = asyncio.run(main())
    assert status.state in ("INITIALIZING", "STALE")
    assert ticks >= 20, f"the event loop ran only {ticks} ticks in 0.5 s"


def test_async_waits_take_no_executor_thread() -> None:
    """Many concurrent waits with an executor of one thread: none of them runs on it."""
    import concurrent.futures

    async def main() -> list[vexil.Status]:
        loop = asyncio.get_running_loop()
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(executor)
        async with vexil.Client("vxl-server-test", endpoint="http://127.0.0.1:9",
                                events=False) as client:
            started = time.monotonic()
            statuses = await asyncio.gather(
                *(client.wait_for_initialization_async(0.3) for _ in range(20)))
            # Twenty waits of 0.3 s at once take about 0.3 s, not 20 × 0.3 s on one thread.
            assert time.monotonic() - started < 3
        return list(statuses)

    statuses = asyncio.run(main())
    assert len(statuses) == 20 and all(s.state == "INITIALIZING" for s in statuses)


def test_threads_share_a_client(client: vexil.Client) -> None:
    context = vexil.Context("alice")
    results: list[bool] = []

    def work() -> None:
        for _ in range(2000):
            results.append(client.bool_variation("checkout", context, False))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8000 and all(results)


def test_package_metadata() -> None:
    assert vexil.__version__
    assert issubclass(vexil.Client, vexil._native.Client)


def test_a_logger_of_the_callers_choice_receives_debug_when_it_asks() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("my-app.flags")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    with vexil.Client("vxl-server-x", offline=True, bootstrap="/nonexistent/ruleset.json",
                      logger=logger):
        pass
    deadline = time.time() + 5
    while len(records) < 2 and time.time() < deadline:
        time.sleep(0.02)
    messages = [(r.levelno, r.getMessage()) for r in records]
    assert any(level == logging.WARNING and m.startswith("ignoring the bootstrap file")
               for level, m in messages), messages
    assert any(level == logging.DEBUG and m.startswith("client status")
               for level, m in messages), messages
