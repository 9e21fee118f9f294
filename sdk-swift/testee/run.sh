#!/usr/bin/env bash
# Starts the Swift testee inside the Swift chroot, speaking conformance/PROTOCOL.md on stdin and
# stdout. Its mounts live in a private mount namespace and go away with it, whatever happens.
# Usage: run.sh CARGO_TARGET_DIR (build it first with build.sh).
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$(cd "$sdk/.." && pwd)
target="${1:?usage: run.sh CARGO_TARGET_DIR}"
source "$sdk/scripts/chroot-lib.sh"
scratch="$VEXIL_CACHE_DIR/swift-build/debug"
[ -f "$SWIFT_CHROOT_MARKER" ] || { echo "swift testee: no Swift chroot, run build.sh first" >&2; exit 1; }
# The runner's bootstrap and cache files are under /tmp, mounted at the same path.
export SWIFT_CHROOT_BINDS="$root:$target:$scratch:/tmp"
swift_chroot_run "$root" "$scratch/debug/vexil-swift-testee"
