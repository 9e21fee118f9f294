package vexil

/*
#include "vexil.h"
*/
import "C"

import (
	"encoding/json"
	"unicode/utf8"
)

// Kind is the type a variation asks for.
type Kind int32

const (
	KindBool   Kind = 0
	KindString Kind = 1
	KindNumber Kind = 2
	// KindJSON: any JSON value, no type check.
	KindJSON Kind = 3
)

// Reason says why a value was served: Kind is OFF, TARGET_MATCH, RULE_MATCH, FALLTHROUGH,
// PREREQUISITE_FAILED or ERROR.
type Reason struct {
	Kind            string `json:"kind"`
	RuleIndex       *int   `json:"rule_index,omitempty"`
	RuleID          string `json:"rule_id,omitempty"`
	PrerequisiteKey string `json:"prerequisite_key,omitempty"`
	// ErrorKind, for ERROR: FLAG_NOT_FOUND, WRONG_TYPE, MALFORMED_FLAG, INVALID_CONTEXT or
	// CLIENT_NOT_READY.
	ErrorKind string `json:"error_kind,omitempty"`
}

// Detail is a variation's answer with everything known about it.
type Detail[T any] struct {
	Value T
	// Variation is the index served, nil when the default was returned.
	Variation *int
	Reason    Reason
	// InExperiment: the context was assigned by an experiment (and an exposure recorded).
	InExperiment  bool
	ExperimentKey string
	FlagVersion   int64
	// Source of the data: NETWORK, STALE, CACHE, BOOTSTRAP or DEFAULTS.
	Source string
	// Version is the environment version of the data.
	Version int64
}

type wireDetail struct {
	Value         json.RawMessage `json:"value"`
	Variation     *int            `json:"variation"`
	Reason        Reason          `json:"reason"`
	InExperiment  bool            `json:"in_experiment"`
	ExperimentKey *string         `json:"experiment_key"`
	FlagVersion   int64           `json:"flag_version"`
	Source        string          `json:"source"`
	Version       int64           `json:"version"`
}

// unevaluated is the error kind the SDK core's table gives a variation this package answers
// without evaluating (a closed client or context, a key that is not UTF-8, a default that
// is not JSON), so that every SDK answers these cases alike.
func unevaluated(why C.int32_t) string {
	return C.GoString(C.vexil_unevaluated_error_kind(why))
}

// errorDetail is the answer for a call that cannot reach the evaluation: the default with an
// ERROR reason of the core's table, from no data.
func errorDetail[T any](def T, why C.int32_t) Detail[T] {
	return Detail[T]{Value: def, Reason: Reason{Kind: "ERROR", ErrorKind: unevaluated(why)}, Source: "DEFAULTS"}
}

// call runs a variation on live native handles, or answers with the reason the core gives a
// closed client, a nil or closed context, or a key that is not UTF-8.
func call[T any](c *Client, flagKey string, context *Context, fallback T, run func(*C.VexilClient, *C.VexilContext) T, errorAnswer func(C.int32_t) T) T {
	if !utf8.ValidString(flagKey) {
		return errorAnswer(C.VEXIL_UNEVALUATED_FLAG_KEY_NOT_TEXT)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return errorAnswer(C.VEXIL_UNEVALUATED_CLIENT_RELEASED)
	}
	if context == nil {
		return errorAnswer(C.VEXIL_UNEVALUATED_CONTEXT_MISSING)
	}
	context.mu.RLock()
	defer context.mu.RUnlock()
	if context.ptr == nil {
		return errorAnswer(C.VEXIL_UNEVALUATED_CONTEXT_MISSING)
	}
	return run(c.ptr, context.ptr)
}

// The typed variations are the hot path: one native call between two read locks, no
// allocation, no closure. The native side answers an error code for a closed (NULL)
// handle or a key that is not UTF-8, and every error answers the default, so nothing is
// checked twice here.

// BoolVariation returns a bool flag's value for context, or def when the flag is unknown,
// not a bool, or there is no data. Never blocks on the network.
func (c *Client) BoolVariation(flagKey string, context *Context, def bool) bool {
	if context == nil {
		return def
	}
	var out C.bool
	c.mu.RLock()
	context.mu.RLock()
	code := C.vexil_bool_variation(c.ptr, stringPtr(flagKey), C.size_t(len(flagKey)), context.ptr, C.bool(def), &out, nil)
	context.mu.RUnlock()
	c.mu.RUnlock()
	if code != C.VEXIL_CODE_OK {
		return def
	}
	return bool(out)
}

// NumberVariation: see BoolVariation.
func (c *Client) NumberVariation(flagKey string, context *Context, def float64) float64 {
	if context == nil {
		return def
	}
	var out C.double
	c.mu.RLock()
	context.mu.RLock()
	code := C.vexil_number_variation(c.ptr, stringPtr(flagKey), C.size_t(len(flagKey)), context.ptr, C.double(def), &out, nil)
	context.mu.RUnlock()
	c.mu.RUnlock()
	if code != C.VEXIL_CODE_OK {
		return def
	}
	return float64(out)
}

// StringVariation: see BoolVariation.
func (c *Client) StringVariation(flagKey string, context *Context, def string) string {
	if context == nil {
		return def
	}
	var out *C.char
	var length C.size_t
	c.mu.RLock()
	context.mu.RLock()
	code := C.vexil_string_variation(c.ptr, stringPtr(flagKey), C.size_t(len(flagKey)), context.ptr, stringPtr(def), C.size_t(len(def)), &out, &length, nil)
	context.mu.RUnlock()
	c.mu.RUnlock()
	if code != C.VEXIL_CODE_OK {
		return def
	}
	return takeString(out, length)
}

// JSONVariation returns any flag's value as JSON (no type check), or def (which must be
// valid JSON).
func (c *Client) JSONVariation(flagKey string, context *Context, def json.RawMessage) json.RawMessage {
	return c.JSONVariationDetail(flagKey, context, def).Value
}

// BoolVariationDetail is BoolVariation with the reason, variation and source.
func (c *Client) BoolVariationDetail(flagKey string, context *Context, def bool) Detail[bool] {
	return typedDetail(c, flagKey, context, KindBool, def)
}

// NumberVariationDetail is NumberVariation with the reason, variation and source.
func (c *Client) NumberVariationDetail(flagKey string, context *Context, def float64) Detail[float64] {
	return typedDetail(c, flagKey, context, KindNumber, def)
}

// StringVariationDetail is StringVariation with the reason, variation and source.
func (c *Client) StringVariationDetail(flagKey string, context *Context, def string) Detail[string] {
	return typedDetail(c, flagKey, context, KindString, def)
}

// JSONVariationDetail is JSONVariation with the reason, variation and source. A def that
// is not valid JSON is answered with an ERROR/WRONG_TYPE reason and def itself.
func (c *Client) JSONVariationDetail(flagKey string, context *Context, def json.RawMessage) Detail[json.RawMessage] {
	if !json.Valid(def) {
		return errorDetail(def, C.VEXIL_UNEVALUATED_DEFAULT_NOT_JSON)
	}
	detail, ok := rawDetail(c, flagKey, context, KindJSON, def)
	if !ok {
		return errorDetailKind(def, detail.Reason.ErrorKind)
	}
	return convert(detail, detail.Value)
}

func typedDetail[T any](c *Client, flagKey string, context *Context, kind Kind, def T) Detail[T] {
	encoded, err := json.Marshal(def)
	if err != nil {
		return errorDetail(def, C.VEXIL_UNEVALUATED_DEFAULT_NOT_JSON)
	}
	detail, ok := rawDetail(c, flagKey, context, kind, encoded)
	if !ok {
		return errorDetailKind(def, detail.Reason.ErrorKind)
	}
	value := def
	if err := json.Unmarshal(detail.Value, &value); err != nil {
		value = def
	}
	return convert(detail, value)
}

// errorDetailKind is errorDetail for an error kind already read from the core.
func errorDetailKind[T any](def T, errorKind string) Detail[T] {
	return Detail[T]{Value: def, Reason: Reason{Kind: "ERROR", ErrorKind: errorKind}, Source: "DEFAULTS"}
}

func convert[T any](wire wireDetail, value T) Detail[T] {
	detail := Detail[T]{Value: value, Variation: wire.Variation, Reason: wire.Reason, InExperiment: wire.InExperiment,
		FlagVersion: wire.FlagVersion, Source: wire.Source, Version: wire.Version}
	if wire.ExperimentKey != nil {
		detail.ExperimentKey = *wire.ExperimentKey
	}
	return detail
}

// rawDetail evaluates with the detail form of the ABI; ok is false when the evaluation
// could not be reached (the reason's error kind says why).
func rawDetail(c *Client, flagKey string, context *Context, kind Kind, def []byte) (wireDetail, bool) {
	type answer struct {
		detail wireDetail
		ok     bool
	}
	result := call(c, flagKey, context, answer{}, func(client *C.VexilClient, ctx *C.VexilContext) answer {
		var out *C.char
		var length C.size_t
		var message *C.char
		code := C.vexil_variation_detail(client, stringPtr(flagKey), C.size_t(len(flagKey)), ctx, C.int32_t(kind), bytesPtr(def), C.size_t(len(def)), &out, &length, &message)
		// The handles and the key were checked above, so the library refuses only the
		// default (not JSON); its answer is always a detail object.
		if err := failure(code, message); err != nil {
			return answer{detail: wireDetail{Reason: Reason{Kind: "ERROR", ErrorKind: unevaluated(C.VEXIL_UNEVALUATED_DEFAULT_NOT_JSON)}}}
		}
		var detail wireDetail
		if err := json.Unmarshal([]byte(takeString(out, length)), &detail); err != nil {
			// Never expected (the library writes the core's JSON): answered as no data
			// rather than crashing the host.
			return answer{detail: wireDetail{Reason: Reason{Kind: "ERROR", ErrorKind: unevaluated(C.VEXIL_UNEVALUATED_CLIENT_RELEASED)}}}
		}
		return answer{detail: detail, ok: true}
	}, func(why C.int32_t) answer {
		return answer{detail: wireDetail{Reason: Reason{Kind: "ERROR", ErrorKind: unevaluated(why)}}}
	})
	return result.detail, result.ok
}

// DetailForJSONContext evaluates flagKey for a context given as JSON that may not be
// valid (for instance received from elsewhere): an invalid context is answered with def
// and an ERROR/INVALID_CONTEXT reason, not an error. def is JSON; kind is the type asked
// for. It returns an error only when contextJSON or def is not JSON at all, or the client
// is closed.
func (c *Client) DetailForJSONContext(flagKey string, contextJSON []byte, kind Kind, def json.RawMessage) (Detail[json.RawMessage], error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return Detail[json.RawMessage]{}, ErrClosed
	}
	var wire wireDetail
	err := jsonAnswer(&wire, func(out **C.char, length *C.size_t, message **C.char) C.VexilCode {
		return C.vexil_variation_detail_json_context(c.ptr, stringPtr(flagKey), C.size_t(len(flagKey)), bytesPtr(contextJSON), C.size_t(len(contextJSON)),
			C.int32_t(kind), bytesPtr(def), C.size_t(len(def)), out, length, message)
	})
	if err != nil {
		return Detail[json.RawMessage]{}, err
	}
	return convert(wire, wire.Value), nil
}

// AllFlags returns every flag's detail for context (remote mode: for the identified
// context), keyed by flag; Value is JSON null for a flag that cannot be served.
func (c *Client) AllFlags(context *Context) (map[string]Detail[json.RawMessage], error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return nil, ErrClosed
	}
	if context == nil {
		return nil, &Error{Code: CodeNullArgument, Message: "context: must not be nil"}
	}
	context.mu.RLock()
	defer context.mu.RUnlock()
	if context.ptr == nil {
		return nil, ErrClosed
	}
	var wire map[string]wireDetail
	err := jsonAnswer(&wire, func(out **C.char, length *C.size_t, message **C.char) C.VexilCode {
		return C.vexil_all_flags(c.ptr, context.ptr, out, length, message)
	})
	if err != nil {
		return nil, err
	}
	flags := make(map[string]Detail[json.RawMessage], len(wire))
	for key, detail := range wire {
		flags[key] = convert(detail, detail.Value)
	}
	return flags, nil
}

// benchmarkNative times iterations of the BoolVariation evaluation inside the native
// library (no cgo crossing), for the benchmark's ratio.
func (c *Client) benchmarkNative(flagKey string, context *Context, iterations uint64) (uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var elapsed C.uint64_t
	var message *C.char
	code := C.vexil_benchmark_bool_variation(c.ptr, stringPtr(flagKey), C.size_t(len(flagKey)), context.ptr, C.uint64_t(iterations), &elapsed, &message)
	return uint64(elapsed), failure(code, message)
}
