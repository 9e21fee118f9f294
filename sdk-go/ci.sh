#!/bin/sh
# The Go SDK's CI: builds the C ABI library, vexil-server and the vexil CLI with cargo, then
# vets and tests this module (race detector on) against the static library, and runs the
# conformance testee's build. Last line: `N passed, N failed`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export GOCACHE=${GOCACHE:-$cache/go-build}
export GOMODCACHE=${GOMODCACHE:-$cache/go-mod}
export GOFLAGS=${GOFLAGS:--mod=mod}
mkdir -p "$CARGO_TARGET_DIR" "$GOCACHE" "$GOMODCACHE"

if ! command -v go >/dev/null 2>&1; then
	echo "go is not installed (Go 1.24 or newer is needed)" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

cd "$root"
if ! cargo build -q --workspace --lib --bins --tests; then
	echo "cargo build failed" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

export CGO_ENABLED=1
# The module links the library it carries (native_linux_amd64.go): this build's.
mkdir -p "$here/lib/linux_amd64"
cp "$CARGO_TARGET_DIR/debug/libvexil_ffi.a" "$here/lib/linux_amd64/libvexil_ffi.a"

passed=0
failed=0
step() {
	name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
	fi
}

cd "$here"
step "go vet" go vet ./...
step "gofmt" sh -c 'test -z "$(gofmt -l .)" || { gofmt -l .; exit 1; }'
# Count the tests one by one from go test's JSON events.
log=$(mktemp)
go test -race -count=1 -json -timeout 15m ./... >"$log" 2>&1
status=$?
tests_passed=$(grep -c '"Action":"pass","Package":"[^"]*","Test":' "$log")
tests_failed=$(grep -c '"Action":"fail","Package":"[^"]*","Test":' "$log")
grep -o '"Output":"[^"]*' "$log" | sed 's/^"Output":"//; s/\\n$//; s/\\t/\t/g' | grep -E -- '^(--- |FAIL|ok|PASS)|_test.go' || true
if [ "$status" -ne 0 ] && [ "$tests_failed" -eq 0 ]; then
	tail -n 30 "$log" >&2
	tests_failed=1
fi
rm -f "$log"
passed=$((passed + tests_passed))
failed=$((failed + tests_failed))

cd "$root/sdk-go/testee"
step "testee builds" go build -o "$CARGO_TARGET_DIR/go-testee/vexil-go-testee" .
step "testee vet" go vet ./...

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
