package vexil

import (
	"errors"
	"fmt"
)

// Code is the kind of an Error: the SDK core's table of error codes (the VexilCode of the C
// ABI), the same numbers and names in every Vexil SDK.
type Code int32

const (
	CodeNullArgument    Code = 1
	CodeInvalidUTF8     Code = 2
	CodeInvalidJSON     Code = 3
	CodeInvalidContext  Code = 4
	CodeInvalidOptions  Code = 5
	CodeInvalidKey      Code = 6
	CodeInvalidEndpoint Code = 7
	CodeInvalidArgument Code = 8
	CodeRuntime         Code = 9
	CodeInCallback      Code = 10
	CodeInternal        Code = 11
	// CodeClosed: the client or context was closed before the call.
	CodeClosed Code = 12
)

var codeNames = map[Code]string{
	CodeNullArgument:    "NULL_ARGUMENT",
	CodeInvalidUTF8:     "INVALID_UTF8",
	CodeInvalidJSON:     "INVALID_JSON",
	CodeInvalidContext:  "INVALID_CONTEXT",
	CodeInvalidOptions:  "INVALID_OPTIONS",
	CodeInvalidKey:      "INVALID_KEY",
	CodeInvalidEndpoint: "INVALID_ENDPOINT",
	CodeInvalidArgument: "INVALID_ARGUMENT",
	CodeRuntime:         "RUNTIME",
	CodeInCallback:      "IN_CALLBACK",
	CodeInternal:        "INTERNAL",
	CodeClosed:          "CLOSED",
}

func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", int32(c))
}

// Error is what every failing call of this package returns: a code and a message naming
// the argument or field at fault. Compare codes with errors.As, or with errors.Is against
// an *Error holding only the code (ErrClosed, …).
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return "vexil: " + e.Code.String() + ": " + e.Message }

// Is matches another *Error with the same code, so that errors.Is(err, ErrClosed) works.
func (e *Error) Is(target error) bool {
	var other *Error
	return errors.As(target, &other) && other.Code == e.Code && other.Message == ""
}

var (
	// ErrClosed: the client or context was closed.
	ErrClosed = &Error{Code: CodeClosed}
	// ErrInvalidKey: the SDK key is not a server, client or mobile key.
	ErrInvalidKey = &Error{Code: CodeInvalidKey}
	// ErrInvalidContext: a context is not valid.
	ErrInvalidContext = &Error{Code: CodeInvalidContext}
	// ErrInvalidOptions: a client option is not valid.
	ErrInvalidOptions = &Error{Code: CodeInvalidOptions}
	// ErrInitializationTimeout: NewClient's context ended before the first data arrived;
	// the client it returns works (cache, bootstrap or defaults) and keeps connecting.
	ErrInitializationTimeout = errors.New("vexil: the context ended before the client was initialized")
	// ErrKeyRefused: the server refused the SDK key; the client serves defaults.
	ErrKeyRefused = errors.New("vexil: the server refused the SDK key")
)
