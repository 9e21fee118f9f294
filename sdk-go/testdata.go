package vexil

/*
#include <stdbool.h>
#include "vexil.h"
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"sync"
)

// TestData holds flags and segments in memory, standing in for the server in an
// application's tests: create clients on it with WithTestData, then change flags one at a
// time. Each change reaches every client at once (and their subscriptions); a flag that
// would not compile is refused with an *Error naming the field, and nothing changes.
// Safe for concurrent use.
type TestData struct {
	mu  sync.RWMutex
	ptr *C.VexilTestData
}

// NewTestData returns an empty TestData. Its memory is released when it is no longer
// reachable; clients made on it keep what they need.
func NewTestData() *TestData {
	var ptr *C.VexilTestData
	var message *C.char
	if err := failure(C.vexil_test_data_new(&ptr, &message), message); err != nil {
		panic(err) // only an allocation failure, which Go itself would not survive
	}
	data := &TestData{ptr: ptr}
	runtime.SetFinalizer(data, func(d *TestData) { C.vexil_test_data_free(d.ptr) })
	return data
}

func (d *TestData) json(what string, value any) ([]byte, error) {
	encoded, err := json.Marshal(value)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: what + ": " + err.Error()}
	}
	return encoded, nil
}

// UpdateFlag adds or replaces a flag given in the export format (key, kind, variations,
// on, rules, fallthrough, ...): a map, or any value that encodes to that JSON.
func (d *TestData) UpdateFlag(flag any) error { return d.update(false, "flag", flag) }

// UpdateSegment adds or replaces a segment given in the export format.
func (d *TestData) UpdateSegment(segment any) error { return d.update(true, "segment", segment) }

func (d *TestData) update(segment bool, what string, value any) error {
	encoded, err := d.json(what, value)
	if err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	var message *C.char
	return failure(C.vexil_test_data_update(d.ptr, C.bool(segment), bytesPtr(encoded), C.size_t(len(encoded)), &message), message)
}

// SetValue makes flag key serve value to every context (a flag of the value's type).
func (d *TestData) SetValue(key string, value any) error {
	encoded, err := d.json("value", value)
	if err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	var message *C.char
	return failure(C.vexil_test_data_set_value(d.ptr, stringPtr(key), C.size_t(len(key)),
		bytesPtr(encoded), C.size_t(len(encoded)), &message), message)
}

// RemoveFlag removes flag key and reports whether it was there.
func (d *TestData) RemoveFlag(key string) bool { return d.remove(false, key) }

// RemoveSegment removes segment key and reports whether it was there.
func (d *TestData) RemoveSegment(key string) bool { return d.remove(true, key) }

func (d *TestData) remove(segment bool, key string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var removed C.bool
	var message *C.char
	if err := failure(C.vexil_test_data_remove(d.ptr, C.bool(segment), stringPtr(key), C.size_t(len(key)), &removed, &message), message); err != nil {
		return false
	}
	return bool(removed)
}

// WithTestData makes the client serve data's flags instead of the server's: it evaluates
// locally whatever the key's kind, reports READY at once, uses no network and writes no
// cache file. For tests.
func WithTestData(data *TestData) Option {
	return func(s *settings) error {
		s.testData = data
		return nil
	}
}
