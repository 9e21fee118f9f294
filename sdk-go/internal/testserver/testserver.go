// Package testserver runs a real vexil-server for the module's tests: a process on free
// ports with its own SQLite data directory, changed through the vexil admin command, as
// conformance/run does. The binaries come from cargo's target directory
// (CARGO_TARGET_DIR, else the repository's target/); ci.sh builds them.
package testserver

import (
	"encoding/json"
	"fmt"
	"io"
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

// Server is a vexil-server process; Keys are the production environment's SDK keys by kind.
type Server struct {
	t        testing.TB
	dataDir  string
	Port     int
	HTTPPort int
	cmd      *exec.Cmd
	Token    string
	Keys     map[string]string
}

// RepoRoot is the repository holding this module.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(file))))
}

// TargetDir is cargo's target directory (CARGO_TARGET_DIR, else the repository's target/).
func TargetDir() string {
	if dir := os.Getenv("CARGO_TARGET_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(RepoRoot(), "target")
}

func binary(t testing.TB, name string) string {
	path := filepath.Join(TargetDir(), "debug", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s not found at %s: build it with `cargo build -p vexil-server -p vexil-cli` (ci.sh does)", name, path)
	}
	return path
}

func freePort(t testing.TB) int {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

// Start starts a server, stopped when the test ends, and reads its credentials.
func Start(t testing.TB) *Server {
	s := &Server{t: t, dataDir: filepath.Join(t.TempDir(), "server-data"), Port: freePort(t), HTTPPort: freePort(t)}
	s.Run()
	t.Cleanup(s.Kill)
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
	s.Token, s.Keys = credentials.AdminToken.Token, credentials.SDKKeys["production"]
	return s
}

// Run starts the process (again, after Kill: same ports and data) and waits until it is ready.
func (s *Server) Run() {
	s.cmd = exec.Command(binary(s.t, "vexil-server"), "--listen", fmt.Sprintf("127.0.0.1:%d", s.Port),
		"--http-listen", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort), "--data-dir", s.dataDir,
		"--heartbeat-interval", "0.5", "--version-check-interval", "0.5")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", s.HTTPPort))
		if err == nil {
			response.Body.Close()
			if response.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatal("vexil-server did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the process at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Endpoint is the server's gRPC address as an SDK takes it.
func (s *Server) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", s.Port) }

// CLI runs the vexil admin command against the server's production environment.
func (s *Server) CLI(args ...string) {
	cmd := exec.Command(binary(s.t, "vexil"), args...)
	cmd.Env = append(os.Environ(), "VEXIL_SERVER="+s.Endpoint(), "VEXIL_TOKEN="+s.Token, "VEXIL_ENVIRONMENT=production")
	if output, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("vexil %s: %v\n%s", strings.Join(args, " "), err, output)
	}
}

// ImportFlags replaces the production environment's flags with these.
func (s *Server) ImportFlags(flags ...map[string]any) {
	path := filepath.Join(s.t.TempDir(), fmt.Sprintf("import-%d.json", time.Now().UnixNano()))
	raw, _ := json.Marshal(map[string]any{"flags": flags, "segments": []any{}})
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.CLI("import", path)
}

// Metric reads one Prometheus sample of the server (0 when absent).
func (s *Server) Metric(series string) float64 {
	response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.HTTPPort))
	if err != nil {
		s.t.Fatal(err)
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			value, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			return value
		}
	}
	return 0
}
