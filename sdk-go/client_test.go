package vexil

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

func bootstrapClient(t testing.TB, flags ...map[string]any) *Client {
	path := filepath.Join(t.TempDir(), "ruleset.json")
	raw, _ := json.Marshal(map[string]any{"flags": flags, "segments": []any{}})
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := NewClient(context.Background(), "vxl-server-test", WithOffline(true), WithBootstrap(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestInvalidInputIsAnErrorNamingTheField(t *testing.T) {
	_, err := NewClient(context.Background(), "not-a-key", WithOffline(true))
	if !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("invalid key: %v", err)
	}
	_, err = NewClient(context.Background(), "vxl-server-x", WithEndpoint("no url"))
	var vexilErr *Error
	if !errors.As(err, &vexilErr) || vexilErr.Code != CodeInvalidEndpoint {
		t.Fatalf("invalid endpoint: %v", err)
	}
	_, err = NewClient(context.Background(), "vxl-server-x", WithOffline(true), WithEvents(Events{FlushInterval: -time.Second}))
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("negative interval: %v", err)
	}
	_, err = ParseContext([]byte(`{"kind": "user"}`))
	if !errors.Is(err, ErrInvalidContext) || !errors.As(err, &vexilErr) || vexilErr.Message == "" {
		t.Fatalf("context without key: %v", err)
	}
	_, err = ParseContext([]byte(`{"kind": `))
	if !errors.As(err, &vexilErr) || vexilErr.Code != CodeInvalidJSON {
		t.Fatalf("not JSON: %v", err)
	}
	_, err = NewContext("user", "").Build()
	if !errors.Is(err, ErrInvalidContext) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestTypedVariationsAndDetails(t *testing.T) {
	client := bootstrapClient(t,
		boolFlag("checkout"),
		map[string]any{"key": "banner", "kind": "string", "variations": []any{"hello"}, "on": true, "fallthrough": map[string]any{"variation": 0}},
		map[string]any{"key": "limit", "kind": "number", "variations": []any{2.5}, "on": true, "fallthrough": map[string]any{"variation": 0}},
		map[string]any{"key": "layout", "kind": "json", "variations": []any{map[string]any{"columns": 3}}, "on": true, "fallthrough": map[string]any{"variation": 0}},
		map[string]any{"key": "pro-only", "kind": "bool", "variations": []any{false, true}, "on": true, "fallthrough": map[string]any{"variation": 0},
			"rules": []any{map[string]any{"id": "pro", "clauses": []any{map[string]any{"attribute": "plan", "op": "in", "values": []any{"pro"}}}, "serve": map[string]any{"variation": 1}}}},
	)
	alice, err := NewContext("user", "alice").Set("plan", "pro").Build()
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if !client.BoolVariation("checkout", alice, false) {
		t.Error("checkout")
	}
	if got := client.StringVariation("banner", alice, "d"); got != "hello" {
		t.Errorf("banner %q", got)
	}
	if got := client.NumberVariation("limit", alice, 1); got != 2.5 {
		t.Errorf("limit %v", got)
	}
	if got := string(client.JSONVariation("layout", alice, json.RawMessage(`null`))); got != `{"columns":3}` {
		t.Errorf("layout %s", got)
	}
	detail := client.BoolVariationDetail("pro-only", alice, false)
	if !detail.Value || detail.Reason.Kind != "RULE_MATCH" || detail.Reason.RuleID != "pro" || *detail.Variation != 1 || detail.Source != "BOOTSTRAP" {
		t.Errorf("detail %+v", detail)
	}
	wrong := client.StringVariationDetail("checkout", alice, "d")
	if wrong.Value != "d" || wrong.Reason.ErrorKind != "WRONG_TYPE" || wrong.Variation != nil {
		t.Errorf("wrong type %+v", wrong)
	}
	missing := client.NumberVariationDetail("nope", alice, 7)
	if missing.Value != 7 || missing.Reason.ErrorKind != "FLAG_NOT_FOUND" {
		t.Errorf("missing %+v", missing)
	}
	if got := client.BoolVariationDetail("checkout", nil, false); got.Reason.ErrorKind != "INVALID_CONTEXT" {
		t.Errorf("nil context %+v", got)
	}
	if got := client.BoolVariationDetail("check\xffout", alice, false); got.Reason.ErrorKind != "FLAG_NOT_FOUND" {
		t.Errorf("invalid UTF-8 key %+v", got)
	}
	// The typed variations answer the default for misuse, as the details do.
	if client.BoolVariation("checkout", nil, false) || client.NumberVariation("limit", nil, 1) != 1 || client.StringVariation("banner", nil, "d") != "d" {
		t.Error("nil context: not the defaults")
	}
	if client.BoolVariation("check\xffout", alice, false) || client.NumberVariation("limit\xff", alice, 1) != 1 || client.StringVariation("banner\xff", alice, "d") != "d" {
		t.Error("key that is not UTF-8: not the defaults")
	}
	if got := client.StringVariation("banner", alice, "d\xff"); got != "d\xff" {
		t.Errorf("default that is not UTF-8: %q", got)
	}
	if client.BoolVariation("", alice, false) || client.StringVariation("", alice, "") != "" {
		t.Error("empty key: not the defaults")
	}
	all, err := client.AllFlags(alice)
	if err != nil || len(all) != 5 || string(all["banner"].Value) != `"hello"` {
		t.Errorf("all flags %v %v", all, err)
	}
	value := 3.0
	if err := client.Track("purchase", alice, &value); err != nil {
		t.Error(err)
	}
	var vexilErr *Error
	if err := client.Track("", alice, nil); !errors.As(err, &vexilErr) || vexilErr.Code != CodeInvalidArgument {
		t.Errorf("empty event name: %v", err)
	}
	if err := client.Track("purchase", nil, nil); !errors.As(err, &vexilErr) || vexilErr.Code != CodeNullArgument || !strings.Contains(err.Error(), "context") {
		t.Errorf("track without context: %v", err)
	}
	if err := client.Identify(context.Background(), nil); !errors.As(err, &vexilErr) || vexilErr.Code != CodeNullArgument || !strings.Contains(err.Error(), "evalContext") {
		t.Errorf("identify without context: %v", err)
	}
	state, err := client.State()
	if err != nil || state.Status != "OFFLINE" || state.Mode != "LOCAL" || state.Source != "BOOTSTRAP" {
		t.Errorf("state %+v %v", state, err)
	}
	if client.Status() != StatusOffline {
		t.Errorf("status %v", client.Status())
	}

	// A closed context answers defaults; a closed client too, and its calls fail with ErrClosed.
	alice.Close()
	if got := client.BoolVariationDetail("checkout", alice, false); got.Value || got.Reason.ErrorKind != "INVALID_CONTEXT" {
		t.Errorf("closed context %+v", got)
	}
	if client.BoolVariation("checkout", alice, false) || client.NumberVariation("limit", alice, 1) != 1 || client.StringVariation("banner", alice, "d") != "d" {
		t.Error("closed context: not the defaults")
	}
	bob := mustContext(t, "user", "bob")
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal("closing twice", err)
	}
	if got := client.BoolVariationDetail("checkout", bob, false); got.Value || got.Reason.ErrorKind != "CLIENT_NOT_READY" {
		t.Errorf("closed client %+v", got)
	}
	if client.BoolVariation("checkout", bob, false) || client.NumberVariation("limit", bob, 1) != 1 || client.StringVariation("banner", bob, "d") != "d" {
		t.Error("closed client: not the defaults")
	}
	if err := client.Track("x", bob, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("track after close: %v", err)
	}
	if client.Status() != StatusClosed {
		t.Errorf("status after close %v", client.Status())
	}
}

// Concurrent evaluations with a Close in the middle: never a crash, never a data race.
func TestConcurrentUseAndClose(t *testing.T) {
	client := bootstrapClient(t, boolFlag("checkout"))
	alice := mustContext(t, "user", "alice")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				client.BoolVariation("checkout", alice, false)
				client.StringVariationDetail("checkout", alice, "x")
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	_ = client.Close()
	wg.Wait()
}

func TestWaitForInitializationHonoursTheContext(t *testing.T) {
	// Nothing listens on this port: the client stays INITIALIZING.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	started := time.Now()
	client, err := NewClient(ctx, "vxl-server-x", WithEndpoint("http://127.0.0.1:1"), WithEvents(Events{Disabled: true}))
	if !errors.Is(err, ErrInitializationTimeout) || client == nil {
		t.Fatalf("expected a timeout and a working client, got %v", err)
	}
	defer client.Close()
	if elapsed := time.Since(started); elapsed > 2*time.Second {
		t.Errorf("waited %v", elapsed)
	}
	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := client.WaitForInitialization(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
	alice := mustContext(t, "user", "alice")
	if detail := client.BoolVariationDetail("checkout", alice, true); !detail.Value || detail.Reason.ErrorKind != "CLIENT_NOT_READY" || detail.Source != "DEFAULTS" {
		t.Errorf("before data %+v", detail)
	}
}

// 10,000 clients created and closed: resident memory stays flat.
func TestTenThousandClientsFlatMemory(t *testing.T) {
	alice := mustContext(t, "user", "alice")
	cycle := func(n int) {
		for range n {
			client, err := NewClient(context.Background(), "vxl-server-memory", WithOffline(true))
			if err != nil {
				t.Fatal(err)
			}
			client.BoolVariation("checkout", alice, false)
			if err := client.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cycle(1000)          // warm-up: allocator pools, thread stacks
	debug.FreeOSMemory() // a GC that also returns freed Go memory to the system
	before := rssKiB(t)
	cycle(10000)
	debug.FreeOSMemory()
	after := rssKiB(t)
	t.Logf("RSS before %d KiB, after 10,000 clients %d KiB", before, after)
	if growth := after - before; growth > 20*1024 {
		t.Errorf("RSS grew by %d KiB over 10,000 clients", growth)
	}
}
