package vexil

/*
#include "vexil.h"
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"sync"
	"unsafe"
)

// Context is what flags are evaluated for: a kind, a key and attributes, or several such
// parts (a multi-kind context). It is parsed and validated once, in native memory, and can
// be reused by any number of calls from any goroutine. Release it with Close when done; a
// finalizer releases a forgotten one, but only as a safety net.
type Context struct {
	mu   sync.RWMutex
	ptr  *C.VexilContext
	json []byte
}

// ContextBuilder builds a Context part by part: NewContext("user", "alice").Set("plan",
// "pro").Build().
type ContextBuilder struct {
	kind       string
	key        string
	attributes map[string]any
	private    []string
}

// NewContext starts a single-kind context.
func NewContext(kind, key string) *ContextBuilder {
	return &ContextBuilder{kind: kind, key: key, attributes: map[string]any{}}
}

// Set adds an attribute: any value encoding/json accepts (strings, numbers, bools, slices,
// maps).
func (b *ContextBuilder) Set(name string, value any) *ContextBuilder {
	b.attributes[name] = value
	return b
}

// Private marks attributes of this context that events never carry: names, or JSON
// Pointers into the attributes ("/address/street"). Flags are still evaluated with them;
// events list their names, never their values.
func (b *ContextBuilder) Private(references ...string) *ContextBuilder {
	b.private = append(b.private, references...)
	return b
}

func (b *ContextBuilder) object() (map[string]any, error) {
	object := map[string]any{"kind": b.kind, "key": b.key}
	if len(b.attributes) > 0 {
		object["attributes"] = b.attributes
	}
	if len(b.private) > 0 {
		object["private_attributes"] = b.private
	}
	return object, nil
}

// Build validates the context and returns it (an *Error with CodeInvalidContext says why
// it is not valid).
func (b *ContextBuilder) Build() (*Context, error) {
	object, err := b.object()
	if err != nil {
		return nil, err
	}
	encoded, err := json.Marshal(object)
	if err != nil {
		return nil, &Error{Code: CodeInvalidContext, Message: "attributes: " + err.Error()}
	}
	return ParseContext(encoded)
}

// NewMultiContext builds a multi-kind context from single-kind parts (one per kind).
func NewMultiContext(parts ...*ContextBuilder) (*Context, error) {
	contexts := make([]map[string]any, 0, len(parts))
	for _, part := range parts {
		object, err := part.object()
		if err != nil {
			return nil, err
		}
		contexts = append(contexts, object)
	}
	encoded, err := json.Marshal(map[string]any{"kind": "multi", "contexts": contexts})
	if err != nil {
		return nil, &Error{Code: CodeInvalidContext, Message: "attributes: " + err.Error()}
	}
	return ParseContext(encoded)
}

// ParseContext reads a context from its canonical JSON ({"kind": "user", "key": "alice",
// "attributes": {…}} or {"kind": "multi", "contexts": […]}).
func ParseContext(canonicalJSON []byte) (*Context, error) {
	var ptr *C.VexilContext
	var message *C.char
	code := C.vexil_context_new(bytesPtr(canonicalJSON), C.size_t(len(canonicalJSON)), &ptr, &message)
	if err := failure(code, message); err != nil {
		return nil, err
	}
	ctx := &Context{ptr: ptr, json: append([]byte(nil), canonicalJSON...)}
	runtime.SetFinalizer(ctx, (*Context).Close)
	return ctx, nil
}

// JSON returns the context's canonical JSON as given to ParseContext or built.
func (c *Context) JSON() []byte { return append([]byte(nil), c.json...) }

// Close releases the native context. It waits for calls using it to return; calls made
// afterwards fail with ErrClosed or answer the default. Calling it again does nothing.
func (c *Context) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		C.vexil_context_free(c.ptr)
		c.ptr = nil
		runtime.SetFinalizer(c, nil)
	}
}

// bytesPtr points at a slice's bytes for the duration of a call (nil for an empty one).
func bytesPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// stringPtr points at a string's bytes for the duration of a call: the ABI takes lengths,
// so no copy is made.
func stringPtr(s string) *C.char {
	if len(s) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}

// failure turns a VexilCode and its message into an error (nil on success), freeing the
// message.
func failure(code C.VexilCode, message *C.char) error {
	if code == 0 {
		return nil
	}
	text := ""
	if message != nil {
		text = C.GoString(message)
		C.vexil_string_free(message)
	}
	return &Error{Code: Code(code), Message: text}
}

// takeString copies a string returned by the library and frees it.
func takeString(ptr *C.char, length C.size_t) string {
	if ptr == nil {
		return ""
	}
	s := C.GoStringN(ptr, C.int(length))
	C.vexil_string_free(ptr)
	return s
}

// jsonAnswer makes a library call that answers a JSON string, passing it the out-parameters
// for the string and for an error message, and decodes the string into v; it returns the
// call's error, or the decoder's.
func jsonAnswer(v any, call func(out **C.char, length *C.size_t, message **C.char) C.VexilCode) error {
	var out *C.char
	var length C.size_t
	var message *C.char
	if err := failure(call(&out, &length, &message), message); err != nil {
		return err
	}
	return json.Unmarshal([]byte(takeString(out, length)), v)
}
