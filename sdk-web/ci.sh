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
cd "$HERE"

source "$HERE/../scripts/npm-check.sh"

npm_install_once buf npm ci --prefer-offline

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
finish_with_totals "$tap" "$status"
