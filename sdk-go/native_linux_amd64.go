//go:build !vexil_custom_lib

package vexil

// The native library this module ships for linux/amd64 (put there by a release, or by
// ci.sh in a clone of the repository). Build with -tags vexil_custom_lib and set
// CGO_LDFLAGS to link another one (a shared library, a build of your own).

// #cgo LDFLAGS: ${SRCDIR}/lib/linux_amd64/libvexil_ffi.a -lm -ldl -lpthread
import "C"
