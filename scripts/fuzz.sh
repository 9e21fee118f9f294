#!/usr/bin/env bash
# The fuzz targets of fuzz/ (see fuzz/README.md).
#
#   scripts/fuzz.sh                    every target for 10 minutes (one after another), with
#                                      cargo-fuzz on the nightly toolchain; appends the
#                                      figures of each run to fuzz/REPORT.md
#   scripts/fuzz.sh --minutes 30 grpc_requests    one target, longer
#   scripts/fuzz.sh --smoke            every committed corpus and regression input, once, on
#                                      the stable toolchain (no instrumentation): what the
#                                      test command runs
#
# The full run needs the nightly toolchain (rustup toolchain install nightly) and installs
# cargo-fuzz from crates.io when it is missing. A crash leaves its input in
# fuzz/artifacts/<target>/: fix the cause, then move the input to fuzz/regressions/<target>/
# so that every later run replays it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
TARGETS=(ruleset_json context_json grpc_requests http_requests c_abi)
minutes=10
smoke=0
chosen=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) chosen+=("$1"); shift ;;
  esac
done
[ ${#chosen[@]} -gt 0 ] && TARGETS=("${chosen[@]}")
cd "$ROOT/fuzz"

# The inputs a target is run on: its corpus and its regressions (those that exist).
inputs() {
  for dir in "corpus/$1" "regressions/$1"; do
    [ -d "$dir" ] && echo "$dir"
  done
  return 0
}

if [ "$smoke" = 1 ]; then
  # Plain binaries: libFuzzer's driver runs each input once and stops at the first failure.
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}/fuzz-smoke"
  cargo build -q --release --bins
  for target in "${TARGETS[@]}"; do
    mapfile -t dirs < <(inputs "$target")
    if [ ${#dirs[@]} -eq 0 ]; then
      # A structured target with nothing committed yet still runs a few generated inputs.
      "$CARGO_TARGET_DIR/release/$target" -runs=2000 -seed=1 >/dev/null 2>"$CARGO_TARGET_DIR/$target.log" \
        || { tail -30 "$CARGO_TARGET_DIR/$target.log"; echo "fuzz smoke: $target FAILED"; exit 1; }
    else
      "$CARGO_TARGET_DIR/release/$target" -runs=0 "${dirs[@]}" >/dev/null 2>"$CARGO_TARGET_DIR/$target.log" \
        || { tail -30 "$CARGO_TARGET_DIR/$target.log"; echo "fuzz smoke: $target FAILED"; exit 1; }
    fi
    if [ ${#dirs[@]} -eq 0 ]; then
      echo "fuzz smoke: $target ok (2000 generated inputs)"
    else
      echo "fuzz smoke: $target ok ($(find "${dirs[@]}" -type f | wc -l) committed inputs)"
    fi
  done
  exit 0
fi

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/fuzz-target}"
cargo +nightly fuzz build
report="$ROOT/fuzz/REPORT.md"
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target"
  mapfile -t dirs < <(inputs "$target")
  log="$(mktemp)"
  started=$(date +%s)
  status=0
  cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
    -max_total_time=$((minutes * 60)) -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
  seconds=$(( $(date +%s) - started ))
  stat() { awk -v name="$1" '$1 == "stat::"name":" { print $2 }' "$log" | tail -1; }
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  result=$([ "$status" = 0 ] && echo "no crash" || echo "**crash** (see fuzz/artifacts/$target)")
  line="| $(date -u +%Y-%m-%d) | \`$target\` | ${seconds} s | $(stat number_of_executed_units) | ${edges:-?} | $(ls "corpus/$target" | wc -l) | $result |"
  echo "$line"
  # Under the table's last row (the findings follow the table).
  python3 - "$report" "$line" <<'PY'
import sys
path, row = sys.argv[1], sys.argv[2]
lines = open(path).read().split("\n")
last = max(i for i, line in enumerate(lines) if line.startswith("| "))
lines.insert(last + 1, row)
open(path, "w").write("\n".join(lines))
PY
  if [ "$status" != 0 ]; then
    tail -40 "$log"
    exit 1
  fi
  rm -f "$log"
done
