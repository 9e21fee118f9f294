"""Fixtures: a real vexil-server on free ports with its own SQLite data directory, and
helpers to change its flags through the `vexil` command, as conformance/run does.

The server binaries come from the cargo target directory (`CARGO_TARGET_DIR`, else the
repository's `target/`); `cargo build -p vexil-server -p vexil-cli` builds them (ci.sh does).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
VECTORS = ROOT / "conformance" / "vectors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One vexil-server process; `keys` are the production environment's SDK keys."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "server-data"
        self.port, self.http_port = free_port(), free_port()
        self.start()
        credentials = json.loads((self.data_dir / "credentials.json").read_text())
        self.token: str = credentials["admin_token"]["token"]
        self.keys: dict[str, str] = credentials["sdk_keys"]["production"]

    def start(self) -> None:
        """Starts the process (again, after `stop`: same ports and data) and waits until it
        is ready."""
        binary = TARGET / "debug" / "vexil-server"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `cargo build -p vexil-server -p vexil-cli`")
        self.process = subprocess.Popen(
            [str(binary), "--listen", f"127.0.0.1:{self.port}",
             "--http-listen", f"127.0.0.1:{self.http_port}", "--data-dir", str(self.data_dir),
             "--heartbeat-interval", "0.5", "--version-check-interval", "0.5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1):
                    break
            except Exception:
                if time.time() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("vexil-server did not become ready")
                time.sleep(0.05)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> None:
        env = dict(os.environ, VEXIL_SERVER=self.endpoint, VEXIL_TOKEN=self.token,
                   VEXIL_ENVIRONMENT="production")
        subprocess.run([str(TARGET / "debug" / "vexil"), *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def import_flags(self, flags: list[dict[str, Any]],
                     segments: list[dict[str, Any]] | None = None) -> None:
        path = self.workdir / f"import-{time.monotonic_ns()}.json"
        path.write_text(json.dumps({"flags": flags, "segments": segments or []}))
        self.cli("import", str(path))

    def metric(self, line_start: str) -> float:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(line_start + " "):
                    return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def same(a: Any, b: Any) -> bool:
    """JSON equality with numbers compared by value (1 == 1.0, but True != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    try:
        yield running
    finally:
        running.stop()


BOOL_ON: dict[str, Any] = {
    "key": "checkout", "kind": "bool", "variations": [False, True], "on": True,
    "off_variation": 0, "fallthrough": {"variation": 1},
}

# BOOL_ON, but serving false to the context keyed "bob".
BOOL_ON_BUT_BOB: dict[str, Any] = dict(BOOL_ON, rules=[
    {"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
     "serve": {"variation": 0}},
])


@pytest.fixture
def bootstrap_file(tmp_path: Path) -> Path:
    """A ruleset with a bool, a string, a number and a json flag."""
    flags = [
        BOOL_ON,
        {"key": "banner", "kind": "string", "variations": ["old", "new"], "on": True,
         "fallthrough": {"variation": 1},
         "rules": [{"id": "pro", "clauses": [{"attribute": "plan", "op": "in",
                                              "values": ["pro"]}],
                    "serve": {"variation": 0}}]},
        {"key": "limit", "kind": "number", "variations": [10, 2.5], "on": True,
         "fallthrough": {"variation": 0}},
        {"key": "theme", "kind": "json", "variations": [{"color": "red", "sizes": [1, 2]}, None],
         "on": True, "fallthrough": {"variation": 0}},
    ]
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"flags": flags, "segments": []}))
    return path
