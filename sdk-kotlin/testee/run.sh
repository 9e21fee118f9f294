#!/bin/sh
# Starts the Kotlin testee; $1 is the cargo target directory holding debug/libvexil_jni.so.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${1:-${CARGO_TARGET_DIR:-$here/../../target}}
exec java -Dvexil.native.library="$target/debug/libvexil_jni.so" \
  -cp "$here/target/classes:$(cat "$here/target/classpath.txt")" dev.vexil.testee.MainKt
