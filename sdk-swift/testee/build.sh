#!/usr/bin/env bash
# Builds the Swift testee (sdk-swift's `vexil-swift-testee` product): the native library on the
# host, its bindings, then `swift build` in the Swift chroot. Usage: build.sh CARGO_TARGET_DIR
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$(cd "$sdk/.." && pwd)
export CARGO_TARGET_DIR="${1:?usage: build.sh CARGO_TARGET_DIR}"
source "$sdk/scripts/chroot-lib.sh"
swift_chroot_ensure
libdir=$("$sdk/scripts/generate.sh" | tail -n1)
scratch="$VEXIL_CACHE_DIR/swift-build/debug"
mkdir -p "$scratch"
export SWIFT_CHROOT_BINDS="$root:$CARGO_TARGET_DIR:$scratch:/tmp"
swift_chroot_run "$sdk" swift build --scratch-path "$scratch" --product vexil-swift-testee \
    -Xlinker -L"$libdir" -Xlinker -rpath -Xlinker "$libdir" >&2
