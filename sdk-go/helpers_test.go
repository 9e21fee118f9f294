package vexil

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vexil-flags/vexil/sdk-go/internal/testserver"
)

// repoRoot is the repository holding this module.
func repoRoot(t testing.TB) string { return testserver.RepoRoot() }

// testServer is a vexil-server process on free ports with its own SQLite data directory
// (see internal/testserver, shared with the openfeature package's tests).
type testServer struct{ *testserver.Server }

func startServer(t testing.TB) *testServer { return &testServer{testserver.Start(t)} }

func (s *testServer) endpoint() string { return s.Endpoint() }

// cli runs the vexil admin command against the server's production environment.
func (s *testServer) cli(args ...string) { s.CLI(args...) }

func (s *testServer) importFlags(flags ...map[string]any) { s.ImportFlags(flags...) }

// metric reads one Prometheus sample of the server (0 when absent).
func (s *testServer) metric(series string) float64 { return s.Metric(series) }

func boolFlag(key string) map[string]any {
	return map[string]any{"key": key, "kind": "bool", "variations": []any{false, true}, "on": true,
		"off_variation": 0, "fallthrough": map[string]any{"variation": 1}}
}

func mustContext(t testing.TB, kind, key string) *Context {
	ctx, err := NewContext(kind, key).Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctx.Close)
	return ctx
}

// rssKiB is the process's resident memory now.
func rssKiB(t testing.TB) int {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status on this system")
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			value, _ := strconv.Atoi(fields[1])
			return value
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
