package vexil

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTestDataChangesReachTheClientAndItsSubscription(t *testing.T) {
	data := NewTestData()
	if err := data.SetValue("checkout", true); err != nil {
		t.Fatal(err)
	}
	client, err := NewClient(context.Background(), "vxl-server-test", WithTestData(data))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if client.Status() != StatusReady {
		t.Fatalf("status %v", client.Status())
	}
	alice := mustContext(t, "user", "alice")
	bob := mustContext(t, "user", "bob")
	if !client.BoolVariation("checkout", alice, false) {
		t.Fatal("checkout should be on")
	}
	sub, err := client.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := data.SetValue("checkout", false); err != nil {
		t.Fatal(err)
	}
	if client.BoolVariation("checkout", alice, true) {
		t.Fatal("the change is seen at once")
	}
	select {
	case change := <-sub.C:
		if len(change.FlagKeys) != 1 || change.FlagKeys[0] != "checkout" {
			t.Fatalf("change %+v", change)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change on the subscription")
	}

	err = data.UpdateFlag(map[string]any{
		"key": "banner", "kind": "string", "variations": []any{"plain", "gold"}, "on": true,
		"rules": []any{map[string]any{"id": "bob", "clauses": []any{map[string]any{
			"attribute": "key", "op": "in", "values": []any{"bob"}}}, "serve": map[string]any{"variation": 1}}},
		"fallthrough": map[string]any{"variation": 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := client.StringVariation("banner", bob, "?"); got != "gold" {
		t.Fatalf("bob got %q", got)
	}
	if !data.RemoveFlag("banner") || data.RemoveFlag("banner") {
		t.Fatal("RemoveFlag reports whether the flag was there")
	}
	if got := client.StringVariation("banner", bob, "?"); got != "?" {
		t.Fatalf("after removal bob got %q", got)
	}
}

func TestTestDataRefusesAFlagThatDoesNotCompile(t *testing.T) {
	data := NewTestData()
	if err := data.SetValue("limit", 3); err != nil {
		t.Fatal(err)
	}
	client, err := NewClient(context.Background(), "vxl-server-test", WithTestData(data))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	err = data.UpdateFlag(map[string]any{"key": "limit", "kind": "number", "variations": []any{1},
		"on": true, "fallthrough": map[string]any{"variation": 4}})
	var vexilErr *Error
	if !errors.As(err, &vexilErr) || vexilErr.Code != CodeInvalidArgument || !strings.Contains(vexilErr.Message, "fallthrough") {
		t.Fatalf("err %v", err)
	}
	if got := client.NumberVariation("limit", mustContext(t, "user", "a"), 0); got != 3 {
		t.Fatalf("limit %v", got)
	}
}
