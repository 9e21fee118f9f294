#!/usr/bin/env bash
# The browser SDK's check: installs the npm tools (cached), generates the client code from
# proto/ into src/gen, type-checks the package and its tests, builds dist/, builds vexil-server
# and the vexil command (cargo, shared target dir), runs the unit tests (`node --test`), the
# tests in Debian's Chromium (installed when missing) against a fake gRPC-web server and
# against a real vexil-server, OpenFeature's published OFREP providers against the server,
# prints the bundle sizes, and prints `N passed, N failed` last.
#
#   sdk-web/ci.sh                # everything
#   sdk-web/ci.sh --build-only   # install, generate the client code, build dist/
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export npm_config_cache="$CACHE/npm"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
mkdir -p "$npm_config_cache"
cd "$HERE"

log() { echo "sdk-web: $*" >&2; }
# A step that fails before the tests still ends with the count line.
trap 'echo "0 passed, 1 failed"' ERR

# npm tools: reinstalled only when the lock file changed.
if [ ! -x node_modules/.bin/buf ] || ! cmp -s package-lock.json node_modules/.vexil-installed-lock; then
  log "npm ci"
  npm ci --prefer-offline >&2
  cp package-lock.json node_modules/.vexil-installed-lock
fi

# The client code is generated from proto/ at every run (not committed), so it cannot drift.
log "buf generate"
node_modules/.bin/buf generate >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "tsc (package and tests)"
node_modules/.bin/tsc -p tsconfig.json --noEmit >&2
node_modules/.bin/tsc -p tsconfig.test.json >&2
log "build"
node scripts/build.mjs >&2
[ "${1:-}" = "--build-only" ] && exit 0

# The browser the tests drive: Debian's chromium, installed when missing (nothing downloads a
# browser). Without root or apt-get the browser tests are skipped, and say so.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-cache show chromium >/dev/null 2>&1 || apt-get update -q >&2
    apt-get install -y -q --no-install-recommends chromium >&2
  else
    log "no /usr/bin/chromium, and it cannot be installed here: the browser tests are skipped"
  fi
fi

log "cargo build (vexil-server, vexil)"
(cd "$HERE/.." && cargo build -q -p vexil-server -p vexil-cli --bins >&2)

log "node --test"
tap="$work/tests.tap"
set +e
trap - ERR
# Each test has a time limit, and the run one more, so that a client left running by a broken
# test cannot hold CI (the tests close every client they make, even when an assertion fails).
timeout 600 node --import tsx --test --test-concurrency=1 --test-timeout=60000 \
  --test-reporter=spec --test-reporter-destination=stderr \
  --test-reporter=tap --test-reporter-destination="$tap" test/*.test.ts test/browser/*.test.ts
status=$?
set -e
node scripts/size.mjs >&2 || status=1
# The runner's own totals (tests, not suites).
passed=$(awk '/^# pass /{print $3}' "$tap")
failed=$(awk '/^# fail /{print $3}' "$tap")
passed=${passed:-0} failed=${failed:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
