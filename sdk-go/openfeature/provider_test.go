package openfeature

import (
	"context"
	"sync"
	"testing"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"

	vexil "github.com/vexil-flags/vexil/sdk-go"
	"github.com/vexil-flags/vexil/sdk-go/internal/testserver"
)

var flags = []map[string]any{
	{"key": "checkout", "kind": "bool", "variations": []any{false, true}, "on": true, "off_variation": 0,
		"fallthrough": map[string]any{"variation": 1},
		"rules": []any{map[string]any{"id": "bob", "clauses": []any{map[string]any{"attribute": "key", "op": "in", "values": []any{"bob"}}},
			"serve": map[string]any{"variation": 0}}}},
	{"key": "banner", "kind": "string", "variations": []any{"blue", "green"}, "on": true, "off_variation": 1,
		"fallthrough": map[string]any{"variation": 0}},
	{"key": "seats", "kind": "number", "variations": []any{5, 2.5}, "on": true, "off_variation": 0,
		"fallthrough": map[string]any{"variation": 0},
		"rules": []any{map[string]any{"id": "big", "clauses": []any{map[string]any{"context_kind": "org", "attribute": "plan", "op": "in", "values": []any{"enterprise"}}},
			"serve": map[string]any{"variation": 1}}}},
	{"key": "limits", "kind": "json", "variations": []any{map[string]any{"max": 3}}, "on": true,
		"fallthrough": map[string]any{"variation": 0}},
}

func TestContextJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	raw, err := ContextJSON(of.FlattenedContext{of.TargetingKey: "u1", "kind": "org", "since": at})
	if err != nil || string(raw) != `{"attributes":{"since":"2026-01-02T03:04:05Z"},"key":"u1","kind":"org"}` {
		t.Fatalf("single: %s %v", raw, err)
	}
	raw, err = ContextJSON(of.FlattenedContext{"kind": "multi", "user": map[string]any{of.TargetingKey: "u1"}})
	if err != nil || string(raw) != `{"contexts":[{"attributes":{},"key":"u1","kind":"user"}],"kind":"multi"}` {
		t.Fatalf("multi: %s %v", raw, err)
	}
	if _, err := ContextJSON(of.FlattenedContext{"plan": "pro"}); err == nil || err.Error() == "" {
		t.Fatal("no key: TARGETING_KEY_MISSING expected")
	}
	if _, err := ContextJSON(of.FlattenedContext{"kind": "multi", "user": "u1"}); err == nil {
		t.Fatal("a kind that is not a map: INVALID_CONTEXT expected")
	}
}

// The provider under OpenFeature's Go SDK against a real server, as an application sees it.
func TestProviderUnderTheOpenFeatureSDK(t *testing.T) {
	server := testserver.Start(t)
	server.ImportFlags(flags...)
	provider, err := New(context.Background(), server.Keys["server"], vexil.WithEndpoint(server.Endpoint()),
		vexil.WithBackoff(100*time.Millisecond, 500*time.Millisecond), vexil.WithEvents(vexil.Events{FlushInterval: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	// OpenFeature's Go API is one per process; this is the package's only test that sets it.
	if err := of.SetProviderAndWait(provider); err != nil {
		t.Fatal(err)
	}
	defer of.Shutdown()
	client := of.NewDefaultClient()
	ctx := context.Background()
	alice := of.NewEvaluationContext("alice", map[string]any{"plan": "free"})

	checkout, err := client.BooleanValueDetails(ctx, "checkout", false, alice)
	if err != nil || !checkout.Value || checkout.Reason != of.DefaultReason || checkout.Variant != "1" {
		t.Fatalf("checkout: %+v %v", checkout, err)
	}
	if reason, _ := checkout.FlagMetadata.GetString("vexilReason"); reason != "FALLTHROUGH" {
		t.Fatalf("metadata: %v", checkout.FlagMetadata)
	}
	bob, _ := client.BooleanValueDetails(ctx, "checkout", true, of.NewTargetlessEvaluationContext(map[string]any{of.TargetingKey: "bob"}))
	if bob.Value || bob.Reason != of.TargetingMatchReason {
		t.Fatalf("bob: %+v", bob)
	}
	if banner, _ := client.StringValue(ctx, "banner", "none", alice); banner != "blue" {
		t.Fatalf("banner %q", banner)
	}
	if seats, _ := client.IntValue(ctx, "seats", 0, alice); seats != 5 {
		t.Fatalf("seats %d", seats)
	}
	limits, _ := client.ObjectValue(ctx, "limits", nil, alice)
	if m, ok := limits.(map[string]any); !ok || m["max"] != float64(3) {
		t.Fatalf("limits %v", limits)
	}
	org := of.NewTargetlessEvaluationContext(map[string]any{"kind": "multi",
		"user": map[string]any{of.TargetingKey: "alice"}, "org": map[string]any{of.TargetingKey: "acme", "plan": "enterprise"}})
	if seats, _ := client.FloatValue(ctx, "seats", 0, org); seats != 2.5 {
		t.Fatalf("multi-kind seats %v", seats)
	}

	// Errors, as OpenFeature's codes, with the default.
	for _, c := range []struct {
		name string
		call func() (of.ErrorCode, any)
		want of.ErrorCode
	}{
		{"not found", func() (of.ErrorCode, any) {
			d, _ := client.BooleanValueDetails(ctx, "nope", true, alice)
			return d.ErrorCode, d.Value
		}, of.FlagNotFoundCode},
		{"type mismatch", func() (of.ErrorCode, any) {
			d, _ := client.StringValueDetails(ctx, "checkout", "d", alice)
			return d.ErrorCode, d.Value
		}, of.TypeMismatchCode},
		{"not a whole number", func() (of.ErrorCode, any) {
			d, _ := client.IntValueDetails(ctx, "seats", 7, org)
			return d.ErrorCode, d.Value
		}, of.TypeMismatchCode},
		{"no targeting key", func() (of.ErrorCode, any) {
			d, _ := client.BooleanValueDetails(ctx, "checkout", true, of.NewTargetlessEvaluationContext(map[string]any{"plan": "x"}))
			return d.ErrorCode, d.Value
		}, of.TargetingKeyMissingCode},
		{"invalid context", func() (of.ErrorCode, any) {
			d, _ := client.BooleanValueDetails(ctx, "checkout", true, of.NewEvaluationContext("a", map[string]any{"kind": "no spaces!"}))
			return d.ErrorCode, d.Value
		}, of.InvalidContextCode},
	} {
		if code, value := c.call(); code != c.want || value == nil {
			t.Errorf("%s: %s (value %v), expected %s", c.name, code, value, c.want)
		}
	}

	// Events: a change names its flag; STALE while the server is down, READY when back.
	var mu sync.Mutex
	var events []string
	var changed [][]string
	record := func(name string) of.EventCallback {
		callback := func(details of.EventDetails) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, name)
			if name == "changed" {
				changed = append(changed, details.FlagChanges)
			}
		}
		return &callback
	}
	client.AddHandler(of.ProviderConfigChange, record("changed"))
	client.AddHandler(of.ProviderStale, record("stale"))
	client.AddHandler(of.ProviderReady, record("ready"))
	seen := func(name string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, event := range events {
				if event == name {
					return true
				}
			}
			return false
		}
	}
	server.CLI("flags", "toggle", "banner", "off")
	waitFor(t, "CONFIGURATION_CHANGED", seen("changed"))
	mu.Lock()
	if len(changed[0]) != 1 || changed[0][0] != "banner" {
		t.Errorf("flags changed %v, expected [banner]", changed[0])
	}
	mu.Unlock()

	before := server.Metric(`vexil_events_total{environment="default/production",type="track"}`)
	client.Track(ctx, "purchase", alice, of.NewTrackingEventDetails(42))
	if err := provider.Client().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if after := server.Metric(`vexil_events_total{environment="default/production",type="track"}`); after != before+1 {
		t.Errorf("track events %v, expected %v", after, before+1)
	}

	server.Kill()
	waitFor(t, "PROVIDER_STALE", seen("stale"))
	held, _ := client.BooleanValueDetails(ctx, "checkout", false, alice)
	if !held.Value || held.Reason != of.Reason("STALE") {
		t.Errorf("while the server is down: %+v, expected the last value, STALE", held)
	}
	mu.Lock()
	events = nil
	mu.Unlock()
	server.Run()
	waitFor(t, "PROVIDER_READY again", seen("ready"))

	of.Shutdown()
	if status := provider.Client().Status(); status != vexil.StatusClosed {
		t.Errorf("after shutdown: %s", status)
	}
}

func waitFor(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
