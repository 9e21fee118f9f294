"""bool_variation from Python against the same call in Rust, in one run.

    python benchmarks/bench.py [--iterations N] [--repeat R]

Prints nanoseconds per call (the best of R repeats of N calls) for:
  * a small dict context, converted on each call;
  * a reused vexil.Context (converted once, held natively);
  * the same vexil-core call timed in Rust inside the extension (no Python at all);
and the ratio of each Python figure to the Rust one. Build the wheel in release mode for
meaningful figures (`maturin build --release`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import timeit
from pathlib import Path
from typing import Callable

import vexil
from vexil import _native

RULESET = {
    "flags": [{
        "key": "new-checkout", "kind": "bool", "variations": [False, True], "on": True,
        "off_variation": 0, "fallthrough": {"variation": 0},
        "rules": [{"id": "pro", "clauses": [{"attribute": "plan", "op": "in",
                                             "values": ["pro", "enterprise"]}],
                   "serve": {"variation": 1}}],
    }],
    "segments": [],
}
SMALL_CONTEXT = {"kind": "user", "key": "alice", "attributes": {"plan": "pro", "country": "FR"}}


def best_ns(statement: Callable[[], object], iterations: int, repeat: int) -> float:
    return min(timeit.repeat(statement, number=iterations, repeat=repeat)) / iterations * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ruleset.json"
        path.write_text(json.dumps(RULESET))
        with vexil.Client("vxl-server-bench", offline=True, bootstrap=path) as client:
            context = vexil.Context.from_dict(SMALL_CONTEXT)
            assert client.bool_variation("new-checkout", SMALL_CONTEXT, False) is True
            assert client.bool_variation("new-checkout", context, False) is True
            variation = client.bool_variation

            dict_ns = best_ns(lambda: variation("new-checkout", SMALL_CONTEXT, False),
                              args.iterations, args.repeat)
            held_ns = best_ns(lambda: variation("new-checkout", context, False),
                              args.iterations, args.repeat)
            # The cost of the lambda and timeit's loop alone, reported for reference.
            empty_ns = best_ns(lambda: None, args.iterations, args.repeat)
            rust_ns = min(
                _native._bench_rust_bool_variation(client, "new-checkout", context, False,
                                                   args.iterations)
                for _ in range(args.repeat)) / args.iterations * 1e9

    print(f"vexil {vexil.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'call':52} {'ns/call':>8} {'x Rust':>7}")
    rows = [
        ("bool_variation, small dict context", dict_ns),
        ("bool_variation, reused vexil.Context", held_ns),
        ("same call in Rust (vexil-core, no Python)", rust_ns),
        ("empty Python call (timeit loop + lambda), for reference", empty_ns),
    ]
    for name, ns in rows:
        print(f"{name:52} {ns:8.0f} {ns / rust_ns:7.1f}")
    print(f"targets: dict <= 1000 ns ({'met' if dict_ns <= 1000 else 'NOT met'}), "
          f"reused Context <= 300 ns ({'met' if held_ns <= 300 else 'NOT met'})")


if __name__ == "__main__":
    main()
