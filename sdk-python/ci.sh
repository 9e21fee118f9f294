#!/usr/bin/env bash
# The Python SDK's checks: builds the wheel with maturin, installs it into a clean
# virtualenv, checks the type stubs against the module (mypy stubtest) and runs the pytest
# suite against the installed wheel (conformance vectors, a real vexil-server, memory).
# Last line: `N passed, N failed`.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${VEXIL_CACHE_DIR:-/var/cache/vexil}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
TOOLS=$CACHE/venv-python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "ci.sh: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

# Build tools, kept between runs.
# openfeature-sdk: stubtest imports every module of the package, vexil.openfeature included.
if [ ! -x "$TOOLS/bin/maturin" ] || [ ! -x "$TOOLS/bin/mypy" ] || [ ! -x "$TOOLS/bin/pytest" ] \
    || ! "$TOOLS/bin/python" -c "import openfeature" 2>/dev/null; then
    mkdir -p "$CACHE"
    python3 -m venv "$TOOLS" || fail "cannot create $TOOLS"
    "$TOOLS/bin/pip" install -q --upgrade "maturin>=1.9.4,<2" mypy pytest "openfeature-sdk==0.10.0" \
        || fail "pip install of the tools failed"
fi

# The server and the admin command the tests start, built as conformance/run and
# `cargo test --workspace` build them (same feature resolution: nothing compiles twice).
(cd "$ROOT" && cargo build -q --workspace --lib --bins --tests) || fail "cargo build of the workspace failed"

# The wheel (dev profile: the same target directory and profile as the workspace's tests).
"$TOOLS/bin/maturin" build -q --profile dev -m "$HERE/Cargo.toml" -o "$WORK/wheels" >&2 \
    || fail "maturin build failed"
WHEEL=$(ls "$WORK"/wheels/vexil_flags-*.whl)
# One wheel for every CPython from 3.10 on (the stable ABI), as the package promises.
case "$WHEEL" in
    *-cp310-abi3-*) ;;
    *) fail "the wheel is not an abi3 wheel for CPython 3.10+: $(basename "$WHEEL")" ;;
esac

# A clean virtualenv with only the wheel, pytest, and the published OpenFeature SDK and OFREP
# provider that the OFREP tests drive against the server.
python3 -m venv "$WORK/venv" || fail "cannot create a virtualenv"
"$WORK/venv/bin/pip" install -q "$WHEEL" pytest "openfeature-sdk==0.10.0" "openfeature-provider-ofrep==0.3.0" \
    || fail "pip install of the wheel and the test packages failed"
"$WORK/venv/bin/python" -c 'import vexil, sys; assert "site-packages" in vexil.__file__, vexil.__file__' \
    || fail "the installed wheel is not what gets imported"

passed=0
failed=0

# Stubs: checked against the installed module, and the tests and examples type-checked.
"$TOOLS/bin/pip" install -q --force-reinstall --no-deps "$WHEEL" || fail "pip install into $TOOLS failed"
if (cd "$WORK" && "$TOOLS/bin/python" -m mypy.stubtest vexil --allowlist "$HERE/stubtest-allowlist.txt"); then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
if (cd "$HERE" && "$TOOLS/bin/mypy" --strict --no-incremental --python-executable "$TOOLS/bin/python" examples benchmarks); then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

# The test suite, against the installed wheel (run from elsewhere so that the source tree
# is not what gets imported).
(cd "$WORK" && "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider \
    --rootdir "$HERE" --junitxml "$WORK/junit.xml" "$HERE/tests")
if [ -f "$WORK/junit.xml" ]; then
    counts=$("$WORK/venv/bin/python" - "$WORK/junit.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(tests - bad - skipped, bad + skipped)
PY
)
    passed=$((passed + ${counts% *}))
    failed=$((failed + ${counts#* }))
else
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
