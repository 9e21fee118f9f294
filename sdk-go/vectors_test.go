package vexil

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

type vectorFile struct {
	Flags    []json.RawMessage `json:"flags"`
	Segments []json.RawMessage `json:"segments"`
	Cases    []struct {
		Name    string          `json:"name"`
		Flag    string          `json:"flag"`
		Context json.RawMessage `json:"context"`
		Default json.RawMessage `json:"default"`
		Type    string          `json:"type"`
		Expect  struct {
			Value        json.RawMessage `json:"value"`
			Variation    *int            `json:"variation"`
			Reason       json.RawMessage `json:"reason"`
			InExperiment bool            `json:"in_experiment"`
		} `json:"expect"`
	} `json:"cases"`
}

func decode(t *testing.T, raw []byte) any {
	var value any
	if err := json.Unmarshal(raw, &value); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return value
}

func kindOf(typeName string, def any) Kind {
	switch typeName {
	case "bool":
		return KindBool
	case "string":
		return KindString
	case "number":
		return KindNumber
	case "json":
		return KindJSON
	}
	switch def.(type) {
	case bool:
		return KindBool
	case string:
		return KindString
	case float64:
		return KindNumber
	}
	return KindJSON
}

// Every conformance vector through the public API: an offline client bootstrapped with
// each file's ruleset, as conformance/run does.
func TestConformanceVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "conformance", "vectors", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vector files: %v", err)
	}
	total := 0
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var vectors vectorFile
			if err := json.Unmarshal(raw, &vectors); err != nil {
				t.Fatal(err)
			}
			if vectors.Flags == nil {
				vectors.Flags = []json.RawMessage{}
			}
			if vectors.Segments == nil {
				vectors.Segments = []json.RawMessage{}
			}
			ruleset, _ := json.Marshal(map[string]any{"flags": vectors.Flags, "segments": vectors.Segments})
			bootstrap := filepath.Join(t.TempDir(), "ruleset.json")
			if err := os.WriteFile(bootstrap, ruleset, 0o600); err != nil {
				t.Fatal(err)
			}
			client, err := NewClient(context.Background(), "vxl-server-conformance", WithOffline(true), WithBootstrap(bootstrap))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			for _, c := range vectors.Cases {
				total++
				def := decode(t, c.Default)
				kind := kindOf(c.Type, def)
				detail, err := client.DetailForJSONContext(c.Flag, c.Context, kind, c.Default)
				if err != nil {
					t.Errorf("%s: %v", c.Name, err)
					continue
				}
				if got, want := decode(t, detail.Value), decode(t, c.Expect.Value); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: value %v, expected %v", c.Name, got, want)
				}
				if !reflect.DeepEqual(detail.Variation, c.Expect.Variation) {
					t.Errorf("%s: variation %v, expected %v", c.Name, deref(detail.Variation), deref(c.Expect.Variation))
				}
				reason, _ := json.Marshal(detail.Reason)
				if got, want := decode(t, reason), decode(t, c.Expect.Reason); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: reason %v, expected %v", c.Name, got, want)
				}
				if detail.InExperiment != c.Expect.InExperiment {
					t.Errorf("%s: in_experiment %v", c.Name, detail.InExperiment)
				}
				checkTypedCall(t, client, c.Name, c.Flag, c.Context, kind, def, decode(t, c.Expect.Value))
			}
		})
	}
	t.Logf("%d vector cases", total)
}

// checkTypedCall evaluates the case again through the typed method of its kind with a
// Context handle, when the context is valid.
func checkTypedCall(t *testing.T, client *Client, name, flag string, contextJSON json.RawMessage, kind Kind, def, want any) {
	ctx, err := ParseContext(contextJSON)
	if err != nil {
		return // an invalid context: covered by DetailForJSONContext above
	}
	defer ctx.Close()
	var got any
	switch kind {
	case KindBool:
		d, ok := def.(bool)
		if !ok {
			return
		}
		got = client.BoolVariation(flag, ctx, d)
	case KindString:
		d, ok := def.(string)
		if !ok {
			return
		}
		got = client.StringVariation(flag, ctx, d)
	case KindNumber:
		d, ok := def.(float64)
		if !ok {
			return
		}
		got = client.NumberVariation(flag, ctx, d)
	default:
		raw, _ := json.Marshal(def)
		got = decode(t, client.JSONVariation(flag, ctx, raw))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s (typed call): %v, expected %v", name, got, want)
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
