#!/usr/bin/env bash
# The Node SDK's check: installs the npm tools (cached), builds the addon with napi (which
# generates index.js and index.d.ts: build outputs, not tracked), runs the `node --test` suite
# (vectors, a real server, errors, memory, CJS/ESM, pack-and-install) and prints
# `N passed, N failed` last.
#
#   sdk-node/ci.sh                # everything
#   sdk-node/ci.sh --build-only   # install and build (the conformance testee's build step)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export npm_config_cache="$CACHE/npm"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
mkdir -p "$npm_config_cache"
cd "$HERE"

log() { echo "sdk-node: $*" >&2; }
# A step that fails before the tests still ends with the count line.
trap 'echo "0 passed, 1 failed"' ERR

# npm tools: reinstalled only when the lock file changed. `npm install` rather than `npm ci`:
# npm 11's `ci` refuses this lock file over the platform-specific optional packages of a
# dependency of @napi-rs/cli; `install` follows the same lock file.
if [ ! -x node_modules/.bin/napi ] || ! cmp -s package-lock.json node_modules/.vexil-installed-lock; then
  log "npm install"
  npm install --prefer-offline >&2
  cp package-lock.json node_modules/.vexil-installed-lock
fi

# The addon, with the loader (index.js) and the type definitions (index.d.ts) napi generates.
log "napi build"
node_modules/.bin/napi build --platform --js index.js --dts index.d.ts >&2
[ "${1:-}" = "--build-only" ] && exit 0

# The server and the admin command the tests start (the conformance runner's build, so that
# nothing compiles twice).
log "cargo build (vexil-server, vexil)"
(cd "$ROOT" && cargo build -q --workspace --lib --bins --tests >&2)

log "node --test"
set +e
trap - ERR
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stderr \
  --test-reporter=tap --test-reporter-destination="$CARGO_TARGET_DIR/sdk-node-tests.tap" test/ 
status=$?
set -e
# The runner's own totals (tests, not suites).
passed=$(awk '/^# pass /{print $3}' "$CARGO_TARGET_DIR/sdk-node-tests.tap")
failed=$(awk '/^# fail /{print $3}' "$CARGO_TARGET_DIR/sdk-node-tests.tap")
passed=${passed:-0} failed=${failed:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
