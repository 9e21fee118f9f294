#!/bin/sh
# The .NET SDK's CI: installs Mono and NUnit when missing, builds the C ABI library,
# vexil-server and the vexil CLI with cargo, compiles the library, its tests and the
# conformance testee with mcs (C# 7), runs the NUnit suite. Last line: `N passed, N failed`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
mkdir -p "$CARGO_TARGET_DIR"
nunit=/usr/lib/cli/nunit.framework-2.6.3/nunit.framework.dll

fail() {
	echo "$1" >&2
	echo "0 passed, 1 failed"
	exit 1
}

if ! command -v mcs >/dev/null 2>&1 || ! command -v nunit-console >/dev/null 2>&1 || [ ! -f "$nunit" ]; then
	(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-devel nunit-console) >&2 ||
		fail "cannot install mono-devel and nunit-console"
fi

cd "$root"
cargo build -q --workspace --lib --bins --tests || fail "cargo build failed"

out="$CARGO_TARGET_DIR/dotnet"
mkdir -p "$out"
# Mono 6.8's mcs reads each `_` of a digit separator as a `0` (2_000 compiles as 20000), while
# dotnet's compiler does not: numeric literals must not use separators.
if grep -nE '[0-9]_[0-9]' "$here"/src/Vexil/*.cs "$here"/tests/*.cs "$root/sdk-dotnet/testee/Testee.cs" >&2; then
	fail "digit separators in C# literals (miscompiled by mcs): write the number without them"
fi
mcs -langversion:7 -unsafe -nologo -optimize+ -warnaserror+ -target:library -doc:"$out/Vexil.xml" -out:"$out/Vexil.dll" "$here"/src/Vexil/*.cs ||
	fail "the library does not compile"
mcs -langversion:7 -nologo -target:library -out:"$out/Vexil.Tests.dll" -r:"$out/Vexil.dll" -r:"$nunit" -r:System.Net \
	"$here/tests/TestSupport.cs" "$here/tests/VectorTests.cs" "$here/tests/ClientTests.cs" || fail "the tests do not compile"
mcs -langversion:7 -unsafe -nologo -target:exe -out:"$out/Vexil.Benchmark.exe" -r:"$out/Vexil.dll" -r:System.Net \
	"$here/tests/TestSupport.cs" "$here/tests/Benchmark.cs" || fail "the benchmark does not compile"
# The native library by absolute path, for Mono's loader.
printf '<configuration>\n  <dllmap dll="vexil_ffi" target="%s/debug/libvexil_ffi.so"/>\n</configuration>\n' "$CARGO_TARGET_DIR" >"$out/Vexil.dll.config"
cp "$nunit" "$out/"

export VEXIL_REPO="$root"
cd "$out"
nunit-console -nologo -noshadow -xml="$out/results.xml" "$out/Vexil.Tests.dll" >"$out/nunit.log" 2>&1
grep -E "^(Tests run|Errors and Failures|[0-9]+\) )" -A3 "$out/nunit.log" | head -60
# Each test case is one result; the fixtures' and suites' own results are not counted.
passed=$(grep -c '<test-case[^>]*result="Success"' "$out/results.xml" || true)
failed=$(grep -Ec '<test-case[^>]*result="(Failure|Error)"' "$out/results.xml" || true)
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
	tail -n 30 "$out/nunit.log" >&2
	failed=1
fi

if mcs -langversion:7 -nologo -target:exe -out:"$out/VexilTestee.exe" -r:"$out/Vexil.dll" "$root/sdk-dotnet/testee/Testee.cs"; then
	passed=$((passed + 1))
else
	echo "FAIL the conformance testee does not compile" >&2
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
