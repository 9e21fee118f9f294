package vexil

import (
	"runtime"
	"testing"
)

// BenchmarkBoolVariation: one BoolVariation with a reused context, then the same
// evaluation timed inside the native library, as many times, in the same run. Reported:
// rust-ns/op and x-rust (Go ns/op divided by Rust ns/op). On Linux also the CPU time of the
// benchmark's thread (cpu-ns/op, rust-cpu-ns/op, x-rust-cpu), which, unlike wall time,
// does not count the time other processes ran on a busy machine.
func BenchmarkBoolVariation(b *testing.B) {
	client := bootstrapClient(b, boolFlag("checkout"))
	alice := mustContext(b, "user", "alice")
	if !client.BoolVariation("checkout", alice, false) {
		b.Fatal("flag not served")
	}
	// One OS thread for the whole benchmark, so that its CPU clock covers every call.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	cpuStart, cpuOK := threadCPUTime()
	for b.Loop() {
		client.BoolVariation("checkout", alice, false)
	}
	cpuEnd, _ := threadCPUTime()
	goNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	goCPUNs := float64(cpuEnd-cpuStart) / float64(b.N)

	rustStart, _ := threadCPUTime()
	elapsed, err := client.benchmarkNative("checkout", alice, uint64(b.N))
	rustEnd, _ := threadCPUTime()
	if err != nil {
		b.Fatal(err)
	}
	rustNs := float64(elapsed) / float64(b.N)
	b.ReportMetric(rustNs, "rust-ns/op")
	b.ReportMetric(goNs/rustNs, "x-rust")
	if cpuOK {
		rustCPUNs := float64(rustEnd-rustStart) / float64(b.N)
		b.ReportMetric(goCPUNs, "cpu-ns/op")
		b.ReportMetric(rustCPUNs, "rust-cpu-ns/op")
		b.ReportMetric(goCPUNs/rustCPUNs, "x-rust-cpu")
	}
}
