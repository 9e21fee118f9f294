# What the npm-based SDK checks (sdk-node/ci.sh, sdk-web/ci.sh) share, sourced from the
# package's folder: the shared cargo target folder and npm cache under VEXIL_CACHE_DIR, a
# quiet npm, an install that runs only when the lock file changed, and the count line that
# ends every run.

CACHE="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export npm_config_cache="$CACHE/npm"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
mkdir -p "$npm_config_cache"

# Progress on stderr, named after the package's folder (sdk-node, sdk-web).
log() { echo "${PWD##*/}: $*" >&2; }
# A step that fails before the tests still ends with the count line.
trap 'echo "0 passed, 1 failed"' ERR

# npm_install_once TOOL COMMAND...: runs the install COMMAND unless node_modules/.bin/TOOL is
# there and package-lock.json has not changed since the last install.
npm_install_once() {
  local tool="$1"
  shift
  if [ ! -x "node_modules/.bin/$tool" ] || ! cmp -s package-lock.json node_modules/.vexil-installed-lock; then
    log "$*"
    "$@" >&2
    cp package-lock.json node_modules/.vexil-installed-lock
  fi
}

# finish_with_totals TAP STATUS: prints `N passed, N failed` from the test runner's own
# totals in the TAP file (tests, not suites; a failed run without a failed test counts one),
# then exits with STATUS.
finish_with_totals() {
  local tap="$1" status="$2" passed failed
  passed=$(awk '/^# pass /{print $3}' "$tap")
  failed=$(awk '/^# fail /{print $3}' "$tap")
  passed=${passed:-0} failed=${failed:-0}
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  echo "$passed passed, $failed failed"
  exit "$status"
}
