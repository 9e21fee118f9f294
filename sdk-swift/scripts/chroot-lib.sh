# Shared helpers for running the Swift toolchain in a Debian trixie chroot.
# Sourced by sdk-swift/ci.sh and the Swift conformance testee wrapper.
#
# Debian 12 has no Swift toolchain; trixie ships `swiftlang`. The chroot is cached under
# ${VEXIL_CACHE_DIR:-/var/cache/vexil}/swift-chroot and reused; it counts as complete only once
# the marker file exists, so an interrupted creation is redone from scratch on the next run.

VEXIL_CACHE_DIR="${VEXIL_CACHE_DIR:-/var/cache/vexil}"
SWIFT_CHROOT="${SWIFT_CHROOT:-$VEXIL_CACHE_DIR/swift-chroot}"
SWIFT_CHROOT_MARKER="$SWIFT_CHROOT/.vexil-swift-ready"
SWIFT_CHROOT_PACKAGES="swiftlang libswiftlang libc6-dev libstdc++-14-dev"

swift_chroot_log() { echo "swift-chroot: $*" >&2; }

# The Debian archive address from apt's own sources (deb822 or one-line format).
swift_chroot_mirror() {
    local mirror
    mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -n1)
    if [ -z "$mirror" ]; then
        mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null \
            | awk '{print $2}' | grep -v security | head -n1)
    fi
    echo "${mirror:-http://deb.debian.org/debian}"
}

# Creates the chroot if it is missing or incomplete. Safe to rerun.
swift_chroot_ensure() {
    if [ -f "$SWIFT_CHROOT_MARKER" ]; then
        return 0
    fi
    mkdir -p "$VEXIL_CACHE_DIR"
    # One creation at a time; a run that waited finds the marker.
    local lock_fd
    exec {lock_fd}>"$VEXIL_CACHE_DIR/swift-chroot.lock"
    flock "$lock_fd"
    local status=0
    [ -f "$SWIFT_CHROOT_MARKER" ] || swift_chroot_create || status=$?
    exec {lock_fd}>&-
    return "$status"
}

swift_chroot_create() {
    if ! command -v debootstrap >/dev/null 2>&1; then
        swift_chroot_log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null 2>&1 || {
            apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null
        } || return 1
    fi
    # Never delete through a mount (mounts are made in private namespaces, so none should be).
    if [ -e "$SWIFT_CHROOT" ]; then
        if grep -q " $SWIFT_CHROOT/" /proc/mounts; then
            swift_chroot_log "refusing to remove $SWIFT_CHROOT: something is still mounted inside"
            return 1
        fi
        swift_chroot_log "removing incomplete chroot"
        rm -rf "$SWIFT_CHROOT"
    fi
    mkdir -p "$(dirname "$SWIFT_CHROOT")"
    local mirror
    mirror=$(swift_chroot_mirror)
    swift_chroot_log "debootstrap trixie from $mirror (about a minute)"
    debootstrap --variant=minbase trixie "$SWIFT_CHROOT" "$mirror" >"$VEXIL_CACHE_DIR/swift-chroot-debootstrap.log" 2>&1 || {
        swift_chroot_log "debootstrap failed, see $VEXIL_CACHE_DIR/swift-chroot-debootstrap.log"
        return 1
    }
    cp /etc/resolv.conf "$SWIFT_CHROOT/etc/resolv.conf" 2>/dev/null || true
    # In a private mount namespace: the /proc mounted for apt and swift never reaches the host.
    # swift finds its runtime relative to its own path, which needs /proc.
    local status=0
    unshare -m --propagation private sh -c '
        mount -t proc proc "$1/proc" || exit 1
        chroot "$1" sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $2" || exit 1
        chroot "$1" swift --version >/dev/null 2>&1 || exit 2
    ' sh "$SWIFT_CHROOT" "$SWIFT_CHROOT_PACKAGES" >"$VEXIL_CACHE_DIR/swift-chroot-install.log" 2>&1 || status=$?
    case "$status" in
        0) ;;
        2) swift_chroot_log "swift does not run inside the chroot"; return 1 ;;
        *) swift_chroot_log "installing swiftlang failed, see $VEXIL_CACHE_DIR/swift-chroot-install.log"; return 1 ;;
    esac
    touch "$SWIFT_CHROOT_MARKER"
}

# Mount points made by this shell, innermost last; unmounted in reverse order.
SWIFT_CHROOT_MOUNTS=()

# swift_chroot_bind HOST_DIR PATH_IN_CHROOT
swift_chroot_bind() {
    local target="$SWIFT_CHROOT$2"
    mkdir -p "$target"
    mount --bind "$1" "$target" || return 1
    SWIFT_CHROOT_MOUNTS+=("$target")
}

swift_chroot_mount_proc() {
    mkdir -p "$SWIFT_CHROOT/proc"
    mount -t proc proc "$SWIFT_CHROOT/proc" || return 1
    SWIFT_CHROOT_MOUNTS+=("$SWIFT_CHROOT/proc")
}

# Unmounts what this shell mounted (reverse order); with no own mounts recorded, also anything
# left under the chroot by a killed run that is not in use by another live run.
swift_chroot_unmount_own() {
    local i
    for ((i = ${#SWIFT_CHROOT_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${SWIFT_CHROOT_MOUNTS[$i]}" 2>/dev/null || umount -l "${SWIFT_CHROOT_MOUNTS[$i]}" 2>/dev/null || true
    done
    SWIFT_CHROOT_MOUNTS=()
}


# swift_chroot_run WORKDIR COMMAND [ARG...]: the command inside the chroot, in a private mount
# namespace (see in-chroot.sh). stdin and stdout pass through.
swift_chroot_run() {
    unshare -m --propagation private "$(dirname "${BASH_SOURCE[0]}")/in-chroot.sh" "$@"
}
