#!/bin/sh
# The BoolVariation benchmark against the release build of the native library: builds it
# with cargo, compiles the library and tests/Benchmark.cs with mcs (optimized), maps the
# release library and runs. Arguments go to the benchmark: total calls (default 2000000)
# and rounds (default 10). Needs what ci.sh installs (Mono's mcs).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
(cd "$root" && cargo build -q --release -p vexil-ffi)
out="$CARGO_TARGET_DIR/dotnet-bench"
mkdir -p "$out"
mcs -langversion:7 -unsafe -nologo -optimize+ -warnaserror+ -target:library -out:"$out/Vexil.dll" "$here"/src/Vexil/*.cs
mcs -langversion:7 -unsafe -nologo -optimize+ -target:exe -out:"$out/Vexil.Benchmark.exe" -r:"$out/Vexil.dll" -r:System.Net \
	"$here/tests/TestSupport.cs" "$here/tests/Benchmark.cs"
printf '<configuration>\n  <dllmap dll="vexil_ffi" target="%s/release/libvexil_ffi.so"/>\n</configuration>\n' "$CARGO_TARGET_DIR" >"$out/Vexil.dll.config"
cd "$out"
mono Vexil.Benchmark.exe "$@"
