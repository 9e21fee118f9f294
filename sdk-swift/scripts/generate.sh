#!/usr/bin/env bash
# Builds the native library (host cargo) and generates its Swift bindings into Generated/
# with the pinned uniffi bindgen (sdk-swift/uniffi-bindgen), in library mode.
#
#   scripts/generate.sh            debug library
#   VEXIL_SWIFT_PROFILE=release scripts/generate.sh
#
# Prints the folder holding libvexil_uniffi.so on its last line.
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$sdk/scripts/env.sh"

cd "$root"
if [ "$profile" = release ]; then
    cargo build -q --release -p vexil-uniffi >&2
else
    cargo build -q --workspace --lib --bins --tests >&2
fi
libdir="$CARGO_TARGET_DIR/$profile"

# The bindgen is its own workspace with its own lock file, built in a target folder of its own
# (so that it never waits on, nor invalidates, the main workspace's build).
bindgen_target="$CARGO_TARGET_DIR/uniffi-bindgen"
CARGO_TARGET_DIR="$bindgen_target" cargo build -q --locked \
    --manifest-path "$sdk/uniffi-bindgen/Cargo.toml" >&2

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
"$bindgen_target/debug/uniffi-bindgen" generate --library "$libdir/libvexil_uniffi.so" \
    --language swift --out-dir "$staging" --no-format >&2

# Replace a generated file only when it changed, so that SwiftPM rebuilds only what it must.
install_if_changed() {
    mkdir -p "$(dirname "$2")"
    if ! cmp -s "$1" "$2"; then
        cp "$1" "$2"
    fi
}
install_if_changed "$staging/vexil_uniffi.swift" "$sdk/Generated/VexilNative/vexil_uniffi.swift"
install_if_changed "$staging/vexil_uniffiFFI.h" "$sdk/Generated/vexil_uniffiFFI/vexil_uniffiFFI.h"
# Our own module map (not the generated one): it also links the library.
cat >"$staging/module.modulemap" <<'MAP'
module vexil_uniffiFFI {
    header "vexil_uniffiFFI.h"
    link "vexil_uniffi"
    export *
}
MAP
install_if_changed "$staging/module.modulemap" "$sdk/Generated/vexil_uniffiFFI/module.modulemap"
echo "$libdir"
