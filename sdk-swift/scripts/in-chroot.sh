#!/usr/bin/env bash
# Runs a command inside the Swift chroot: in-chroot.sh WORKDIR COMMAND [ARG...]
#
# Meant to run in a private mount namespace (`unshare -m --propagation private`, as
# `swift_chroot_run` does), so that no mount made here is ever seen by, or left behind on, the
# host: they vanish with the namespace. They are also unmounted explicitly on exit.
#
# Host folders listed in SWIFT_CHROOT_BINDS (colon-separated) are bind-mounted at the same path
# inside, so that paths mean the same on both sides; variables named in SWIFT_CHROOT_ENV
# (space-separated) are passed through.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/chroot-lib.sh"

workdir=$1
shift
trap swift_chroot_unmount_own EXIT
swift_chroot_mount_proc
swift_chroot_bind /dev /dev
IFS=: read -r -a binds <<<"${SWIFT_CHROOT_BINDS:-}"
for dir in "${binds[@]}"; do
    [ -n "$dir" ] || continue
    mkdir -p "$dir"
    swift_chroot_bind "$dir" "$dir"
done
environment=(PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TMPDIR=/tmp)
for name in ${SWIFT_CHROOT_ENV:-}; do
    if [ -n "${!name+x}" ]; then
        environment+=("$name=${!name}")
    fi
done
status=0
chroot "$SWIFT_CHROOT" /usr/bin/env -i "${environment[@]}" sh -c 'cd "$0" && exec "$@"' "$workdir" "$@" || status=$?
exit "$status"
