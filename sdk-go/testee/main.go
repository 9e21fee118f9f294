// The Go SDK's testee: answers the commands of conformance/PROTOCOL.md on stdin/stdout
// through the public API of the vexil package only.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	vexil "github.com/vexil-flags/vexil/sdk-go"
)

type testee struct {
	client  *vexil.Client
	changes *vexil.Subscription
}

type command map[string]json.RawMessage

func (c command) str(field string) (string, bool) {
	var s string
	raw, ok := c[field]
	if !ok || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func (c command) millis(field string, def int64) time.Duration {
	var ms int64
	if raw, ok := c[field]; !ok || json.Unmarshal(raw, &ms) != nil {
		ms = def
	}
	return time.Duration(ms) * time.Millisecond
}

func (c command) context() (*vexil.Context, error) {
	ctx, err := vexil.ParseContext(c["context"])
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	return ctx, nil
}

func kindOf(name string, def any) (vexil.Kind, error) {
	switch name {
	case "bool":
		return vexil.KindBool, nil
	case "string":
		return vexil.KindString, nil
	case "number":
		return vexil.KindNumber, nil
	case "json":
		return vexil.KindJSON, nil
	case "":
	default:
		return 0, fmt.Errorf("type: unknown %q", name)
	}
	switch def.(type) {
	case bool:
		return vexil.KindBool, nil
	case string:
		return vexil.KindString, nil
	case float64:
		return vexil.KindNumber, nil
	}
	return vexil.KindJSON, nil
}

func (t *testee) closeClient() {
	if t.client != nil {
		_ = t.client.Close()
		t.client, t.changes = nil, nil
	}
}

func (t *testee) handle(cmd command) (map[string]any, error) {
	name, _ := cmd.str("cmd")
	if name != "create" && name != "close" && t.client == nil {
		return nil, errors.New("no client: send `create` first")
	}
	switch name {
	case "create":
		t.closeClient()
		key, ok := cmd.str("sdk_key")
		if !ok {
			return nil, errors.New("sdk_key: required")
		}
		var private []string
		var allPrivate bool
		if raw, ok := cmd["private_attributes"]; ok {
			if err := json.Unmarshal(raw, &private); err != nil {
				return nil, fmt.Errorf("private_attributes: %w", err)
			}
		}
		if raw, ok := cmd["all_attributes_private"]; ok {
			if err := json.Unmarshal(raw, &allPrivate); err != nil {
				return nil, fmt.Errorf("all_attributes_private: %w", err)
			}
		}
		options := []vexil.Option{
			vexil.WithBackoff(100*time.Millisecond, 500*time.Millisecond),
			vexil.WithStreamTimeout(5 * time.Second),
			vexil.WithEvents(vexil.Events{
				FlushInterval:        cmd.millis("flush_interval_ms", 5000),
				PrivateAttributes:    private,
				AllAttributesPrivate: allPrivate,
			}),
			vexil.WithSDKInfo("vexil-go-testee", "0.1.0"),
		}
		if endpoint, ok := cmd.str("endpoint"); ok {
			options = append(options, vexil.WithEndpoint(endpoint))
		}
		if dir, ok := cmd.str("cache_dir"); ok {
			options = append(options, vexil.WithCacheDir(dir))
		}
		if file, ok := cmd.str("bootstrap"); ok {
			options = append(options, vexil.WithBootstrap(file))
		}
		var offline bool
		if raw, ok := cmd["offline"]; ok && json.Unmarshal(raw, &offline) == nil && offline {
			options = append(options, vexil.WithOffline(true))
		}
		if raw, ok := cmd["context"]; ok && string(raw) != "null" {
			ctx, err := cmd.context()
			if err != nil {
				return nil, err
			}
			options = append(options, vexil.WithContext(ctx))
			ctx.Close()
		}
		// Creation only: the runner waits with wait_init.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		client, err := vexil.NewClient(done, key, options...)
		if client == nil {
			return nil, err
		}
		changes, err := client.Subscribe()
		if err != nil {
			_ = client.Close()
			return nil, err
		}
		t.client, t.changes = client, changes
		return map[string]any{}, nil
	case "wait_init":
		ctx, cancel := context.WithTimeout(context.Background(), cmd.millis("timeout_ms", 5000))
		defer cancel()
		status, _ := t.client.WaitForInitialization(ctx)
		return map[string]any{"status": status.String()}, nil
	case "evaluate":
		flag, ok := cmd.str("flag")
		if !ok {
			return nil, errors.New("flag: required")
		}
		def := json.RawMessage("null")
		if raw, ok := cmd["default"]; ok {
			def = raw
		}
		var decoded any
		_ = json.Unmarshal(def, &decoded)
		typeName, _ := cmd.str("type")
		kind, err := kindOf(typeName, decoded)
		if err != nil {
			return nil, err
		}
		contextJSON := json.RawMessage("null")
		if raw, ok := cmd["context"]; ok {
			contextJSON = raw
		}
		detail, err := t.client.DetailForJSONContext(flag, contextJSON, kind, def)
		if err != nil {
			return nil, err
		}
		return map[string]any{"value": detail.Value, "variation": detail.Variation, "reason": detail.Reason,
			"in_experiment": detail.InExperiment, "source": detail.Source, "version": detail.Version}, nil
	case "evaluate_all":
		ctx, err := cmd.context()
		if err != nil {
			return nil, err
		}
		defer ctx.Close()
		all, err := t.client.AllFlags(ctx)
		if err != nil {
			return nil, err
		}
		flags := map[string]any{}
		for key, d := range all {
			flags[key] = map[string]any{"value": d.Value, "variation": d.Variation, "reason": d.Reason, "in_experiment": d.InExperiment}
		}
		return map[string]any{"flags": flags}, nil
	case "identify":
		ctx, err := cmd.context()
		if err != nil {
			return nil, err
		}
		defer ctx.Close()
		wait, cancel := context.WithTimeout(context.Background(), cmd.millis("timeout_ms", 5000))
		defer cancel()
		return map[string]any{"arrived": t.client.Identify(wait, ctx) == nil}, nil
	case "track":
		name, ok := cmd.str("name")
		if !ok {
			return nil, errors.New("name: required")
		}
		ctx, err := cmd.context()
		if err != nil {
			return nil, err
		}
		defer ctx.Close()
		var value *float64
		if raw, ok := cmd["value"]; ok {
			var v float64
			if json.Unmarshal(raw, &v) == nil {
				value = &v
			}
		}
		return map[string]any{}, t.client.Track(name, ctx, value)
	case "flush":
		wait, cancel := context.WithTimeout(context.Background(), cmd.millis("timeout_ms", 5000))
		defer cancel()
		return map[string]any{"delivered": t.client.Flush(wait) == nil}, nil
	case "wait_change":
		wanted, filtered := cmd.str("flag")
		deadline := time.After(cmd.millis("timeout_ms", 5000))
		for {
			select {
			case change, open := <-t.changes.C:
				if !open {
					return map[string]any{"changed": false, "flag_keys": []string{}}, nil
				}
				if !filtered || slices.Contains(change.FlagKeys, wanted) {
					return map[string]any{"changed": true, "flag_keys": change.FlagKeys}, nil
				}
			case <-deadline:
				return map[string]any{"changed": false, "flag_keys": []string{}}, nil
			}
		}
	case "status":
		state, err := t.client.State()
		if err != nil {
			return nil, err
		}
		return map[string]any{"status": state.Status, "source": state.Source, "version": state.Version,
			"events": map[string]any{"dropped": state.Events.Dropped, "sent": state.Events.Sent, "queued": state.Events.Queued}}, nil
	case "close":
		t.closeClient()
		return map[string]any{}, nil
	}
	return nil, fmt.Errorf("cmd: unknown command %q", name)
}

func main() {
	t := &testee{}
	defer t.closeClient()
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 {
			continue
		}
		var cmd command
		var answer map[string]any
		if err := json.Unmarshal(line, &cmd); err != nil {
			answer = map[string]any{"id": nil, "ok": false, "error": "not JSON: " + err.Error()}
		} else {
			fields, err := t.handle(cmd)
			if err != nil {
				answer = map[string]any{"ok": false, "error": err.Error()}
			} else {
				answer = fields
				answer["ok"] = true
			}
			answer["id"] = cmd["id"]
		}
		encoded, _ := json.Marshal(answer)
		out.Write(append(encoded, '\n'))
		if out.Flush() != nil {
			return
		}
	}
}
