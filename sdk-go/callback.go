package vexil

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"log/slog"
	"runtime/cgo"
	"unsafe"
)

// clientLogger is where a client's messages go: logger, or slog.Default() when nil.
type clientLogger struct {
	logger *slog.Logger
}

// slogLevels maps the core's levels (1 error … 5 trace) to slog's; trace is below debug.
var slogLevels = [...]slog.Level{slog.LevelError, slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug, slog.LevelDebug - 4}

// vexilGoLog receives one of the client's messages, on the client's native thread (or the
// caller's, inside NewClient and Close), and hands it to the logger if it is enabled.
//
//export vexilGoLog
func vexilGoLog(handle unsafe.Pointer, level C.int32_t, message *C.char, messageLen C.size_t) {
	target, ok := cgo.Handle(uintptr(handle)).Value().(*clientLogger)
	if !ok || level < 1 || int(level) >= len(slogLevels) {
		return
	}
	logger := target.logger
	if logger == nil {
		logger = slog.Default()
	}
	ctx := context.Background()
	if !logger.Enabled(ctx, slogLevels[level]) {
		return
	}
	logger.LogAttrs(ctx, slogLevels[level], C.GoStringN(message, C.int(messageLen)), slog.String("logger", "vexil"))
}

// vexilGoChange receives a change on the client's native thread and queues it for its
// subscription; it never blocks.
//
//export vexilGoChange
func vexilGoChange(handle unsafe.Pointer, keys *C.char, keysLen C.size_t, version C.int64_t) {
	sub, ok := cgo.Handle(uintptr(handle)).Value().(*Subscription)
	if !ok {
		return
	}
	var flagKeys []string
	if err := json.Unmarshal(C.GoBytes(unsafe.Pointer(keys), C.int(keysLen)), &flagKeys); err != nil {
		return
	}
	sub.push(FlagChange{FlagKeys: flagKeys, Version: int64(version)})
}
