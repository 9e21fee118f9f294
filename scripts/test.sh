#!/usr/bin/env bash
# Runs every test of the repository: the one command the README, CI and developers share.
#
# It installs what the tests need when it is missing (Python packages for the vector checks,
# Postgres and Redis for the server's storage tests), keeps expensive caches in fixed folders
# outside the clone, and ends with one line: "N passed, N failed".
#
#   scripts/test.sh                 every step, as CI runs it
#   scripts/test.sh --sdk go        one SDK's steps alone: its ci.sh and its conformance column
#                                   (repeat --sdk for several; names: rust, python, node, go,
#                                   kotlin, dotnet, swift, web; rust is formatting, clippy, the
#                                   vector files, cargo test, the fuzz and fault-suite smoke
#                                   runs and the Rust column)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

only_sdks=()
rust_steps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sdk)
      [ $# -ge 2 ] || { echo "--sdk needs a name" >&2; exit 2; }
      only_sdks+=("$2"); shift 2 ;;
    --sdk=*) only_sdks+=("${1#--sdk=}"); shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for name in "${only_sdks[@]}"; do
  case "$name" in
    rust) ;;
    *) [ -x "sdk-$name/ci.sh" ] || { echo "--sdk $name: there is no sdk-$name/ci.sh" >&2; exit 2; } ;;
  esac
done
# Whether the SDK named $1 runs: every SDK when no --sdk was given.
selected() {
  [ ${#only_sdks[@]} -eq 0 ] && return 0
  local name
  for name in "${only_sdks[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}
selected rust || rust_steps=0

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

if [ "$rust_steps" = 1 ]; then
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

fi

step "services (Postgres, Redis)"
eval "$(scripts/services.sh start)"

if [ "$rust_steps" = 1 ]; then
step "rust tests"
if ! cargo test --workspace 2>&1 | tee "$log/cargo.txt"; then
  status=1
fi
count_cargo "$log/cargo.txt"
if grep -q '^error' "$log/cargo.txt" && ! grep -q 'test result' "$log/cargo.txt"; then
  failed=$((failed + 1))
fi

# The fuzz targets' smoke form: every committed corpus and regression input once, on the
# stable toolchain (the long runs are scripts/fuzz.sh; see fuzz/README.md).
step "fuzz targets (every committed input once)"
if cargo fmt --manifest-path fuzz/Cargo.toml -- --check && scripts/fuzz.sh --smoke 2>&1 | tee "$log/fuzz.txt"; then
  passed=$((passed + 1))
else
  status=1; failed=$((failed + 1))
fi

# The fault suite's smoke form: steady load, an instance killed, SDK connections reset, with
# every target checked (the whole suite is scripts/chaos.sh; see RELIABILITY.md).
step "fault suite (smoke)"
if scripts/chaos.sh --smoke 2>&1 | tee "$log/chaos.txt"; then
  passed=$((passed + 1))
else
  status=1; failed=$((failed + 1))
fi
fi

# Each SDK folder with a ci.sh builds its package with its own toolchain (installing the toolchain
# when missing, caching it under $VEXIL_CACHE_DIR) and runs its own test suite; the script's last
# line is "N passed, N failed".
for suite in sdk-*/ci.sh; do
  [ -x "$suite" ] || continue
  selected "$(dirname "$suite" | sed 's/^sdk-//')" || continue
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

conformance_args=()
for name in "${only_sdks[@]}"; do conformance_args+=(--sdk "$name"); done
step "conformance matrix (every SDK's testee, vectors and live scenarios)"
if conformance/run "${conformance_args[@]}" 2>&1 | tee "$log/conformance.txt"; then :; else status=1; fi
counts=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p = $1; f = $3 } END { print p + 0, f + 0 }' "$log/conformance.txt")
passed=$((passed + ${counts% *}))
failed=$((failed + ${counts#* }))
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed$' "$log/conformance.txt"; then
  failed=$((failed + 1))
fi

# The packages a user installs: built as a release builds them (with the dev profile, to reuse
# this run's build), then installed into new empty projects by each ecosystem's own tool.
if [ ${#only_sdks[@]} -eq 0 ]; then
  step "install tests (release artifacts in new projects)"
  if scripts/release.sh --dev --out "$log/dist" >"$log/release.txt" 2>&1 \
    && scripts/install-tests.sh "$log/dist" --dev 2>&1 | tee "$log/install.txt"; then :; else
    status=1
    tail -n 40 "$log/release.txt"
  fi
  counts=$(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p = $1; f = $3 } END { print p + 0, f + 0 }' "$log/install.txt" 2>/dev/null || echo "0 0")
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
  if ! grep -qE '^[0-9]+ passed, [0-9]+ failed$' "$log/install.txt" 2>/dev/null; then
    failed=$((failed + 1))
  fi
fi

echo
echo "$passed passed, $failed failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
