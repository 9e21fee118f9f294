#!/bin/sh
# Builds the Kotlin testee: the JNI library, the SDK (installed into the cached Maven
# repository) and the testee itself, whose classpath is written to target/classpath.txt.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
repo="-Dmaven.repo.local=$cache/m2"
cargo build -q --workspace --lib --bins --tests --manifest-path "$root/Cargo.toml"
(cd "$root/sdk-kotlin" && mvn -B -q "$repo" install -DskipTests)
(cd "$here" && mvn -B -q "$repo" package dependency:build-classpath -Dmdep.outputFile=target/classpath.txt)
