#!/usr/bin/env bash
# The Swift SDK's checks: builds the native library on the host, generates its bindings with
# the pinned bindgen, then runs `swift build` and `swift test` (XCTest) in a Debian trixie
# chroot (Debian 12 has no Swift toolchain), cached in ${VEXIL_CACHE_DIR:-/var/cache/vexil}.
# Prints `N passed, N failed` last.
#
#   VEXIL_SWIFT_PROFILE=release ./ci.sh   optimized native library and Swift code (benchmarks)
#   VEXIL_SWIFT_FILTER=ServerTests ./ci.sh   a subset of the tests (swift test --filter)
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$sdk/scripts/env.sh"
source "$sdk/scripts/chroot-lib.sh"

fail() {
    echo "sdk-swift: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

swift_chroot_ensure || fail "cannot set up the Swift chroot"

# The server and admin CLI the tests talk to (debug, as conformance/run uses them).
(cd "$root" && cargo build -q --workspace --lib --bins --tests) || fail "cannot build vexil-server"
libdir=$("$sdk/scripts/generate.sh" | tail -n1) || fail "cannot build the library or generate the bindings"

# SwiftPM's build folder lives in the cache (warm runs rebuild only what changed); everything
# is mounted at its own path inside the chroot.
scratch="$VEXIL_CACHE_DIR/swift-build/$profile"
mkdir -p "$scratch"
export SWIFT_CHROOT_BINDS="$root:$CARGO_TARGET_DIR:$scratch:/tmp"
export VEXIL_BIN_DIR="$CARGO_TARGET_DIR/debug"
export SWIFT_CHROOT_ENV="VEXIL_BIN_DIR"
swift_flags=(--scratch-path "$scratch" -c "$profile"
    -Xlinker -L"$libdir" -Xlinker -rpath -Xlinker "$libdir")

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "sdk-swift: swift build ($profile)" >&2
swift_chroot_run "$sdk" swift build "${swift_flags[@]}" >&2 || fail "swift build failed"
test_args=(test "${swift_flags[@]}")
if [ -n "${VEXIL_SWIFT_FILTER:-}" ]; then
    test_args+=(--filter "$VEXIL_SWIFT_FILTER")
fi
echo "sdk-swift: swift test ($profile)" >&2
status=0
swift_chroot_run "$sdk" swift "${test_args[@]}" 2>&1 | tee "$log" >&2 || status=$?

grep -E '^(benchmark|lifecycle):' "$log" >&2 || true
# XCTest's last summary is the whole run's: "Executed N tests, with [K tests skipped and] M failures".
summary=$(grep -E 'Executed [0-9]+ tests?, with' "$log" | tail -n1 || true)
if [ -z "$summary" ]; then
    fail "swift test did not report (status $status)"
fi
executed=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
skipped=$(grep -oE '[0-9]+ tests? skipped' <<<"$summary" | grep -oE '^[0-9]+' || echo 0)
# A failing test can record several failures; count failed tests instead.
failed_tests=$(grep -cE "^Test Case .* failed" "$log" || true)
passed=$((executed - failed_tests - skipped))
if [ "$status" -ne 0 ] && [ "$failed_tests" -eq 0 ]; then
    failed_tests=1  # a crash or a build error of the tests
fi
[ "$skipped" -eq 0 ] || echo "sdk-swift: $skipped tests skipped" >&2
echo "$passed passed, $failed_tests failed"
[ "$failed_tests" -eq 0 ]
