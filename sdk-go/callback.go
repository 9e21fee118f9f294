package vexil

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"encoding/json"
	"runtime/cgo"
	"unsafe"
)

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
