//! The Kotlin SDK's JNI library: the native half of the `dev.vexil` Kotlin/Java package, over
//! `vexil-core`. It converts values and errors and nothing else: evaluation, caching, retries
//! and events all stay in the core client.
//!
//! Every native method of `dev.vexil.Native` is implemented here. The rules they follow:
//!
//! * Each runs inside `EnvUnowned::with_env`, which catches panics; errors and panics become
//!   exceptions of the `VexilException` hierarchy (see [`failure`]), never a JVM crash.
//!   The variation calls that answer a primitive skip that machinery on their way to success
//!   (see [`primitive_variation`]): it costs more than the evaluation itself.
//! * Clients and contexts are opaque handles (`jlong`): a heap "shell" holding the client or
//!   context and a `closed` flag. `close()` sets the flag and stops the client at once (its
//!   threads, network connection and listener global reference are released); the shell, with
//!   the memory it holds, is freed by the Java object's `Cleaner` once it is unreachable, so a
//!   handle is never used after it is freed, and a call racing with `close()` on another
//!   thread still reads live memory. The Java side passes the owning objects along with the
//!   handles so that they stay reachable for the duration of each call. A call therefore
//!   reads its handles with plain loads: no reference count or other atomic read-modify-write,
//!   which costs tens of nanoseconds per operation.
//! * No local reference outlives a call: native methods create at most a few locals, released
//!   by the JVM when they return, and the change callback runs in its own local frame.
//! * The change callback runs on the client's background thread, attached to the JVM for the
//!   call and detached after.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod failure;
mod flag_key;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jni::objects::{JClass, JObject, JString, JValue};
use jni::refs::Global;
use jni::sys::{jboolean, jdouble, jint, jlong};
use jni::vm::JavaVM;
use jni::{Env, EnvUnowned, jni_sig, jni_str};
use serde_json::Value;
use vexil_core::{
    Client, ClientState, Context, Detail, ErrorCode, FlagChange, ListenerId, LogLevel, LogSink,
    Options, Source, Status, Unevaluated, ValueKind,
};

use failure::{Failure, ThrowVexilException};
use flag_key::with_flag_key;

/// What a Java `VexilClient` holds.
struct ClientHandle {
    client: Client,
    /// Set by `close()`: calls answer their defaults from then on.
    closed: AtomicBool,
    /// The listener that forwards changes to the Java dispatcher (it owns the dispatcher's
    /// global reference, deleted when the listener is removed).
    listener: Mutex<Option<ListenerId>>,
}

/// What a Java `Context` holds: the context converted once, reused by every call.
struct ContextHandle {
    context: Context,
    /// Set by `close()`: calls with the context are refused from then on.
    closed: AtomicBool,
}

fn into_handle<T>(value: T) -> jlong {
    Box::into_raw(Box::new(value)) as jlong
}

/// # Safety
/// `handle` must be 0 or come from [`into_handle`] for a `T` not yet freed.
unsafe fn handle_ref<'a, T>(handle: jlong, what: &str) -> Result<&'a T, Failure> {
    let pointer = handle as *const T;
    if pointer.is_null() {
        return Err(Failure::new(
            ErrorCode::Closed,
            format!("{what} handle is null"),
        ));
    }
    // SAFETY: the caller guarantees the handle is live (the Java owner is reachable and its
    // Cleaner has not run).
    Ok(unsafe { &*pointer })
}

/// # Safety
/// `handle` must be 0 or come from [`into_handle`] for a `T`, freed only here and only once.
unsafe fn free_handle<T>(handle: jlong) {
    let pointer = handle as *mut T;
    if !pointer.is_null() {
        // SAFETY: see the function's contract.
        drop(unsafe { Box::from_raw(pointer) });
    }
}

/// The client of a handle, for the duration of one call; `None` once it is closed.
fn client_of<'a>(handle: jlong) -> Result<Option<&'a Client>, Failure> {
    // SAFETY: handles come from `Java_dev_vexil_Native_clientNew`; the Java object passed
    // alongside keeps the shell alive during the call.
    let shell = unsafe { handle_ref::<ClientHandle>(handle, "client") }?;
    Ok((!shell.closed.load(Ordering::Acquire)).then_some(&shell.client))
}

/// The context of a handle, for the duration of one call.
fn context_of<'a>(handle: jlong) -> Result<&'a Context, Failure> {
    // SAFETY: as for `client_of`, from `Java_dev_vexil_Native_contextNew`.
    let shell = unsafe { handle_ref::<ContextHandle>(handle, "context") }?;
    if shell.closed.load(Ordering::Acquire) {
        return Err(Failure::new(ErrorCode::Closed, "the context is closed"));
    }
    Ok(&shell.context)
}

/// The hot path of the variations that answer a primitive (bool, number): it reads the
/// handles and the flag key straight from the raw JNI environment, with no allocation for
/// keys of usual length, and leaves the `with_env` machinery to failures and panics, which
/// still become Java exceptions.
fn primitive_variation<'l, T: Copy + Default>(
    mut env: EnvUnowned<'l>,
    client: jlong,
    flag: &JString<'l>,
    flag_length: jint,
    context: jlong,
    default: T,
    evaluate: impl FnOnce(&Client, &str, &Context, T) -> T,
) -> T {
    let raw = env.as_raw();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let context = context_of(context)?;
        let Some(client) = client_of(client)? else {
            return Ok(default);
        };
        // SAFETY: `raw` is this native call's environment, on this thread, and `flag` is a
        // local reference of the call (or null, which the reader reports).
        unsafe {
            with_flag_key(raw, flag.as_raw(), Some(flag_length), |key| {
                evaluate(client, key, context, default)
            })
        }
    }));
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => env
            .with_env(|_env| -> Result<T, Failure> { Err(failure) })
            .resolve::<ThrowVexilException>(),
        // Re-raised inside `with_env`, whose panic policy turns it into a NativeException.
        Err(payload) => env
            .with_env(|_env| -> Result<T, Failure> { resume_unwind(payload) })
            .resolve::<ThrowVexilException>(),
    }
}

fn rust_string(env: &Env<'_>, text: &JString<'_>, what: &str) -> Result<String, Failure> {
    if text.is_null() {
        return Err(Failure::new(
            ErrorCode::NullArgument,
            format!("{what}: must not be null"),
        ));
    }
    Ok(text.try_to_string(env)?)
}

fn parse_json(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|err| {
        Failure::new(
            ErrorCode::InvalidJson,
            format!("{what}: not valid JSON: {err}"),
        )
    })
}

fn kind_of(code: jint) -> Result<ValueKind, Failure> {
    match code {
        0 => Ok(ValueKind::Bool),
        1 => Ok(ValueKind::String),
        2 => Ok(ValueKind::Number),
        3 => Ok(ValueKind::Json),
        other => Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!("type: unknown type code {other}"),
        )),
    }
}

/// The detail a closed client answers with: the caller's default, with the reason the
/// core's table gives a released client.
fn closed_detail(default: Value) -> String {
    Detail::unevaluated(default, Unevaluated::ClientReleased).to_json_string()
}

fn java_string<'l>(env: &mut Env<'l>, text: &str) -> Result<JString<'l>, Failure> {
    Ok(JString::from_str(env, text)?)
}

/// Forwards a change to the Java dispatcher, from the client's background thread.
fn dispatch_change(dispatcher: &Global<JObject<'static>>, change: &FlagChange) {
    let Ok(vm) = JavaVM::singleton() else { return };
    let keys = Value::from(change.flag_keys.clone()).to_string();
    // A scoped attachment: the thread is detached again when the callback returns, and the
    // callback's local references live in a frame of their own.
    let _ = vm.attach_current_thread_for_scope(|env| -> jni::errors::Result<()> {
        let keys = JString::from_str(env, &keys)?;
        env.call_method(
            dispatcher.as_obj(),
            jni_str!("onNativeChange"),
            jni_sig!("(Ljava/lang/String;J)V"),
            &[JValue::Object(&keys), JValue::Long(change.version)],
        )?;
        Ok(())
    });
    // A Java exception thrown by the dispatcher is caught by the attachment (the dispatcher
    // itself already isolates listeners), so nothing is left pending on this thread.
}

/// The client's log messages, handed to the Java `NativeLogSink` on the core's log thread:
/// the client's threads never call into the JVM for a message, and a message logged inside
/// a native call (on a Java thread) waits for no JNI frame. The most detailed level wanted is
/// asked once, when the client is created.
fn jvm_log_sink(env: &mut Env<'_>, sink: &JObject<'_>) -> Result<Arc<dyn LogSink>, Failure> {
    let mut max_level = None;
    for number in (1..=5).rev() {
        let enabled = env
            .call_method(
                sink,
                jni_str!("enabled"),
                jni_sig!("(I)Z"),
                &[JValue::Int(jint::from(number))],
            )?
            .z()?;
        if enabled {
            max_level = LogLevel::from_number(number);
            break;
        }
    }
    let Some(max_level) = max_level else {
        return Ok(Arc::new(Silent));
    };
    let sink = env.new_global_ref(sink)?;
    Ok(vexil_core::logging::on_log_thread(
        max_level,
        Arc::new(move |level, message: &str| {
            let Ok(vm) = JavaVM::singleton() else { return };
            // Attached for the call only: the idle log thread never keeps the JVM from
            // exiting.
            let _ = vm.attach_current_thread_for_scope(|env| -> jni::errors::Result<()> {
                let text = JString::from_str(env, message)?;
                env.call_method(
                    sink.as_obj(),
                    jni_str!("log"),
                    jni_sig!("(ILjava/lang/String;)V"),
                    &[JValue::Int(level as jint), JValue::Object(&text)],
                )?;
                Ok(())
            });
        }),
    ))
}

/// A logger that enables no level.
struct Silent;

impl LogSink for Silent {
    fn enabled(&self, _level: LogLevel) -> bool {
        false
    }

    fn log(&self, _level: LogLevel, _message: &str) {}
}

/// Declares native methods of `dev.vexil.Native`, each written as
/// `fn Java_dev_vexil_Native_<method><'l>(env, <parameters>) -> <type> { <body> }`. The
/// exported function takes the JNI environment and class before the parameters, runs the
/// body inside `EnvUnowned::with_env` (which turns a panic into a `NativeException`) with
/// the environment as `env`, and throws the `Failure` the body returns as a
/// `VexilException`. Without `-> <type>`, the method returns nothing.
macro_rules! native {
    (
        $(#[$attr:meta])*
        fn $name:ident<$l:lifetime>($env:pat $(, $arg:ident: $ty:ty)* $(,)?) { $($body:tt)* }
    ) => {
        native! { $(#[$attr])* fn $name<$l>($env $(, $arg: $ty)*) -> () { $($body)* } }
    };
    (
        $(#[$attr:meta])*
        fn $name:ident<$l:lifetime>($env:pat $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty {
            $($body:tt)*
        }
    ) => {
        $(#[$attr])*
        #[unsafe(no_mangle)]
        pub extern "system" fn $name<$l>(
            mut env: EnvUnowned<$l>,
            _class: JClass<$l>,
            $($arg: $ty),*
        ) -> $ret {
            env.with_env(|$env| -> Result<$ret, Failure> { $($body)* })
                .resolve::<ThrowVexilException>()
        }
    };
}

/// Declares a typed variation that answers a primitive, on the hot path of
/// [`primitive_variation`]: `fn <name> -> <type>, <the client's variation method>`.
macro_rules! primitive_native {
    (fn $name:ident -> $ty:ty, $variation:ident) => {
        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub extern "system" fn $name<'l>(
            env: EnvUnowned<'l>,
            _class: JClass<'l>,
            _client: JObject<'l>,
            client: jlong,
            flag: JString<'l>,
            flag_length: jint,
            _context: JObject<'l>,
            context: jlong,
            default: $ty,
        ) -> $ty {
            primitive_variation(
                env,
                client,
                &flag,
                flag_length,
                context,
                default,
                |client, key, context, default| client.$variation(key, context, default),
            )
        }
    };
}

// ----- contexts -----------------------------------------------------------------------------

native! {
    fn Java_dev_vexil_Native_contextNew<'l>(env, json: JString<'l>) -> jlong {
        let text = rust_string(env, &json, "context")?;
        let value = serde_json::from_str::<Value>(&text).map_err(|err| {
            Failure::new(
                ErrorCode::InvalidContext,
                format!("context: not valid JSON: {err}"),
            )
        })?;
        let context = vexil_core::context_from_json(&value, "context")?;
        Ok(into_handle(ContextHandle {
            context,
            closed: AtomicBool::new(false),
        }))
    }
}

native! {
    fn Java_dev_vexil_Native_contextClose<'l>(_env, _owner: JObject<'l>, handle: jlong) {
        // SAFETY: `_owner` keeps the shell alive during the call.
        let shell = unsafe { handle_ref::<ContextHandle>(handle, "context") }?;
        shell.closed.store(true, Ordering::Release);
        Ok(())
    }
}

native! {
    fn Java_dev_vexil_Native_contextFree<'l>(_env, handle: jlong) {
        // SAFETY: called once, by the Cleaner of the owning Context after it became unreachable.
        unsafe { free_handle::<ContextHandle>(handle) };
        Ok(())
    }
}

// ----- test data ----------------------------------------------------------------------------

native! {
    fn Java_dev_vexil_Native_testDataNew<'l>(_env) -> jlong {
        Ok(into_handle(vexil_core::TestData::new()))
    }
}

native! {
    /// Applies one change to the test data of `handle`: a flag (`what` 0) or segment (1) given
    /// as JSON in `json`, or a flag `key` serving the JSON value `json` (2).
    fn Java_dev_vexil_Native_testDataUpdate<'l>(
        env,
        _owner: JObject<'l>,
        handle: jlong,
        what: jint,
        key: JString<'l>,
        json: JString<'l>,
    ) {
        // SAFETY: `_owner` keeps the handle alive during the call.
        let data = unsafe { handle_ref::<vexil_core::TestData>(handle, "test data") }?;
        let text = rust_string(env, &json, "json")?;
        let value = parse_json(&text, "json")?;
        match what {
            0 => data.update_flag(value)?,
            1 => data.update_segment(value)?,
            _ => data.set_value(&rust_string(env, &key, "key")?, value)?,
        }
        Ok(())
    }
}

native! {
    fn Java_dev_vexil_Native_testDataRemove<'l>(
        env,
        _owner: JObject<'l>,
        handle: jlong,
        segment: jboolean,
        key: JString<'l>,
    ) -> jboolean {
        // SAFETY: `_owner` keeps the handle alive during the call.
        let data = unsafe { handle_ref::<vexil_core::TestData>(handle, "test data") }?;
        let key = rust_string(env, &key, "key")?;
        Ok(if segment {
            data.remove_segment(&key)
        } else {
            data.remove_flag(&key)
        })
    }
}

native! {
    fn Java_dev_vexil_Native_testDataFree<'l>(_env, handle: jlong) {
        // SAFETY: called once, by the Cleaner of the owning TestData after it became unreachable.
        unsafe { free_handle::<vexil_core::TestData>(handle) };
        Ok(())
    }
}

// ----- clients ------------------------------------------------------------------------------

native! {
    fn Java_dev_vexil_Native_clientNew<'l>(
        env,
        sdk_key: JString<'l>,
        options: JString<'l>,
        dispatcher: JObject<'l>,
        log_sink: JObject<'l>,
        test_data: JObject<'l>,
        test_data_handle: jlong,
    ) -> jlong {
        let key = rust_string(env, &sdk_key, "sdkKey")?;
        let options = rust_string(env, &options, "options")?;
        let mut config = Options::from_json_str(&options)?
            .into_config(key, ("vexil-kotlin", env!("CARGO_PKG_VERSION")))?;
        if !log_sink.is_null() {
            config = config.with_log_sink(jvm_log_sink(env, &log_sink)?);
        }
        if !test_data.is_null() {
            // SAFETY: `test_data` (the owning Java object) keeps the handle alive during the call.
            let data =
                unsafe { handle_ref::<vexil_core::TestData>(test_data_handle, "test data") }?;
            config = config.with_test_data(data);
        }
        let client = Client::new(config).map_err(vexil_core::Failure::from)?;
        let listener = if dispatcher.is_null() {
            None
        } else {
            let dispatcher = env.new_global_ref(&dispatcher)?;
            Some(client.on_change(move |change| dispatch_change(&dispatcher, change)))
        };
        Ok(into_handle(ClientHandle {
            client,
            closed: AtomicBool::new(false),
            listener: Mutex::new(listener),
        }))
    }
}

native! {
    fn Java_dev_vexil_Native_clientClose<'l>(_env, _owner: JObject<'l>, handle: jlong) {
        // SAFETY: `_owner` keeps the shell alive during the call.
        let shell = unsafe { handle_ref::<ClientHandle>(handle, "client") }?;
        if shell.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let client = &shell.client;
        let listener = match shell.listener.lock() {
            Ok(mut held) => held.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(id) = listener {
            // Drops the dispatcher's global reference.
            client.remove_listener(id);
        }
        client.close();
        Ok(())
    }
}

native! {
    fn Java_dev_vexil_Native_clientFree<'l>(_env, handle: jlong) {
        // SAFETY: called once, by the Cleaner of the owning client after it became unreachable.
        unsafe { free_handle::<ClientHandle>(handle) };
        Ok(())
    }
}

// ----- variations ---------------------------------------------------------------------------

primitive_native!(fn Java_dev_vexil_Native_boolVariation -> jboolean, bool_variation);

native! {
    #[allow(clippy::too_many_arguments)]
    fn Java_dev_vexil_Native_stringVariation<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        flag: JString<'l>,
        _context: JObject<'l>,
        context: jlong,
        default: JString<'l>,
    ) -> JString<'l> {
        let context = context_of(context)?;
        let default_text = rust_string(env, &default, "default")?;
        let Some(client) = client_of(client)? else {
            return Ok(default);
        };
        // SAFETY: this call's environment and local reference.
        let value = unsafe {
            with_flag_key(env.get_raw(), flag.as_raw(), None, |key| {
                client.string_variation(key, context, &default_text)
            })
        }?;
        if value == default_text {
            return Ok(default);
        }
        java_string(env, &value)
    }
}

primitive_native!(fn Java_dev_vexil_Native_doubleVariation -> jdouble, number_variation);

native! {
    #[allow(clippy::too_many_arguments)]
    fn Java_dev_vexil_Native_jsonVariation<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        flag: JString<'l>,
        _context: JObject<'l>,
        context: jlong,
        default: JString<'l>,
    ) -> JString<'l> {
        let context = context_of(context)?;
        let default_value = parse_json(&rust_string(env, &default, "default")?, "default")?;
        let Some(client) = client_of(client)? else {
            return Ok(default);
        };
        // SAFETY: this call's environment and local reference.
        let value = unsafe {
            with_flag_key(env.get_raw(), flag.as_raw(), None, |key| {
                client.json_variation(key, context, default_value)
            })
        }?;
        java_string(env, &value.to_string())
    }
}

native! {
    /// Any type's variation with its detail, as JSON: `{value, variation, reason, …}`.
    #[allow(clippy::too_many_arguments)]
    fn Java_dev_vexil_Native_variationDetail<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        flag: JString<'l>,
        _context: JObject<'l>,
        context: jlong,
        kind: jint,
        default: JString<'l>,
    ) -> JString<'l> {
        let context = context_of(context)?;
        let kind = kind_of(kind)?;
        let default = parse_json(&rust_string(env, &default, "default")?, "default")?;
        let flag = rust_string(env, &flag, "flagKey")?;
        let detail = match client_of(client)? {
            Some(client) => client
                .variation_detail(&flag, context, kind, &default)
                .to_json_string(),
            None => closed_detail(default),
        };
        java_string(env, &detail)
    }
}

native! {
    /// A variation for a context given as JSON: an invalid context is not an exception but a
    /// detail with the default and an `INVALID_CONTEXT` reason, in the engine's order of errors.
    fn Java_dev_vexil_Native_variationDetailJson<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        flag: JString<'l>,
        context: JString<'l>,
        kind: jint,
        default: JString<'l>,
    ) -> JString<'l> {
        let kind = kind_of(kind)?;
        let default = parse_json(&rust_string(env, &default, "default")?, "default")?;
        let context = parse_json(&rust_string(env, &context, "context")?, "context")?;
        let flag = rust_string(env, &flag, "flagKey")?;
        let detail = match client_of(client)? {
            Some(client) => client
                .variation_detail(&flag, &context, kind, &default)
                .to_json_string(),
            None => closed_detail(default),
        };
        java_string(env, &detail)
    }
}

native! {
    fn Java_dev_vexil_Native_allFlags<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        _context: JObject<'l>,
        context: jlong,
    ) -> JString<'l> {
        let context = context_of(context)?;
        let flags = match client_of(client)? {
            Some(client) => client.all_flags(context),
            None => Default::default(),
        };
        java_string(env, &serde_json::to_string(&flags).unwrap_or_default())
    }
}

// ----- lifecycle, events --------------------------------------------------------------------

fn millis(value: jlong) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

native! {
    fn Java_dev_vexil_Native_waitForInitialization<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        timeout_ms: jlong,
    ) -> JString<'l> {
        let status = match client_of(client)? {
            Some(client) => client.wait_for_initialization(millis(timeout_ms)),
            None => Status::Closed,
        };
        let answer = serde_json::json!({ "status": status, "reason": status.reason() });
        java_string(env, &answer.to_string())
    }
}

native! {
    /// The core's state JSON: `{status, reason, mode, source, version, events: {dropped, sent,
    /// failed_batches, queued}}`.
    fn Java_dev_vexil_Native_status<'l>(env, _client: JObject<'l>, client: jlong) -> JString<'l> {
        let state = match client_of(client)? {
            Some(client) => client.state(),
            // SAFETY: the Java owner keeps the shell alive during the call.
            None => ClientState {
                status: Status::Closed,
                reason: None,
                mode: unsafe { handle_ref::<ClientHandle>(client, "client") }?
                    .client
                    .mode(),
                source: Source::Defaults,
                version: 0,
                events: Default::default(),
            },
        };
        java_string(env, &serde_json::to_string(&state).unwrap_or_default())
    }
}

native! {
    fn Java_dev_vexil_Native_identify<'l>(
        _env,
        _client: JObject<'l>,
        client: jlong,
        _context: JObject<'l>,
        context: jlong,
        timeout_ms: jlong,
    ) -> jboolean {
        let context = context_of(context)?;
        Ok(match client_of(client)? {
            Some(client) => client.identify(context.clone(), millis(timeout_ms)),
            None => false,
        })
    }
}

native! {
    #[allow(clippy::too_many_arguments)]
    fn Java_dev_vexil_Native_track<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        name: JString<'l>,
        _context: JObject<'l>,
        context: jlong,
        value: jdouble,
        has_value: jboolean,
    ) {
        let context = context_of(context)?;
        let name = rust_string(env, &name, "eventName")?;
        if let Some(client) = client_of(client)? {
            client.track(&name, context, has_value.then_some(value))?;
        }
        Ok(())
    }
}

native! {
    fn Java_dev_vexil_Native_flush<'l>(
        _env,
        _client: JObject<'l>,
        client: jlong,
        timeout_ms: jlong,
    ) -> jboolean {
        Ok(match client_of(client)? {
            Some(client) => client.flush(millis(timeout_ms)),
            None => false,
        })
    }
}

// ----- for tests and benchmarks -------------------------------------------------------------

native! {
    /// Times `iterations` bool variations made in Rust with the same client, flag and context as
    /// a Java call would use: the engine's own cost, to compare the JNI call with. Nanoseconds.
    #[allow(clippy::too_many_arguments)]
    fn Java_dev_vexil_Native_benchmarkBoolVariation<'l>(
        env,
        _client: JObject<'l>,
        client: jlong,
        flag: JString<'l>,
        _context: JObject<'l>,
        context: jlong,
        iterations: jlong,
    ) -> jlong {
        let context = context_of(context)?;
        let flag = rust_string(env, &flag, "flagKey")?;
        let Some(client) = client_of(client)? else {
            return Err(Failure::new(ErrorCode::Closed, "the client is closed"));
        };
        let started = Instant::now();
        for _ in 0..iterations.max(0) {
            std::hint::black_box(client.bool_variation(
                std::hint::black_box(&flag),
                std::hint::black_box(context),
                false,
            ));
        }
        Ok(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX))
    }
}

native! {
    /// Panics, so that tests can check a Rust panic reaches Java as an exception.
    fn Java_dev_vexil_Native_panicForTest<'l>(_env) {
        #[allow(clippy::panic)]
        {
            panic!("a deliberate panic (test)")
        }
    }
}
