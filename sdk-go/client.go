// Package vexil is the Go SDK of Vexil, the feature-flag and experimentation platform: a
// thin, idiomatic layer over the Rust SDK core (through its C ABI, include/vexil.h), so that
// flags evaluate exactly as in every other Vexil SDK.
//
// The module carries the header and, for linux/amd64, the static native library: `go get`
// and `go build` need no environment variables there (cgo and a C compiler are required).
// Elsewhere, build the library with cargo and link it with -tags vexil_custom_lib and
// CGO_LDFLAGS (see README.md).
package vexil

/*
#cgo CFLAGS: -I${SRCDIR}/include
#cgo LDFLAGS: -lm -ldl -lpthread
#cgo noescape vexil_bool_variation
#cgo nocallback vexil_bool_variation
#cgo noescape vexil_number_variation
#cgo nocallback vexil_number_variation
#cgo noescape vexil_string_variation
#cgo nocallback vexil_string_variation
#cgo noescape vexil_variation_detail
#cgo nocallback vexil_variation_detail
#cgo noescape vexil_track
#cgo nocallback vexil_track
#include <stdint.h>
#include "vexil.h"

void vexilGoChange(void *handle, char *keys, size_t keys_len, int64_t version);

static void vexil_go_trampoline(void *handle, const char *keys, size_t keys_len, int64_t version) {
	vexilGoChange(handle, (char *)keys, keys_len, version);
}

void vexilGoLog(void *handle, int32_t level, char *message, size_t message_len);

static void vexil_go_log_trampoline(void *handle, int32_t level, const char *message, size_t message_len) {
	vexilGoLog(handle, level, (char *)message, message_len);
}

static VexilCode vexil_go_client_new(const char *key, size_t key_len, const char *options, size_t options_len,
		uintptr_t log_handle, VexilClient **out, char **message) {
	return vexil_client_new_with_log(key, key_len, options, options_len,
		log_handle ? vexil_go_log_trampoline : NULL, log_handle ? 5 : 0, (void *)log_handle, out, message);
}

static VexilCode vexil_go_on_change(const VexilClient *client, uintptr_t handle, uint64_t *id, char **message) {
	return vexil_client_on_change(client, vexil_go_trampoline, (void *)handle, id, message);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
)

// Status is where a client stands.
type Status int32

const (
	// StatusInitializing: waiting for the first data (cached or bootstrap data is served).
	StatusInitializing Status = 0
	// StatusReady: connected, with current data.
	StatusReady Status = 1
	// StatusStale: connection lost or data too old; the last good data is served.
	StatusStale Status = 2
	// StatusOffline: offline mode (cache, bootstrap or defaults).
	StatusOffline Status = 3
	// StatusFailed: the server refused the SDK key; no retry.
	StatusFailed Status = 4
	// StatusClosed: Close was called.
	StatusClosed Status = 5
)

func (s Status) String() string {
	switch s {
	case StatusInitializing:
		return "INITIALIZING"
	case StatusReady:
		return "READY"
	case StatusStale:
		return "STALE"
	case StatusOffline:
		return "OFFLINE"
	case StatusFailed:
		return "FAILED"
	case StatusClosed:
		return "CLOSED"
	}
	return "UNKNOWN"
}

// Client evaluates flags for one SDK key. Safe for concurrent use by any number of
// goroutines. Create it with NewClient and release it with Close.
type Client struct {
	// mu guards ptr: calls hold it for reading, Close for writing, so that the native
	// client is never freed under a running call.
	mu  sync.RWMutex
	ptr *C.VexilClient
	// log is the handle of the client's *clientLogger (0: none), released once the native
	// client is freed: no message arrives after that.
	log           cgo.Handle
	subscriptions map[*Subscription]struct{}
}

// NewClient creates a client and starts its background work, then waits for its first
// data until ctx is done.
//
// It returns an error and a nil client when the client cannot be created (an *Error: an
// invalid key, endpoint, option or context). Otherwise the client is returned, to be
// closed with Close, and the error is nil when data arrived (or the client is offline),
// ErrInitializationTimeout when ctx ended first (the client then serves cached or
// bootstrap data, or defaults, and keeps connecting), or ErrKeyRefused.
func NewClient(ctx context.Context, sdkKey string, options ...Option) (*Client, error) {
	settings := &settings{json: map[string]any{}, defaultLogger: true}
	for _, option := range options {
		if err := option(settings); err != nil {
			return nil, err
		}
	}
	encoded, err := json.Marshal(settings.json)
	if err != nil {
		return nil, &Error{Code: CodeInvalidOptions, Message: err.Error()}
	}
	var log cgo.Handle
	if settings.logger != nil || settings.defaultLogger {
		log = cgo.NewHandle(&clientLogger{logger: settings.logger})
	}
	var ptr *C.VexilClient
	var message *C.char
	var code C.VexilCode
	if data := settings.testData; data != nil {
		data.mu.RLock()
		code = C.vexil_client_new_with_test_data(stringPtr(sdkKey), C.size_t(len(sdkKey)), bytesPtr(encoded), C.size_t(len(encoded)),
			data.ptr, &ptr, &message)
		data.mu.RUnlock()
		runtime.KeepAlive(data)
	} else {
		code = C.vexil_go_client_new(stringPtr(sdkKey), C.size_t(len(sdkKey)), bytesPtr(encoded), C.size_t(len(encoded)),
			C.uintptr_t(log), &ptr, &message)
	}
	if err := failure(code, message); err != nil {
		if log != 0 {
			log.Delete()
		}
		return nil, err
	}
	client := &Client{ptr: ptr, log: log, subscriptions: map[*Subscription]struct{}{}}
	status, err := client.WaitForInitialization(ctx)
	switch {
	case err != nil:
		return client, ErrInitializationTimeout
	case status == StatusFailed:
		return client, ErrKeyRefused
	}
	return client, nil
}

// WaitForInitialization waits until the first data from the server arrives, the key is
// refused, or ctx is done; it returns the status then, and ctx's error if ctx ended first.
func (c *Client) WaitForInitialization(ctx context.Context) (Status, error) {
	const slice = 50 * time.Millisecond
	for {
		wait := slice
		if ctx.Err() != nil {
			wait = 0 // one look, without waiting
		} else if deadline, ok := ctx.Deadline(); ok {
			wait = min(wait, max(time.Until(deadline), 0))
		}
		status, err := c.waitOnce(wait)
		if err != nil {
			return status, err
		}
		if status != StatusInitializing {
			return status, nil
		}
		if ctx.Err() != nil {
			return status, ctx.Err()
		}
	}
}

func (c *Client) waitOnce(wait time.Duration) (Status, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return StatusClosed, ErrClosed
	}
	var status C.VexilStatus
	var message *C.char
	code := C.vexil_client_wait_for_initialization(c.ptr, C.uint64_t(wait.Milliseconds()), &status, &message)
	if err := failure(code, message); err != nil {
		return StatusClosed, err
	}
	return Status(status), nil
}

// Status returns the client's status now (StatusClosed after Close).
func (c *Client) Status() Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return StatusClosed
	}
	var status C.VexilStatus
	if C.vexil_client_status(c.ptr, &status, nil) != 0 {
		return StatusClosed
	}
	return Status(status)
}

// State is everything about where a client stands.
type State struct {
	Status string `json:"status"`
	// Reason says why the status is STALE or FAILED.
	Reason *string `json:"reason"`
	// Mode is LOCAL (server keys) or REMOTE (client and mobile keys).
	Mode string `json:"mode"`
	// Source of the data served now: NETWORK, STALE, CACHE, BOOTSTRAP or DEFAULTS.
	Source string `json:"source"`
	// Version is the environment version of the data held (0 when none).
	Version int64 `json:"version"`
	Events  struct {
		Dropped       uint64 `json:"dropped"`
		Sent          uint64 `json:"sent"`
		FailedBatches uint64 `json:"failed_batches"`
		Queued        uint64 `json:"queued"`
	} `json:"events"`
}

// State returns the client's status, data source and version, and event counters.
func (c *Client) State() (State, error) {
	var state State
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return state, ErrClosed
	}
	err := jsonAnswer(&state, func(out **C.char, length *C.size_t, message **C.char) C.VexilCode {
		return C.vexil_client_state(c.ptr, out, length, message)
	})
	return state, err
}

// Close flushes pending events (up to 5 s), stops the background work, ends every change
// subscription and releases the native client. Calls made afterwards answer their
// defaults (with an ERROR/CLIENT_NOT_READY reason) or return ErrClosed. Calling it again
// does nothing. Close must not be called from a goroutine that is blocked reading a
// subscription of this client that it is itself supposed to drain.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil
	}
	for sub := range c.subscriptions {
		sub.stop(c.ptr)
	}
	c.subscriptions = nil
	var message *C.char
	err := failure(C.vexil_client_free(c.ptr, &message), message)
	c.ptr = nil
	if c.log != 0 {
		c.log.Delete()
		c.log = 0
	}
	return err
}

// Flush sends pending events now and waits until they are delivered or ctx is done (at
// most 10 s without a deadline). It returns nil when everything was delivered.
func (c *Client) Flush(ctx context.Context) error {
	timeout := waitBudget(ctx)
	return c.blockingCall(ctx, func(ptr *C.VexilClient) error {
		var delivered C.bool
		var message *C.char
		if err := failure(C.vexil_client_flush(ptr, C.uint64_t(timeout.Milliseconds()), &delivered, &message), message); err != nil {
			return err
		}
		if !bool(delivered) {
			return errors.New("vexil: events not delivered in time (they stay queued)")
		}
		return nil
	})
}

// Identify (remote mode: client and mobile keys) evaluates for context from now on and
// waits until its values arrive or ctx is done (at most 10 s without a deadline); the
// previous context's values are served meanwhile. In local mode it returns at once.
func (c *Client) Identify(ctx context.Context, evalContext *Context) error {
	if evalContext == nil {
		return &Error{Code: CodeNullArgument, Message: "evalContext: must not be nil"}
	}
	timeout := waitBudget(ctx)
	return c.blockingCall(ctx, func(ptr *C.VexilClient) error {
		evalContext.mu.RLock()
		defer evalContext.mu.RUnlock()
		if evalContext.ptr == nil {
			return ErrClosed
		}
		var arrived C.bool
		var message *C.char
		if err := failure(C.vexil_client_identify(ptr, evalContext.ptr, C.uint64_t(timeout.Milliseconds()), &arrived, &message), message); err != nil {
			return err
		}
		if !bool(arrived) {
			return errors.New("vexil: the identified context's values did not arrive in time")
		}
		return nil
	})
}

// waitBudget is how long a native wait may last for ctx.
func waitBudget(ctx context.Context) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return max(time.Until(deadline), 0)
	}
	return 10 * time.Second
}

// blockingCall runs a native wait on its own goroutine so that the caller returns as soon
// as ctx is done; the native wait ends by its own timeout.
func (c *Client) blockingCall(ctx context.Context, call func(*C.VexilClient) error) error {
	done := make(chan error, 1)
	go func() {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.ptr == nil {
			done <- ErrClosed
			return
		}
		done <- call(c.ptr)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Track records a metric event for a context (value: nil for none). It returns at once;
// the event is sent in the background.
func (c *Client) Track(eventName string, context *Context, value *float64) error {
	if context == nil {
		return &Error{Code: CodeNullArgument, Message: "context: must not be nil"}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return ErrClosed
	}
	context.mu.RLock()
	defer context.mu.RUnlock()
	if context.ptr == nil {
		return ErrClosed
	}
	hasValue, number := false, 0.0
	if value != nil {
		hasValue, number = true, *value
	}
	var message *C.char
	return failure(C.vexil_track(c.ptr, stringPtr(eventName), C.size_t(len(eventName)), context.ptr, C.bool(hasValue), C.double(number), &message), message)
}

// FlagChange is a change of flag data.
type FlagChange struct {
	// FlagKeys are the flags whose value may have changed, in key order.
	FlagKeys []string
	// Version is the environment version after the change.
	Version int64
}

// Subscription delivers the client's flag changes on C, in order, without ever blocking
// the client: changes wait in an unbounded queue until read. C is closed by Close (of the
// subscription or of the client).
type Subscription struct {
	C        <-chan FlagChange
	client   *Client
	out      chan FlagChange
	handle   cgo.Handle
	listener C.uint64_t
	mu       sync.Mutex
	queue    []FlagChange
	wake     chan struct{}
	done     chan struct{}
	stopped  sync.Once
}

// Subscribe starts delivering flag changes on a new Subscription.
func (c *Client) Subscribe() (*Subscription, error) {
	out := make(chan FlagChange)
	sub := &Subscription{C: out, client: c, out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil, ErrClosed
	}
	sub.handle = cgo.NewHandle(sub)
	var message *C.char
	if err := failure(C.vexil_go_on_change(c.ptr, C.uintptr_t(sub.handle), &sub.listener, &message), message); err != nil {
		sub.handle.Delete()
		return nil, err
	}
	c.subscriptions[sub] = struct{}{}
	go sub.forward()
	return sub, nil
}

// Close ends the subscription and closes C. Pending changes are dropped.
func (s *Subscription) Close() {
	s.client.mu.Lock()
	defer s.client.mu.Unlock()
	if _, held := s.client.subscriptions[s]; !held {
		return
	}
	delete(s.client.subscriptions, s)
	s.stop(s.client.ptr)
}

// stop unregisters the native listener (waiting for a running callback) and ends the
// forwarding goroutine. The client's lock is held.
func (s *Subscription) stop(ptr *C.VexilClient) {
	s.stopped.Do(func() {
		C.vexil_client_remove_listener(ptr, s.listener, nil)
		s.handle.Delete()
		close(s.done)
	})
}

func (s *Subscription) push(change FlagChange) {
	s.mu.Lock()
	s.queue = append(s.queue, change)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) forward() {
	defer close(s.out)
	for {
		s.mu.Lock()
		pending := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, change := range pending {
			select {
			case s.out <- change:
			case <-s.done:
				return
			}
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}
