#!/bin/sh
# Builds the Go testee against the static C ABI library of the cargo target directory.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
# The conformance runner's own build: the same packages and targets, so nothing compiles twice.
(cd "$root" && cargo build -q --workspace --lib --bins --tests)
export CGO_ENABLED=1
# The module links the library it carries (native_linux_amd64.go): this build's.
mkdir -p "$root/sdk-go/lib/linux_amd64"
cp "$target/debug/libvexil_ffi.a" "$root/sdk-go/lib/linux_amd64/libvexil_ffi.a"
cd "$root/sdk-go/testee"
go build -o "$target/go-testee/vexil-go-testee" .
