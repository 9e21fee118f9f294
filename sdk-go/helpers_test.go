package vexil

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository holding this module.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// targetDir is cargo's target directory (CARGO_TARGET_DIR, else the repository's target/).
func targetDir(t testing.TB) string {
	if dir := os.Getenv("CARGO_TARGET_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(repoRoot(t), "target")
}

func freePort(t testing.TB) int {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

// testServer is a vexil-server process on free ports with its own SQLite data directory.
type testServer struct {
	t        testing.TB
	dataDir  string
	port     int
	httpPort int
	cmd      *exec.Cmd
	token    string
	keys     map[string]string
}

func (s *testServer) endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

func binary(t testing.TB, name string) string {
	path := filepath.Join(targetDir(t), "debug", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s not found at %s: build it with `cargo build -p vexil-server -p vexil-cli` (ci.sh does)", name, path)
	}
	return path
}

func startServer(t testing.TB) *testServer {
	s := &testServer{t: t, dataDir: filepath.Join(t.TempDir(), "server-data"), port: freePort(t), httpPort: freePort(t)}
	s.cmd = exec.Command(binary(t, "vexil-server"), "--listen", fmt.Sprintf("127.0.0.1:%d", s.port),
		"--http-listen", fmt.Sprintf("127.0.0.1:%d", s.httpPort), "--data-dir", s.dataDir,
		"--heartbeat-interval", "0.5", "--version-check-interval", "0.5")
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", s.httpPort))
		if err == nil {
			response.Body.Close()
			if response.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("vexil-server did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var credentials struct {
		AdminToken struct {
			Token string `json:"token"`
		} `json:"admin_token"`
		SDKKeys map[string]map[string]string `json:"sdk_keys"`
	}
	raw, err := os.ReadFile(filepath.Join(s.dataDir, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &credentials); err != nil {
		t.Fatal(err)
	}
	s.token, s.keys = credentials.AdminToken.Token, credentials.SDKKeys["production"]
	return s
}

// cli runs the vexil admin command against the server's production environment.
func (s *testServer) cli(args ...string) {
	cmd := exec.Command(binary(s.t, "vexil"), args...)
	cmd.Env = append(os.Environ(), "VEXIL_SERVER="+s.endpoint(), "VEXIL_TOKEN="+s.token, "VEXIL_ENVIRONMENT=production")
	if output, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("vexil %s: %v\n%s", strings.Join(args, " "), err, output)
	}
}

func (s *testServer) importFlags(flags ...map[string]any) {
	path := filepath.Join(s.t.TempDir(), fmt.Sprintf("import-%d.json", time.Now().UnixNano()))
	raw, _ := json.Marshal(map[string]any{"flags": flags, "segments": []any{}})
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.cli("import", path)
}

// metric reads one Prometheus sample of the server (0 when absent).
func (s *testServer) metric(series string) float64 {
	response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.httpPort))
	if err != nil {
		s.t.Fatal(err)
	}
	defer response.Body.Close()
	var body strings.Builder
	buf := make([]byte, 32*1024)
	for {
		n, err := response.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(body.String(), "\n") {
		if strings.HasPrefix(line, series+" ") {
			value, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			return value
		}
	}
	return 0
}

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
