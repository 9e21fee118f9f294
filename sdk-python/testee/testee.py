"""The Python SDK's testee: answers the commands of conformance/PROTOCOL.md on stdin/stdout
through the public API of the `vexil` package only."""

from __future__ import annotations

import json
import queue
import sys
import time
from typing import Any, Callable, Optional

import vexil


def millis(command: dict[str, Any], field: str, default: int = 5000) -> float:
    return float(command.get(field, default)) / 1000.0


def detail_fields(detail: vexil.EvaluationDetail) -> dict[str, Any]:
    return {"value": detail.value, "variation": detail.variation, "reason": detail.reason,
            "in_experiment": detail.in_experiment}


class Testee:
    def __init__(self) -> None:
        self.client: Optional[vexil.Client] = None
        self.changes: "queue.Queue[list[str]]" = queue.Queue()

    def need_client(self) -> vexil.Client:
        if self.client is None:
            raise ValueError("no client: send `create` first")
        return self.client

    def create(self, c: dict[str, Any]) -> dict[str, Any]:
        if self.client is not None:
            self.client.close()
            self.client = None
        self.changes = queue.Queue()
        options: dict[str, Any] = {
            "offline": bool(c.get("offline", False)),
            "initial_backoff": 0.1, "max_backoff": 0.5, "stream_timeout": 5.0,
            "flush_interval": millis(c, "flush_interval_ms"),
        }
        for field in ("endpoint", "cache_dir", "bootstrap", "context", "private_attributes",
                      "all_attributes_private"):
            if c.get(field) is not None:
                options[field] = c[field]
        self.client = vexil.Client(c["sdk_key"], **options)
        changes = self.changes
        self.client.on_change(lambda change: changes.put(list(change.flag_keys)))
        return {}

    def wait_init(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.need_client().wait_for_initialization(millis(c, "timeout_ms")).state}

    def evaluate(self, c: dict[str, Any]) -> dict[str, Any]:
        detail = self.need_client().variation_detail(c["flag"], c["context"], c.get("default"),
                                                     type=c.get("type"))
        return dict(detail_fields(detail), source=detail.source, version=detail.version)

    def evaluate_all(self, c: dict[str, Any]) -> dict[str, Any]:
        flags = self.need_client().all_flags(c["context"])
        return {"flags": {key: detail_fields(d) for key, d in flags.items()}}

    def identify(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"arrived": self.need_client().identify(c["context"], millis(c, "timeout_ms"))}

    def track(self, c: dict[str, Any]) -> dict[str, Any]:
        value = c.get("value")
        self.need_client().track(c["name"], c["context"],
                                 None if value is None else float(value))
        return {}

    def flush(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"delivered": self.need_client().flush(millis(c, "timeout_ms"))}

    def wait_change(self, c: dict[str, Any]) -> dict[str, Any]:
        self.need_client()
        wanted = c.get("flag")
        deadline = time.monotonic() + millis(c, "timeout_ms")
        while True:
            left = deadline - time.monotonic()
            try:
                keys = self.changes.get(timeout=max(left, 0.0)) if left > 0 else \
                    self.changes.get_nowait()
            except queue.Empty:
                return {"changed": False, "flag_keys": []}
            if wanted is None or wanted in keys:
                return {"changed": True, "flag_keys": keys}

    def status(self, c: dict[str, Any]) -> dict[str, Any]:
        client = self.need_client()
        stats = client.event_stats()
        return {"status": client.status().state, "source": client.source,
                "version": client.version,
                "events": {k: stats[k] for k in ("dropped", "sent", "queued")}}

    def close(self, c: dict[str, Any]) -> dict[str, Any]:
        if self.client is not None:
            self.client.close()
            self.client = None
        return {}


def main() -> None:
    testee = Testee()
    handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        name: getattr(testee, name) for name in (
            "create", "wait_init", "evaluate", "evaluate_all", "identify", "track", "flush",
            "wait_change", "status", "close")}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
        except ValueError as err:
            answer: dict[str, Any] = {"id": None, "ok": False, "error": f"not JSON: {err}"}
        else:
            command_id = command.get("id")
            handler = handlers.get(command.get("cmd"))
            try:
                if handler is None:
                    raise ValueError(f"cmd: unknown command {command.get('cmd')!r}")
                answer = dict(handler(command), id=command_id, ok=True)
            except (vexil.VexilError, ValueError, TypeError, KeyError) as err:
                answer = {"id": command_id, "ok": False, "error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if testee.client is not None:
        testee.client.close()


if __name__ == "__main__":
    main()
