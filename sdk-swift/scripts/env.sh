# What the Swift SDK's build scripts share, sourced with `sdk` set to this folder: the
# repository's root, the cache and cargo's target folder (both exported for the tools they
# start), and the build profile (VEXIL_SWIFT_PROFILE: debug unless release).
root=$(cd "$sdk/.." && pwd)
export VEXIL_CACHE_DIR="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$VEXIL_CACHE_DIR/target}"
profile="${VEXIL_SWIFT_PROFILE:-debug}"
