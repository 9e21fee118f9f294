//go:build !linux

package vexil

import "time"

// threadCPUTime: no per-thread CPU clock is read on this system; benchmarks report wall time only.
func threadCPUTime() (time.Duration, bool) { return 0, false }
