#!/usr/bin/env bash
# The Kotlin SDK's CI: builds the JNI library and the servers the tests start, runs the
# JUnit 5 suite with Maven, and prints "N passed, N failed" (from surefire's reports) last.
# Works from any directory; caches the Maven repository under $VEXIL_CACHE_DIR.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
m2="$cache/m2"
mkdir -p "$m2"

fail() {
  echo "ci.sh: $1" >&2
  echo "0 passed, 1 failed"
  exit 1
}

command -v java >/dev/null || fail "java is missing (OpenJDK 17 is expected on the machine)"
command -v mvn >/dev/null || fail "mvn is missing (Maven is expected on the machine)"

cargo build -q --workspace --lib --bins --tests --manifest-path "$root/Cargo.toml" \
  || fail "cargo build failed"

# Offline once the cached repository has everything this pom needs (a warm run with the same
# pom.xml); online the first time and after the pom changes.
offline=()
pom_sum=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
if [ "$(cat "$m2/.vexil-kotlin-ready" 2>/dev/null)" = "$pom_sum" ]; then offline=(-o); fi

cd "$here"
rm -rf target/surefire-reports
mvn -B -q -Dstyle.color=never "${offline[@]}" -Dmaven.repo.local="$m2" test \
  -Dvexil.native.library="$CARGO_TARGET_DIR/debug/libvexil_jni.so" \
  -Dvexil.bin.dir="$CARGO_TARGET_DIR/debug"
status=$?
if [ $status -eq 0 ]; then echo "$pom_sum" >"$m2/.vexil-kotlin-ready"; fi

passed=0
failed=0
shopt -s nullglob
reports=(target/surefire-reports/TEST-*.xml)
for report in "${reports[@]}"; do
  # The <testsuite> element's counts.
  read -r tests failures errors skipped < <(
    grep -o '<testsuite [^>]*>' "$report" | head -1 | python3 -c '
import re, sys
attrs = dict(re.findall(r"(\w+)=\"([^\"]*)\"", sys.stdin.read()))
print(attrs.get("tests", 0), attrs.get("failures", 0), attrs.get("errors", 0), attrs.get("skipped", 0))')
  passed=$((passed + tests - failures - errors - skipped))
  failed=$((failed + failures + errors))
done
if [ $status -ne 0 ] && [ $failed -eq 0 ]; then
  failed=1 # the build itself failed before or outside the tests
fi
# A newline first: Maven may leave a colour reset without one, and the count must start its line.
printf '\n%s passed, %s failed\n' "$passed" "$failed"
[ $failed -eq 0 ]
