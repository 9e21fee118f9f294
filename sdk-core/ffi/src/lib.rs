//! The C ABI of sdk-core, for the Go and .NET SDKs and any C caller. The documentation of
//! every function, the error convention, memory ownership and thread safety is carried into
//! the generated header `include/vexil.h` (see `cbindgen.toml`), which is the reference.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// Every entry point checks its pointers itself and documents what it requires; marking them
// all `unsafe` would add nothing for C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
// A C signature takes one parameter per input and output; grouping them in structs would
// only move the same fields into types every caller has to fill.
#![allow(clippy::too_many_arguments)]

use std::ffi::{c_char, c_void};
use std::panic::catch_unwind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vexil_core::{
    Client, Context, ErrorCode, Failure, ListenerId, LogLevel, LogSink, Options, Status,
    Unevaluated, ValueKind, in_listener,
};

/// The result of every call that can fail: `OK`, or a code of the SDK core's one table of
/// errors (the same numbers and names in every language binding).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VexilCode {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL (the message names it).
    NullArgument = 1,
    /// A string argument was not valid UTF-8 (the message names it and the byte offset).
    InvalidUtf8 = 2,
    /// A JSON argument did not parse (the message names it, with line and column).
    InvalidJson = 3,
    /// A context is not valid (not an object, missing kind or key, …).
    InvalidContext = 4,
    /// The client options are not valid (the message names the field).
    InvalidOptions = 5,
    /// The SDK key is not a server, client or mobile key.
    InvalidKey = 6,
    /// The endpoint is not a valid `http://` or `https://` address.
    InvalidEndpoint = 7,
    /// Another argument is out of range (for instance an unknown value kind).
    InvalidArgument = 8,
    /// The background runtime could not start (threads, file descriptors).
    Runtime = 9,
    /// The call was made from inside a change callback, where it would deadlock.
    InCallback = 10,
    /// A bug in Vexil: a panic was caught at the boundary. The host process is unaffected.
    Internal = 11,
    /// The client or context was released before the call (bindings that keep handles
    /// report it; the C ABI itself cannot tell a released handle from a live one).
    Closed = 12,
}

impl From<ErrorCode> for VexilCode {
    fn from(code: ErrorCode) -> VexilCode {
        match code {
            ErrorCode::NullArgument => VexilCode::NullArgument,
            ErrorCode::InvalidUtf8 => VexilCode::InvalidUtf8,
            ErrorCode::InvalidJson => VexilCode::InvalidJson,
            ErrorCode::InvalidContext => VexilCode::InvalidContext,
            ErrorCode::InvalidOptions => VexilCode::InvalidOptions,
            ErrorCode::InvalidKey => VexilCode::InvalidKey,
            ErrorCode::InvalidEndpoint => VexilCode::InvalidEndpoint,
            ErrorCode::InvalidArgument => VexilCode::InvalidArgument,
            ErrorCode::Runtime => VexilCode::Runtime,
            ErrorCode::InCallback => VexilCode::InCallback,
            ErrorCode::Internal => VexilCode::Internal,
            ErrorCode::Closed => VexilCode::Closed,
        }
    }
}

/// Why a binding answers a variation without evaluating (see
/// `vexil_unevaluated_error_kind`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VexilUnevaluated {
    /// The client was closed and released.
    ClientReleased = 0,
    /// The context is missing or was released.
    ContextMissing = 1,
    /// The flag key is not valid UTF-8, so it names no flag.
    FlagKeyNotText = 2,
    /// The default is not valid JSON.
    DefaultNotJson = 3,
}

/// Where a client stands (see `vexil_client_status`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VexilStatus {
    /// Waiting for the first data from the server; cached or bootstrap data is served.
    Initializing = 0,
    /// Connected, with current data.
    Ready = 1,
    /// Connection lost or data too old: the last good data is served; reconnecting.
    Stale = 2,
    /// Offline mode: no network; cache, bootstrap or defaults.
    Offline = 3,
    /// The server refused the SDK key; no retry.
    Failed = 4,
    /// `vexil_client_close` was called.
    Closed = 5,
}

/// The type a variation asks for, passed as an `int32_t` to `vexil_variation_detail`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VexilValueKind {
    Bool = 0,
    String = 1,
    Number = 2,
    /// Any JSON value (no type check).
    Json = 3,
}

/// A change callback: `flag_keys_json` is a JSON array of the flags whose value may have
/// changed (UTF-8, `flag_keys_json_len` bytes, valid only during the call), `version` the
/// environment version after the change.
pub type VexilChangeCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        flag_keys_json: *const c_char,
        flag_keys_json_len: usize,
        version: i64,
    ),
>;

/// A log callback: `level` is 1 (error), 2 (warn), 3 (info), 4 (debug) or 5 (trace);
/// `message` is UTF-8, `message_len` bytes, valid only during the call.
pub type VexilLogCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: i32,
        message: *const c_char,
        message_len: usize,
    ),
>;

/// A client: opaque. Create with `vexil_client_new`, release with `vexil_client_free`.
#[derive(Debug)]
pub struct VexilClient {
    client: Client,
    /// The log callback, when one was given: disconnected by `vexil_client_free`.
    log: Option<Arc<LogTarget>>,
}

/// A log callback and the caller's pointer it is called with; `None` once the client is
/// freed, so that a message from a client thread still finishing is not delivered then.
struct LogTarget {
    max_level: LogLevel,
    /// The callback, and `log_user_data` as an address.
    target: Mutex<Option<(LogFunction, usize)>>,
}

type LogFunction = unsafe extern "C" fn(*mut c_void, i32, *const c_char, usize);

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTarget")
            .field("max_level", &self.max_level)
            .finish_non_exhaustive()
    }
}

impl LogTarget {
    fn disconnect(&self) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl LogSink for LogTarget {
    fn enabled(&self, level: LogLevel) -> bool {
        level <= self.max_level
    }

    fn log(&self, level: LogLevel, message: &str) {
        // Held during the call: `vexil_client_free` waits for a running call.
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((callback, user_data)) = *target {
            // SAFETY: the registrant guarantees the function and `user_data` are valid and
            // usable from any thread until `vexil_client_free`, which disconnects this
            // target (waiting for this call) before it returns.
            unsafe {
                callback(
                    user_data as *mut c_void,
                    level as i32,
                    message.as_ptr().cast(),
                    message.len(),
                );
            }
        }
    }
}

/// An evaluation context, parsed and validated once: opaque, immutable, reusable across
/// calls and threads. Create with `vexil_context_new`, release with `vexil_context_free`.
#[derive(Debug)]
pub struct VexilContext {
    context: Context,
}

/// A registered change callback and the caller's pointer it is called with.
#[derive(Clone, Copy)]
struct CallbackTarget {
    callback: unsafe extern "C" fn(*mut c_void, *const c_char, usize, i64),
    user_data: *mut c_void,
}

impl CallbackTarget {
    /// Calls the callback with a change.
    ///
    /// # Safety
    /// The registrant's function and `user_data` must still be valid: they are until the
    /// callback is removed, and removal waits for a running call.
    unsafe fn call(&self, change: &vexil_core::FlagChange) {
        let keys = serde_json::to_string(&change.flag_keys).unwrap_or_default();
        // SAFETY: see the function's contract.
        unsafe {
            (self.callback)(
                self.user_data,
                keys.as_ptr().cast(),
                keys.len(),
                change.version,
            );
        }
    }
}

// SAFETY: the caller of `vexil_client_on_change` promises that `user_data` may be used from
// the client's thread (documented in the header); the client calls it from one thread at a
// time, and removal waits for a running call.
unsafe impl Send for CallbackTarget {}
// SAFETY: as above: the target is only read, to make the call.
unsafe impl Sync for CallbackTarget {}

type Outcome = Result<(), Failure>;

/// Runs an entry point: catches panics (the core's guard), and turns a failure into its code
/// and message.
fn guard(error_message: *mut *mut c_char, body: impl FnOnce() -> Outcome) -> VexilCode {
    let (code, message) = match vexil_core::guard(body) {
        Ok(()) => (VexilCode::Ok, None),
        Err(failure) => (VexilCode::from(failure.code), Some(failure.message)),
    };
    if !error_message.is_null() {
        let written = message.map_or(std::ptr::null_mut(), |m| alloc_string(m.as_bytes()));
        // SAFETY: the caller passes either NULL or a writable `char *` location.
        unsafe { error_message.write(written) };
    }
    code
}

fn not_in_callback(function: &str) -> Outcome {
    if in_listener() {
        return Err(Failure::new(
            ErrorCode::InCallback,
            format!("{function} cannot be called from inside a change callback"),
        ));
    }
    Ok(())
}

/// A borrowed object argument.
fn object<'a, T>(pointer: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: non-NULL pointers given to the ABI point to live objects of this type (the
    // header's contract); `as_ref` checks NULL.
    unsafe { pointer.as_ref() }.ok_or_else(|| null_argument(name))
}

/// A string argument: `len` bytes of UTF-8 at `pointer` (NULL is allowed when `len` is 0).
fn text<'a>(pointer: *const c_char, len: usize, name: &str) -> Result<&'a str, Failure> {
    if len == 0 {
        return Ok("");
    }
    if pointer.is_null() {
        return Err(null_argument(name));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `pointer` for the call.
    let bytes = unsafe { std::slice::from_raw_parts(pointer.cast::<u8>(), len) };
    // Flag keys are short and almost always ASCII: checking that a word at a time costs a
    // fraction of the general validation, which runs a byte at a time on short input.
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|err| {
        Failure::new(
            ErrorCode::InvalidUtf8,
            format!("{name}: not valid UTF-8 at byte {}", err.valid_up_to()),
        )
    })
}

fn json_argument(pointer: *const c_char, len: usize, name: &str) -> Result<Value, Failure> {
    let text = text(pointer, len, name)?;
    serde_json::from_str(text)
        .map_err(|err| Failure::new(ErrorCode::InvalidJson, format!("{name}: {err}")))
}

/// Writes an output argument, refusing NULL.
fn write_out<T>(pointer: *mut T, name: &str, value: T) -> Outcome {
    if pointer.is_null() {
        return Err(null_argument(name));
    }
    // SAFETY: non-NULL output pointers are writable locations of `T` (the header's contract).
    unsafe { pointer.write(value) };
    Ok(())
}

/// Checks output pointers before any work is done, so that a call either fails without
/// effect or writes every output.
fn require_out<T>(pointer: *mut T, name: &str) -> Outcome {
    if pointer.is_null() {
        Err(null_argument(name))
    } else {
        Ok(())
    }
}

fn write_string(out: *mut *mut c_char, out_len: *mut usize, bytes: &[u8]) -> Outcome {
    require_out(out, "out")?;
    require_out(out_len, "out_len")?;
    write_out(out_len, "out_len", bytes.len())?;
    write_out(out, "out", alloc_string(bytes))
}

fn null_argument(name: &str) -> Failure {
    Failure::missing(name)
}

/// Size of the length header in front of every string handed out.
const STRING_HEADER: usize = std::mem::size_of::<usize>();

fn string_layout(len: usize) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(STRING_HEADER + len + 1, STRING_HEADER).ok()
}

/// A string owned by the caller until `vexil_string_free`: the bytes, then a NUL (the bytes
/// may contain NULs themselves, hence the length outputs). Its length is kept just before
/// it, so that freeing needs only the pointer.
fn alloc_string(bytes: &[u8]) -> *mut c_char {
    let Some(layout) = string_layout(bytes.len()) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size; the writes stay inside the allocation.
    unsafe {
        let base = std::alloc::alloc(layout);
        if base.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        base.cast::<usize>().write(bytes.len());
        let text = base.add(STRING_HEADER);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), text, bytes.len());
        text.add(bytes.len()).write(0);
        text.cast::<c_char>()
    }
}

fn value_kind(kind: i32) -> Result<ValueKind, Failure> {
    Ok(match kind {
        0 => ValueKind::Bool,
        1 => ValueKind::String,
        2 => ValueKind::Number,
        3 => ValueKind::Json,
        other => {
            return Err(Failure::invalid_argument(
                "kind",
                format!("{other} is not a VexilValueKind (0 to 3)"),
            ));
        }
    })
}

fn status_code(status: &Status) -> VexilStatus {
    match status {
        Status::Initializing => VexilStatus::Initializing,
        Status::Ready => VexilStatus::Ready,
        Status::Stale { .. } => VexilStatus::Stale,
        Status::Offline => VexilStatus::Offline,
        Status::Failed { .. } => VexilStatus::Failed,
        Status::Closed => VexilStatus::Closed,
    }
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

// ----- library -------------------------------------------------------------------------------

/// The version of this library, a static NUL-terminated string (never freed).
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Frees a string returned by this library (outputs and error messages). NULL is ignored.
/// Each string must be freed exactly once, and only with this function.
///
/// Thread safety: any thread; the string must not be used afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_string_free(string: *mut c_char) {
    if string.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: `string` was returned by `alloc_string`: its length precedes it, and the
        // layout is recomputed from it exactly.
        unsafe {
            let base = string.cast::<u8>().sub(STRING_HEADER);
            let len = base.cast::<usize>().read();
            if let Some(layout) = string_layout(len) {
                std::alloc::dealloc(base, layout);
            }
        }
    });
}

// ----- contexts ------------------------------------------------------------------------------

/// Parses and validates a context from its canonical JSON (`{"kind": "user", "key":
/// "alice", "email": "…"}`, or `{"kind": "multi", "contexts": [...]}`), once, for reuse in
/// any number of calls.
///
/// `json`: `json_len` bytes of UTF-8. On success `*out` receives a context to release with
/// `vexil_context_free`. Fails with NULL_ARGUMENT, INVALID_UTF8, INVALID_JSON or
/// INVALID_CONTEXT.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_context_new(
    json: *const c_char,
    json_len: usize,
    out: *mut *mut VexilContext,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        require_out(out, "out")?;
        let value = json_argument(json, json_len, "json")?;
        let context = vexil_core::context_from_json(&value, "json")?;
        write_out(
            out,
            "out",
            Box::into_raw(Box::new(VexilContext { context })),
        )
    })
}

/// Writes the context's canonical JSON into `*out` (free with `vexil_string_free`), its
/// length in bytes into `*out_len`.
///
/// Thread safety: any thread, concurrently with any call that reads the same context.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_context_to_json(
    context: *const VexilContext,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let context = object(context, "context")?;
        write_string(
            out,
            out_len,
            context.context.to_json().to_string().as_bytes(),
        )
    })
}

/// Releases a context. NULL is ignored.
///
/// Thread safety: no other call may be using the context, and it must not be used
/// afterwards. A context passed to `vexil_client_identify` may be freed right after the
/// call (the client keeps its own copy).
#[unsafe(no_mangle)]
pub extern "C" fn vexil_context_free(context: *mut VexilContext) {
    if context.is_null() {
        return;
    }
    // SAFETY: `context` came from `vexil_context_new` and is freed once (the contract).
    let _ = catch_unwind(|| drop(unsafe { Box::from_raw(context) }));
}

// ----- test data -----------------------------------------------------------------------------

/// Flags and segments held in memory, standing in for the server in an application's tests:
/// opaque. Create with `vexil_test_data_new`, release with `vexil_test_data_free`; clients
/// made on it with `vexil_client_new_with_test_data` keep what they need of it.
#[derive(Debug)]
pub struct VexilTestData {
    data: vexil_core::TestData,
}

/// Creates an empty test data source into `*out`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_test_data_new(
    out: *mut *mut VexilTestData,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        require_out(out, "out")?;
        let data = VexilTestData {
            data: vexil_core::TestData::new(),
        };
        write_out(out, "out", Box::into_raw(Box::new(data)))
    })
}

/// Adds or replaces a flag (`segment` false) or a segment (`segment` true) given as JSON in
/// the export format (`json_len` bytes). Every client on the data sees it at once; their
/// change callbacks run on their own threads. Fails, changing nothing, with INVALID_JSON, or
/// INVALID_ARGUMENT naming the field when the flag or segment does not compile.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_test_data_update(
    test_data: *const VexilTestData,
    segment: bool,
    json: *const c_char,
    json_len: usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let test_data = object(test_data, "test_data")?;
        let value = json_argument(json, json_len, "json")?;
        if segment {
            test_data.data.update_segment(value)
        } else {
            test_data.data.update_flag(value)
        }
    })
}

/// Makes flag `key` serve the JSON value `value_json` to every context (a flag of the
/// value's type). Fails as `vexil_test_data_update` does.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_test_data_set_value(
    test_data: *const VexilTestData,
    key: *const c_char,
    key_len: usize,
    value_json: *const c_char,
    value_json_len: usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let test_data = object(test_data, "test_data")?;
        let key = text(key, key_len, "key")?;
        let value = json_argument(value_json, value_json_len, "value_json")?;
        test_data.data.set_value(key, value)
    })
}

/// Removes flag (`segment` false) or segment (`segment` true) `key`; writes whether it was
/// there into `*out_removed`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_test_data_remove(
    test_data: *const VexilTestData,
    segment: bool,
    key: *const c_char,
    key_len: usize,
    out_removed: *mut bool,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let test_data = object(test_data, "test_data")?;
        let key = text(key, key_len, "key")?;
        require_out(out_removed, "out_removed")?;
        let removed = if segment {
            test_data.data.remove_segment(key)
        } else {
            test_data.data.remove_flag(key)
        };
        write_out(out_removed, "out_removed", removed)
    })
}

/// Releases a test data source; clients made on it keep serving and seeing nothing new.
/// NULL is ignored.
///
/// Thread safety: no other call may be using it, and it must not be used afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_test_data_free(test_data: *mut VexilTestData) {
    if test_data.is_null() {
        return;
    }
    // SAFETY: `test_data` came from `vexil_test_data_new` and is freed once (the contract).
    let _ = catch_unwind(|| drop(unsafe { Box::from_raw(test_data) }));
}

// ----- clients -------------------------------------------------------------------------------

/// Creates a client and starts its background work at once (one thread of its own); never
/// waits for the network (see `vexil_client_wait_for_initialization`).
///
/// `sdk_key`: `sdk_key_len` bytes of UTF-8; its kind decides the mode (`vxl-server-…`: local
/// evaluation; `vxl-client-…`, `vxl-mobile-…`: remote evaluation).
///
/// `options_json` (`options_json_len` bytes; NULL with length 0 for the defaults): a JSON
/// object, every field optional: `endpoint` (default `"http://127.0.0.1:50051"`),
/// `cache_dir`, `bootstrap` (path of a ruleset JSON file), `offline` (bool), `context` (the
/// first context of a remote-mode client, canonical JSON), `max_cache_age_ms`,
/// `connect_timeout_ms`, `stream_timeout_ms`, `initial_backoff_ms`, `max_backoff_ms`,
/// `sdk_name`, `sdk_version`, and `events`: `{enabled, capacity, batch_size,
/// flush_interval_ms, exposure_window_ms, exposure_memory, summaries, attempts,
/// private_attributes, all_attributes_private}` (private attributes: references whose values
/// events never carry). An unknown field or a wrong type fails with INVALID_OPTIONS naming
/// the field.
///
/// On success `*out` receives the client: close it with `vexil_client_close` (optional) and
/// release it with `vexil_client_free`. Fails with NULL_ARGUMENT, INVALID_UTF8,
/// INVALID_JSON, INVALID_OPTIONS, INVALID_CONTEXT, INVALID_KEY, INVALID_ENDPOINT or RUNTIME.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_new(
    sdk_key: *const c_char,
    sdk_key_len: usize,
    options_json: *const c_char,
    options_json_len: usize,
    out: *mut *mut VexilClient,
    error_message: *mut *mut c_char,
) -> VexilCode {
    vexil_client_new_with_log(
        sdk_key,
        sdk_key_len,
        options_json,
        options_json_len,
        None,
        0,
        std::ptr::null_mut(),
        out,
        error_message,
    )
}

/// `vexil_client_new`, with the client's log messages handed to `log_callback` (with
/// `log_user_data`) up to `log_max_level` (1 error … 5 trace; 0 logs nothing).
///
/// Only the client's own messages arrive (not those of the libraries below it), and an
/// identical message is passed on at most once a minute (the next one after that says how
/// many were left out). The callback runs on the client's threads, or on the caller's
/// inside `vexil_client_new`, `vexil_client_close` and `vexil_client_free`, one call at a
/// time; it must return quickly and must not call into the client. `log_user_data` must
/// stay valid, and usable from another thread, until `vexil_client_free` returns: no call
/// is made after that. A NULL `log_callback` is `vexil_client_new`.
///
/// Fails as `vexil_client_new` does, and with INVALID_ARGUMENT for a level outside 0–5.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn vexil_client_new_with_log(
    sdk_key: *const c_char,
    sdk_key_len: usize,
    options_json: *const c_char,
    options_json_len: usize,
    log_callback: VexilLogCallback,
    log_max_level: i32,
    log_user_data: *mut c_void,
    out: *mut *mut VexilClient,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        require_out(out, "out")?;
        let config = client_config(sdk_key, sdk_key_len, options_json, options_json_len)?;
        let log = match (log_callback, log_max_level) {
            (_, 0) | (None, _) => None,
            (Some(callback), level) => {
                let max_level = u8::try_from(level)
                    .ok()
                    .and_then(LogLevel::from_number)
                    .ok_or_else(|| {
                        Failure::new(
                            ErrorCode::InvalidArgument,
                            format!("log_max_level: {level} is not a level from 0 to 5"),
                        )
                    })?;
                Some(Arc::new(LogTarget {
                    max_level,
                    target: Mutex::new(Some((callback, log_user_data as usize))),
                }))
            }
        };
        let config = match &log {
            Some(log) => config.with_log_sink(log.clone()),
            None => config,
        };
        let client = VexilClient {
            client: Client::new(config).map_err(Failure::from)?,
            log,
        };
        write_out(out, "out", Box::into_raw(Box::new(client)))
    })
}

/// A client's configuration from the key and options arguments of `vexil_client_new…`.
fn client_config(
    sdk_key: *const c_char,
    sdk_key_len: usize,
    options_json: *const c_char,
    options_json_len: usize,
) -> Result<vexil_core::Config, Failure> {
    if sdk_key.is_null() {
        return Err(null_argument("sdk_key"));
    }
    let key = text(sdk_key, sdk_key_len, "sdk_key")?;
    let options = text(options_json, options_json_len, "options_json")?;
    Options::from_json_str(options)
        .map_err(|failure| failure.renamed(&[("options", "options_json")]))?
        .into_config(key, ("vexil-c", env!("CARGO_PKG_VERSION")))
        .map_err(|failure| failure.renamed(&[("options", "options_json")]))
}

/// `vexil_client_new` for a test: the client serves `test_data` (see `VexilTestData`)
/// instead of the server's data. It evaluates locally whatever the key's kind, reports
/// READY, uses no network and writes no cache file.
///
/// Fails as `vexil_client_new` does, and with NULL_ARGUMENT for a NULL `test_data`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_new_with_test_data(
    sdk_key: *const c_char,
    sdk_key_len: usize,
    options_json: *const c_char,
    options_json_len: usize,
    test_data: *const VexilTestData,
    out: *mut *mut VexilClient,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        require_out(out, "out")?;
        let test_data = object(test_data, "test_data")?;
        let config = client_config(sdk_key, sdk_key_len, options_json, options_json_len)?
            .with_test_data(&test_data.data);
        let client = VexilClient {
            client: Client::new(config).map_err(Failure::from)?,
            log: None,
        };
        write_out(out, "out", Box::into_raw(Box::new(client)))
    })
}

/// Flushes pending events (up to 5 s), stops the client's background work and releases its
/// thread. The handle stays valid: variation calls keep answering from the last data, and
/// `vexil_client_free` must still be called. Calling it again does nothing.
///
/// Fails with NULL_ARGUMENT, or IN_CALLBACK from inside a change callback.
///
/// Thread safety: any thread, concurrently with other calls on the client (except
/// `vexil_client_free`).
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_close(
    client: *const VexilClient,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        not_in_callback("vexil_client_close")?;
        object(client, "client")?.client.close();
        Ok(())
    })
}

/// Closes the client if it is not closed yet (see `vexil_client_close`), unregisters every
/// change callback (waiting for one that is running), and releases the client. NULL is
/// ignored. After it returns, no callback of this client runs again.
///
/// Fails with IN_CALLBACK (and releases nothing) from inside a change callback.
///
/// Thread safety: no other call may be using the client, and it must not be used
/// afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_free(
    client: *mut VexilClient,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        if client.is_null() {
            return Ok(());
        }
        not_in_callback("vexil_client_free")?;
        // SAFETY: `client` came from `vexil_client_new` and is freed once (the contract).
        let client = unsafe { Box::from_raw(client) };
        // Closing unregisters every callback, waiting for one that is running.
        client.client.close();
        if let Some(log) = &client.log {
            log.disconnect();
        }
        drop(client);
        Ok(())
    })
}

/// Waits until the first data from the server arrives, the key is refused, or `timeout_ms`
/// passes, and writes the status then into `*out`. Cached and bootstrap data are served
/// meanwhile. Blocks the calling thread.
///
/// Fails with NULL_ARGUMENT, or IN_CALLBACK from inside a change callback.
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_wait_for_initialization(
    client: *const VexilClient,
    timeout_ms: u64,
    out: *mut VexilStatus,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        require_out(out, "out")?;
        not_in_callback("vexil_client_wait_for_initialization")?;
        let status = client.client.wait_for_initialization(millis(timeout_ms));
        write_out(out, "out", status_code(&status))
    })
}

/// Writes the client's status now into `*out`.
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_status(
    client: *const VexilClient,
    out: *mut VexilStatus,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        write_out(out, "out", status_code(&client.client.status()))
    })
}

/// Writes everything about where the client stands as a JSON object into `*out` (free with
/// `vexil_string_free`): `status` (`"INITIALIZING"`, `"READY"`, `"STALE"`, `"OFFLINE"`,
/// `"FAILED"`, `"CLOSED"`), `reason` (why STALE or FAILED, else null), `mode` (`"LOCAL"` or
/// `"REMOTE"`), `source` (`"NETWORK"`, `"STALE"`, `"CACHE"`, `"BOOTSTRAP"`, `"DEFAULTS"`),
/// `version` (the environment version held, 0 when none) and `events` (`{dropped, sent,
/// failed_batches, queued}`).
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_state(
    client: *const VexilClient,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = &object(client, "client")?.client;
        let state = serde_json::to_vec(&client.state()).unwrap_or_default();
        write_string(out, out_len, &state)
    })
}

// ----- variations ----------------------------------------------------------------------------

/// Evaluates a bool flag for a context and writes the value into `*out` (the default when
/// the flag is unknown, of another type, or there is no data yet). Never blocks.
///
/// `flag_key`: `flag_key_len` bytes of UTF-8. Fails only on misuse: NULL_ARGUMENT,
/// INVALID_UTF8 (then `*out` is untouched).
///
/// Thread safety: any thread, concurrently with any call on the client and the context.
/// The same holds for every variation function below.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_bool_variation(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context: *const VexilContext,
    default_value: bool,
    out: *mut bool,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = object(context, "context")?;
        require_out(out, "out")?;
        let value = client
            .client
            .bool_variation(flag, &context.context, default_value);
        write_out(out, "out", value)
    })
}

/// Evaluates a number flag; see `vexil_bool_variation`.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_number_variation(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context: *const VexilContext,
    default_value: f64,
    out: *mut f64,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = object(context, "context")?;
        require_out(out, "out")?;
        let value = client
            .client
            .number_variation(flag, &context.context, default_value);
        write_out(out, "out", value)
    })
}

/// Evaluates a string flag; see `vexil_bool_variation`. `default_value`:
/// `default_value_len` bytes of UTF-8. The value is written into `*out` (free with
/// `vexil_string_free`; NUL-terminated, but it may contain NULs: use `*out_len`).
#[unsafe(no_mangle)]
pub extern "C" fn vexil_string_variation(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context: *const VexilContext,
    default_value: *const c_char,
    default_value_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = object(context, "context")?;
        let default = text(default_value, default_value_len, "default_value")?;
        require_out(out, "out")?;
        require_out(out_len, "out_len")?;
        let value = client
            .client
            .string_variation(flag, &context.context, default);
        write_string(out, out_len, value.as_bytes())
    })
}

/// Evaluates any flag as JSON (no type check); see `vexil_bool_variation`. The default is
/// JSON text (`default_json_len` bytes), the value is written as JSON text into `*out`
/// (free with `vexil_string_free`). Also fails with INVALID_JSON for the default.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_json_variation(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context: *const VexilContext,
    default_json: *const c_char,
    default_json_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = object(context, "context")?;
        let default = json_argument(default_json, default_json_len, "default_json")?;
        require_out(out, "out")?;
        require_out(out_len, "out_len")?;
        let value = client
            .client
            .json_variation(flag, &context.context, default);
        write_string(out, out_len, value.to_string().as_bytes())
    })
}

/// Evaluates a flag of the type `kind` (a `VexilValueKind`) with everything known about
/// the answer, written as a JSON object into `*out` (free with `vexil_string_free`):
/// `value` (the default, given as JSON text, when the flag cannot be served), `variation`
/// (index or null), `reason` (`{"kind": "RULE_MATCH", "rule_index": 0, "rule_id": "…"}`,
/// `{"kind": "ERROR", "error_kind": "FLAG_NOT_FOUND"}`, …), `in_experiment`,
/// `experiment_key` (or null), `flag_version`, `source` (`"NETWORK"`, `"STALE"`,
/// `"CACHE"`, `"BOOTSTRAP"`, `"DEFAULTS"`) and `version` (the environment version).
///
/// Fails only on misuse: NULL_ARGUMENT, INVALID_UTF8, INVALID_JSON (the default),
/// INVALID_ARGUMENT (`kind`).
#[unsafe(no_mangle)]
pub extern "C" fn vexil_variation_detail(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context: *const VexilContext,
    kind: i32,
    default_json: *const c_char,
    default_json_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = object(context, "context")?;
        let kind = value_kind(kind)?;
        let default = json_argument(default_json, default_json_len, "default_json")?;
        require_out(out, "out")?;
        require_out(out_len, "out_len")?;
        let detail = client
            .client
            .variation_detail(flag, &context.context, kind, &default);
        write_string(out, out_len, detail.to_json_string().as_bytes())
    })
}

/// `vexil_variation_detail` for a context given as JSON text, for contexts that arrive as
/// JSON and may not be valid: an invalid context is not a failure of the call but an
/// answer with the default and the reason `{"kind": "ERROR", "error_kind":
/// "INVALID_CONTEXT"}` (after the flag's own errors, in the engine's order). Text that is
/// not JSON at all still fails with INVALID_JSON.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_variation_detail_json_context(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context_json: *const c_char,
    context_json_len: usize,
    kind: i32,
    default_json: *const c_char,
    default_json_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = json_argument(context_json, context_json_len, "context_json")?;
        let kind = value_kind(kind)?;
        let default = json_argument(default_json, default_json_len, "default_json")?;
        require_out(out, "out")?;
        require_out(out_len, "out_len")?;
        let detail = client
            .client
            .variation_detail(flag, &context, kind, &default);
        write_string(out, out_len, detail.to_json_string().as_bytes())
    })
}

/// Every flag's value for a context (remote mode: for the identified context), written as
/// a JSON object into `*out` (free with `vexil_string_free`): flag key → the detail object
/// of `vexil_variation_detail`, whose `value` is null for a flag that cannot be served.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_all_flags(
    client: *const VexilClient,
    context: *const VexilContext,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let context = object(context, "context")?;
        require_out(out, "out")?;
        require_out(out_len, "out_len")?;
        let flags = client.client.all_flags(&context.context);
        let json = serde_json::to_vec(&flags).unwrap_or_default();
        write_string(out, out_len, &json)
    })
}

/// Times `iterations` calls of `vexil_bool_variation`'s evaluation inside Rust (no ABI
/// crossing) and writes the total in nanoseconds into `*out_elapsed_ns`: the reference the
/// Go and .NET benchmarks divide by, measured in the same process. Not for production use.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_benchmark_bool_variation(
    client: *const VexilClient,
    flag_key: *const c_char,
    flag_key_len: usize,
    context: *const VexilContext,
    iterations: u64,
    out_elapsed_ns: *mut u64,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let flag = text(flag_key, flag_key_len, "flag_key")?;
        let context = object(context, "context")?;
        require_out(out_elapsed_ns, "out_elapsed_ns")?;
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(client.client.bool_variation(
                std::hint::black_box(flag),
                &context.context,
                false,
            ));
        }
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        write_out(out_elapsed_ns, "out_elapsed_ns", elapsed)
    })
}

// ----- events and contexts -------------------------------------------------------------------

/// Records a metric event `name` (`name_len` bytes of UTF-8) for a context, with a value
/// when `has_value` is true (a non-finite value is sent without value). Returns at once:
/// the event is queued and sent in the background.
///
/// Thread safety: any thread, concurrently with any call on the client and the context.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_track(
    client: *const VexilClient,
    name: *const c_char,
    name_len: usize,
    context: *const VexilContext,
    has_value: bool,
    value: f64,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let name = text(name, name_len, "name")?;
        let context = object(context, "context")?;
        // A non-finite value is sent without value (documented above), not refused.
        let value = has_value.then_some(value).filter(|v| v.is_finite());
        client
            .client
            .track(name, &context.context, value)
            .map_err(|failure| failure.renamed(&[("event_name", "name")]))
    })
}

/// Sends every pending event now and waits up to `timeout_ms`; writes into `*out_delivered`
/// whether everything was delivered. Blocks the calling thread.
///
/// Fails with NULL_ARGUMENT, or IN_CALLBACK from inside a change callback.
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_flush(
    client: *const VexilClient,
    timeout_ms: u64,
    out_delivered: *mut bool,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        require_out(out_delivered, "out_delivered")?;
        not_in_callback("vexil_client_flush")?;
        let delivered = client.client.flush(millis(timeout_ms));
        write_out(out_delivered, "out_delivered", delivered)
    })
}

/// Remote mode: evaluates for `context` from now on and waits up to `timeout_ms` for its
/// values (the previous context's values are served meanwhile); writes into `*out_arrived`
/// whether they arrived. Local mode only stores the context (every call names its own) and
/// answers true at once. The client copies the context: it may be freed after the call.
///
/// Fails with NULL_ARGUMENT, or IN_CALLBACK from inside a change callback.
///
/// Thread safety: any thread, concurrently with other calls on the client; concurrent
/// identify calls leave the last one's context.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_identify(
    client: *const VexilClient,
    context: *const VexilContext,
    timeout_ms: u64,
    out_arrived: *mut bool,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let context = object(context, "context")?;
        require_out(out_arrived, "out_arrived")?;
        not_in_callback("vexil_client_identify")?;
        let arrived = client
            .client
            .identify(context.context.clone(), millis(timeout_ms));
        write_out(out_arrived, "out_arrived", arrived)
    })
}

// ----- waits that block no thread ------------------------------------------------------------

/// What a wait started by `vexil_client_when_…` answers: a status (`VexilStatus` as an
/// `int32_t`) or a boolean (0 or 1), with the caller's `user_data`.
pub type VexilDoneCallback = Option<unsafe extern "C" fn(user_data: *mut c_void, result: i32)>;

/// A completion callback and its `user_data`, called exactly once.
struct Done {
    callback: unsafe extern "C" fn(*mut c_void, i32),
    user_data: usize,
}

impl Done {
    fn new(callback: VexilDoneCallback, user_data: *mut c_void) -> Result<Done, Failure> {
        let callback = callback.ok_or_else(|| null_argument("callback"))?;
        Ok(Done {
            callback,
            user_data: user_data as usize,
        })
    }

    fn call(self, result: i32) {
        // SAFETY: the caller of `vexil_client_when_…` guarantees the function and
        // `user_data` stay valid, usable from any thread, until this one call.
        unsafe { (self.callback)(self.user_data as *mut c_void, result) }
    }
}

/// `vexil_client_wait_for_initialization` without blocking a thread: calls `callback` once,
/// with `user_data` and the status (`VexilStatus`), when the first data arrives, the key is
/// refused, or `timeout_ms` passes. The call happens on the client's thread, or on the
/// caller's before this function returns when there is nothing to wait for (a closed client,
/// data already there). `user_data` must stay valid, and usable from another thread, until
/// then. For languages whose waits are futures (a .NET `Task`).
///
/// Fails with NULL_ARGUMENT (and calls nothing).
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_when_initialized(
    client: *const VexilClient,
    timeout_ms: u64,
    callback: VexilDoneCallback,
    user_data: *mut c_void,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let done = Done::new(callback, user_data)?;
        client
            .client
            .when_initialized(millis(timeout_ms), move |status| {
                done.call(status_code(&status) as i32)
            });
        Ok(())
    })
}

/// `vexil_client_flush` without blocking a thread: calls `callback` once with 1 when every
/// pending event was delivered within `timeout_ms`, else 0 (see
/// `vexil_client_when_initialized` for when and where).
///
/// Fails with NULL_ARGUMENT (and calls nothing).
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_when_flushed(
    client: *const VexilClient,
    timeout_ms: u64,
    callback: VexilDoneCallback,
    user_data: *mut c_void,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let done = Done::new(callback, user_data)?;
        client
            .client
            .when_flushed(millis(timeout_ms), move |delivered| {
                done.call(i32::from(delivered))
            });
        Ok(())
    })
}

/// `vexil_client_identify` without blocking a thread: calls `callback` once with 1 when
/// the values of `context` arrived within `timeout_ms`, else 0 (see
/// `vexil_client_when_initialized` for when and where). The context may be freed after the
/// call.
///
/// Fails with NULL_ARGUMENT (and calls nothing).
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_when_identified(
    client: *const VexilClient,
    context: *const VexilContext,
    timeout_ms: u64,
    callback: VexilDoneCallback,
    user_data: *mut c_void,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let context = object(context, "context")?;
        let done = Done::new(callback, user_data)?;
        client.client.when_identified(
            context.context.clone(),
            millis(timeout_ms),
            move |arrived| done.call(i32::from(arrived)),
        );
        Ok(())
    })
}

// ----- change callbacks ----------------------------------------------------------------------

/// Registers `callback`, called after every change of flag data with `user_data`, and
/// writes its id into `*out_listener_id` (for `vexil_client_remove_listener`).
///
/// The callback runs on the client's own background thread, never on the caller's, one
/// change at a time; while it runs the client receives no further data, so it should
/// return quickly (hand the change over to a queue of your own). It must not call
/// `vexil_client_close`, `vexil_client_free`, `vexil_client_flush`,
/// `vexil_client_identify`, `vexil_client_wait_for_initialization` or
/// `vexil_client_remove_listener` (they fail with IN_CALLBACK there); variation calls are
/// fine. `user_data` is handed back untouched and must stay valid until the callback is
/// removed (by `vexil_client_remove_listener` or `vexil_client_free`), and usable from
/// another thread.
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_on_change(
    client: *const VexilClient,
    callback: VexilChangeCallback,
    user_data: *mut c_void,
    out_listener_id: *mut u64,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        let Some(callback) = callback else {
            return Err(null_argument("callback"));
        };
        require_out(out_listener_id, "out_listener_id")?;
        let target = CallbackTarget {
            callback,
            user_data,
        };
        // SAFETY: the registrant guarantees the function and `user_data` are valid until
        // removal, which waits for this call.
        let id = client
            .client
            .on_change(move |change| unsafe { target.call(change) });
        write_out(out_listener_id, "out_listener_id", id.number())
    })
}

/// Unregisters a callback. When it returns the callback is not running and will not be
/// called again, so its `user_data` may be released. An unknown id is ignored.
///
/// Fails with NULL_ARGUMENT, or IN_CALLBACK from inside a change callback.
///
/// Thread safety: any thread, concurrently with other calls on the client.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_client_remove_listener(
    client: *const VexilClient,
    listener_id: u64,
    error_message: *mut *mut c_char,
) -> VexilCode {
    guard(error_message, || {
        let client = object(client, "client")?;
        not_in_callback("vexil_client_remove_listener")?;
        client
            .client
            .remove_listener(ListenerId::from_number(listener_id));
        Ok(())
    })
}

/// The error kind (`"CLIENT_NOT_READY"`, `"INVALID_CONTEXT"`, `"FLAG_NOT_FOUND"`,
/// `"WRONG_TYPE"`) with which a binding answers a variation it cannot evaluate at all, for
/// the reason `why` (a `VexilUnevaluated`): the SDK core's one table, so that every binding
/// answers these cases alike. A static NUL-terminated string (never freed); NULL for an
/// unknown `why`.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn vexil_unevaluated_error_kind(why: i32) -> *const c_char {
    let why = match why {
        0 => Unevaluated::ClientReleased,
        1 => Unevaluated::ContextMissing,
        2 => Unevaluated::FlagKeyNotText,
        3 => Unevaluated::DefaultNotJson,
        _ => return std::ptr::null(),
    };
    match why.error_kind() {
        vexil_core::ErrorKind::FlagNotFound => c"FLAG_NOT_FOUND".as_ptr(),
        vexil_core::ErrorKind::WrongType => c"WRONG_TYPE".as_ptr(),
        vexil_core::ErrorKind::MalformedFlag => c"MALFORMED_FLAG".as_ptr(),
        vexil_core::ErrorKind::InvalidContext => c"INVALID_CONTEXT".as_ptr(),
        vexil_core::ErrorKind::ClientNotReady => c"CLIENT_NOT_READY".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_core_table() {
        for code in ErrorCode::ALL {
            assert_eq!(VexilCode::from(code) as i32, code.number(), "{code:?}");
            assert_eq!(
                format!("{:?}", VexilCode::from(code)),
                format!("{code:?}"),
                "the same name"
            );
        }
    }

    #[test]
    fn unevaluated_answers_come_from_the_table() {
        let kind = |why| {
            let text = vexil_unevaluated_error_kind(why);
            // SAFETY: a static NUL-terminated string.
            unsafe { std::ffi::CStr::from_ptr(text) }.to_str().unwrap()
        };
        assert_eq!(kind(0), "CLIENT_NOT_READY");
        assert_eq!(kind(1), "INVALID_CONTEXT");
        assert_eq!(kind(2), "FLAG_NOT_FOUND");
        assert_eq!(kind(3), "WRONG_TYPE");
        assert!(vexil_unevaluated_error_kind(4).is_null());
    }
}
