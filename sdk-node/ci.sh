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
cd "$HERE"

source "$ROOT/scripts/npm-check.sh"

# npm tools. `npm install` rather than `npm ci`: npm 11's `ci` refuses this lock file over the
# platform-specific optional packages of a dependency of @napi-rs/cli; `install` follows the
# same lock file.
npm_install_once napi npm install --prefer-offline

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
finish_with_totals "$CARGO_TARGET_DIR/sdk-node-tests.tap" "$status"
