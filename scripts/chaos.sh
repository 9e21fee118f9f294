#!/usr/bin/env bash
# The fault suite (see RELIABILITY.md): three vexil-server instances on a Postgres and a Redis
# of its own (started by scripts/services.sh in a folder and on ports of their own), Rust SDK
# clients, a Python client (through its conformance testee) and an admin writer under steady
# load, while it kills and restarts instances, Redis and Postgres and injects network faults
# through its TCP proxy. Prints one report row per fault and exits 1 when a target is missed.
#
#   scripts/chaos.sh                 # every fault, 15 s each (about 5 minutes)
#   scripts/chaos.sh --smoke         # three short phases, as the test command runs it
#   scripts/chaos.sh --report FILE   # also writes the report table to FILE
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export VEXIL_CHAOS_SERVICES="$ROOT/scripts/services.sh"
export VEXIL_CHAOS_DIR="$CACHE/chaos"

cd "$ROOT"
cargo build -q -p vexil-server --bin vexil-server -p vexil-testing --example chaos
# The whole suite drives one binding beside the Rust clients: Python, through its conformance
# testee (built here; the smoke form stays with the Rust SDK).
if [[ " $* " != *" --smoke "* ]]; then
  sdk-python/testee/build
  set -- --testee "python=$ROOT/sdk-python/testee/run" "$@"
fi
exec "$CARGO_TARGET_DIR/debug/examples/chaos" "$@"
