#!/bin/sh
# Builds the .NET testee with Mono's mcs against the C ABI library of the cargo target
# directory (mapped by absolute path in the assemblies' .config, so no LD_LIBRARY_PATH).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
# The conformance runner's own build: the same packages and targets, so nothing compiles twice.
(cd "$root" && cargo build -q --workspace --lib --bins --tests)
out="$target/dotnet-testee"
mkdir -p "$out"
mcs -langversion:7 -unsafe -nologo -target:library -out:"$out/Vexil.dll" "$root"/sdk-dotnet/src/Vexil/*.cs
mcs -langversion:7 -nologo -target:exe -out:"$out/VexilTestee.exe" -r:"$out/Vexil.dll" "$root/sdk-dotnet/testee/Testee.cs"
printf '<configuration>\n  <dllmap dll="vexil_ffi" target="%s/debug/libvexil_ffi.so"/>\n</configuration>\n' "$target" >"$out/Vexil.dll.config"
