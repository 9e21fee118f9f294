package vexil

import (
	"testing"
)

// BenchmarkBoolVariation: one BoolVariation with a reused context, and the same evaluation
// timed inside the native library in the same run; the ratio is reported as
// "x-rust" (Go ns per call / Rust ns per call).
func BenchmarkBoolVariation(b *testing.B) {
	client := bootstrapClient(b, boolFlag("checkout"))
	alice := mustContext(b, "user", "alice")
	if !client.BoolVariation("checkout", alice, false) {
		b.Fatal("flag not served")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		client.BoolVariation("checkout", alice, false)
	}
	b.StopTimer()
	goNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	const iterations = 1_000_000
	elapsed, err := client.benchmarkNative("checkout", alice, iterations)
	if err != nil {
		b.Fatal(err)
	}
	rustNs := float64(elapsed) / iterations
	b.ReportMetric(rustNs, "rust-ns/op")
	b.ReportMetric(goNs/rustNs, "x-rust")
}
