package vexil

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPUTime is the CPU time used so far by the calling OS thread (CLOCK_THREAD_CPUTIME_ID).
func threadCPUTime() (time.Duration, bool) {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
