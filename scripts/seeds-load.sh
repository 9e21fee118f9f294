#!/usr/bin/env bash
# The load test at the seeds' scale (see BENCHMARKS.md, "The seeds' scale"): 10,000 flags and
# 1,000 running experiments, three vexil-server instances on a Postgres primary + streaming
# replica and a three-primary Redis Cluster of its own, local-evaluation SDK clients at the
# rate of 1 billion evaluations a day (sped up 6×) over 20 million contexts, remote Evaluate
# calls, admin changes, a ramp, and faults (a Redis primary killed, the replica stopped).
# Release build; not part of the test command.
#
#   scripts/seeds-load.sh                  # 300 s measured (about 8 minutes in all)
#   scripts/seeds-load.sh --smoke          # one minute at a tenth of the size
#   scripts/seeds-load.sh --report FILE    # also writes the report to FILE
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${VEXIL_CACHE_DIR:-/var/cache/vexil}/target}"

cd "$ROOT"
# Postgres and Redis binaries (the test services themselves are not used: the test starts
# its own primary, replica and cluster).
scripts/services.sh install >/dev/null
cargo build -q --release -p vexil-server --bin vexil-server -p vexil-testing --example seeds
exec "$CARGO_TARGET_DIR/release/examples/seeds" "$@"
