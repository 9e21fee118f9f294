package vexil

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAgainstARealServer(t *testing.T) {
	server := startServer(t)
	server.importFlags(boolFlag("checkout"))
	alice := mustContext(t, "user", "alice")

	t.Run("initial sync and a change on the channel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		client, err := NewClient(ctx, server.Keys["server"], WithEndpoint(server.endpoint()), WithBackoff(100*time.Millisecond, 500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if client.Status() != StatusReady {
			t.Fatalf("status %v", client.Status())
		}
		detail := client.BoolVariationDetail("checkout", alice, false)
		if !detail.Value || detail.Source != "NETWORK" || detail.Version <= 0 {
			t.Fatalf("initial sync %+v", detail)
		}
		changes, err := client.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		server.cli("flags", "toggle", "checkout", "off")
		deadline := time.After(10 * time.Second)
		for seen := false; !seen; {
			select {
			case change := <-changes.C:
				seen = slices.Contains(change.FlagKeys, "checkout") && change.Version > detail.Version
			case <-deadline:
				t.Fatal("no change on the channel")
			}
		}
		if client.BoolVariation("checkout", alice, true) {
			t.Error("the change is not served")
		}
		changes.Close()
		if _, open := <-changes.C; open {
			t.Error("the channel stays open after Close")
		}
	})

	t.Run("remote evaluation with a mobile key and identify", func(t *testing.T) {
		flag := boolFlag("mobile-checkout")
		flag["client_side"] = true
		flag["rules"] = []any{map[string]any{"id": "bob", "clauses": []any{map[string]any{"attribute": "key", "op": "in", "values": []any{"bob"}}}, "serve": map[string]any{"variation": 0}}}
		server.importFlags(flag, boolFlag("server-only"))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		client, err := NewClient(ctx, server.Keys["mobile"], WithEndpoint(server.endpoint()), WithContext(alice))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if !client.BoolVariation("mobile-checkout", alice, false) {
			t.Error("alice")
		}
		if d := client.BoolVariationDetail("server-only", alice, false); d.Reason.ErrorKind != "FLAG_NOT_FOUND" {
			t.Errorf("a server-only flag is visible to a mobile key: %+v", d)
		}
		bob := mustContext(t, "user", "bob")
		if err := client.Identify(ctx, bob); err != nil {
			t.Fatal(err)
		}
		d := client.BoolVariationDetail("mobile-checkout", bob, true)
		if d.Value || d.Reason.Kind != "RULE_MATCH" {
			t.Errorf("bob %+v", d)
		}
		state, _ := client.State()
		if state.Mode != "REMOTE" {
			t.Errorf("mode %s", state.Mode)
		}
	})

	t.Run("track and flush are counted by the server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		client, err := NewClient(ctx, server.Keys["server"], WithEndpoint(server.endpoint()), WithEvents(Events{FlushInterval: time.Hour}))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		counted := func() float64 {
			return server.metric(`vexil_events_total{environment="default/production",type="track"}`)
		}
		before := counted()
		for _, v := range []float64{1, 2, 3} {
			if err := client.Track("purchase", alice, &v); err != nil {
				t.Fatal(err)
			}
		}
		if err := client.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := counted() - before; got != 3 {
			t.Errorf("the server counted %v track events, not 3", got)
		}
		state, _ := client.State()
		if state.Events.Sent < 3 {
			t.Errorf("events sent %d", state.Events.Sent)
		}
	})

	t.Run("a refused key is logged once to the slog logger", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		records := &recordedLogs{}
		client, err := NewClient(ctx, "vxl-server-not-a-real-key", WithEndpoint(server.endpoint()),
			WithLogger(slog.New(records)))
		if !errors.Is(err, ErrKeyRefused) {
			t.Fatalf("err %v", err)
		}
		if err := client.Close(); err != nil {
			t.Fatal(err)
		}
		refused := records.matching("refused the SDK key")
		if len(refused) != 1 || refused[0].Level != slog.LevelError {
			t.Fatalf("refused-key records %+v (all: %+v)", refused, records.all())
		}
		for _, record := range records.all() {
			if record.Level < slog.LevelInfo {
				t.Errorf("a record below the handler's level: %+v", record)
			}
		}
	})
}

// recordedLogs is an slog handler that keeps its records, at Info and above.
type recordedLogs struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recordedLogs) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}

func (r *recordedLogs) Handle(_ context.Context, record slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, record)
	return nil
}

func (r *recordedLogs) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordedLogs) WithGroup(string) slog.Handler      { return r }

func (r *recordedLogs) all() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.records)
}

func (r *recordedLogs) matching(text string) []slog.Record {
	var found []slog.Record
	for _, record := range r.all() {
		if strings.Contains(record.Message, text) {
			found = append(found, record)
		}
	}
	return found
}
