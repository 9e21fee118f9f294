#!/usr/bin/env bash
# Runs every test of the repository: the one command the README, CI and developers share.
#
# It installs what the tests need when it is missing (Python packages for the vector checks,
# Postgres and Redis for the server's storage tests), keeps expensive caches in fixed folders
# outside the clone, and ends with one line: "N passed, N failed".
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export VEXIL_CACHE_DIR="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
mkdir -p "$VEXIL_CACHE_DIR"
# One shared target dir across clones, so a fresh clone does not rebuild every dependency.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$VEXIL_CACHE_DIR/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT
passed=0
failed=0
status=0

step() { printf '\n== %s\n' "$*"; }

# Adds the counts of every "test result:" line cargo printed.
count_cargo() {
  local counts
  counts=$(awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
                END { print p + 0, f + 0 }' "$1")
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
}

step "formatting"
if ! cargo fmt --all -- --check; then
  echo "cargo fmt found unformatted code: run cargo fmt --all"; status=1; failed=$((failed + 1))
fi

step "clippy"
if ! cargo clippy --workspace --all-targets -- -D warnings; then
  status=1; failed=$((failed + 1))
fi

step "vector files (schema, notes, independent murmur3)"
python3 -c 'import jsonschema, mmh3' 2>/dev/null || pip install -q jsonschema mmh3
if python3 conformance/tools/check_vectors.py >"$log/vectors.txt" 2>&1; then
  tail -n 2 "$log/vectors.txt"
  passed=$((passed + 1))
else
  cat "$log/vectors.txt"; status=1; failed=$((failed + 1))
fi

step "services (Postgres, Redis)"
eval "$(scripts/services.sh start)"

step "rust tests"
if ! cargo test --workspace 2>&1 | tee "$log/cargo.txt"; then
  status=1
fi
count_cargo "$log/cargo.txt"
if grep -q '^error' "$log/cargo.txt" && ! grep -q 'test result' "$log/cargo.txt"; then
  failed=$((failed + 1))
fi

# Each SDK folder with a ci.sh builds its package with its own toolchain (installing the toolchain
# when missing, caching it under $VEXIL_CACHE_DIR) and runs its own test suite; the script's last
# line is "N passed, N failed".
for suite in sdk-*/ci.sh; do
  [ -x "$suite" ] || continue
  step "$(dirname "$suite") (its own toolchain and test suite)"
  name="$(dirname "$suite")"
  if "$suite" 2>&1 | tee "$log/$name.raw"; then :; else status=1; fi
  # Colour codes some tools print would hide the count at the start of a line.
  sed 's/\x1b\[[0-9;]*m//g' "$log/$name.raw" >"$log/$name.txt"
  counts=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p = $1; f = $3 } END { print p + 0, f + 0 }' "$log/$name.txt")
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
  if ! grep -qE '^[0-9]+ passed, [0-9]+ failed$' "$log/$name.txt"; then
    failed=$((failed + 1))
  fi
done

step "conformance matrix (every SDK's testee, vectors and live scenarios)"
if conformance/run 2>&1 | tee "$log/conformance.txt"; then :; else status=1; fi
counts=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p = $1; f = $3 } END { print p + 0, f + 0 }' "$log/conformance.txt")
passed=$((passed + ${counts% *}))
failed=$((failed + ${counts#* }))
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed$' "$log/conformance.txt"; then
  failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
