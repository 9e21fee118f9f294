//! The `logger` and `logLevel` options: the client's log messages handed to the logger's
//! methods on the JavaScript thread.
//!
//! Each JavaScript thread (the main one, each worker) has one log queue, a weak threadsafe
//! function made on first use: a message on its way never keeps the process alive, and a
//! client costs no threadsafe function of its own (they are not cheap to make and release).
//! The queue carries a client's number; the thread keeps a reference to each client's logger
//! object under that number, dropped through the same queue once the client is gone, so that
//! every message queued before is still delivered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use napi::bindgen_prelude::ToNapiValue;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{Env, JsValue, sys};
use vexil_core::{LogLevel, LogSink};

use crate::error::{ErrorCode, Result, error, internal, invalid_argument};
use crate::js::{Js, Type};

/// What travels on a log queue.
enum LogEvent {
    /// A message for client `client`'s logger.
    Message {
        client: u64,
        level: LogLevel,
        text: String,
    },
    /// Client `client` is gone: drop its logger.
    Forget { client: u64 },
}

type LogQueue = ThreadsafeFunction<LogEvent, (), (), napi::Status, false, true>;

thread_local! {
    /// This JavaScript thread's log queue.
    static QUEUE: RefCell<Option<Arc<LogQueue>>> = const { RefCell::new(None) };
    /// This thread's clients' loggers, by client number.
    static LOGGERS: RefCell<HashMap<u64, sys::napi_ref>> = RefCell::new(HashMap::new());
}

/// Numbers clients with a logger, across threads.
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// A client's sink: its number on its thread's log queue.
struct NodeLogger {
    client: u64,
    max_level: LogLevel,
    queue: Arc<LogQueue>,
}

impl LogSink for NodeLogger {
    fn enabled(&self, level: LogLevel) -> bool {
        level <= self.max_level
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.queue.call(
            LogEvent::Message {
                client: self.client,
                level,
                text: message.to_owned(),
            },
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }
}

impl Drop for NodeLogger {
    fn drop(&mut self) {
        self.queue.call(
            LogEvent::Forget {
                client: self.client,
            },
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }
}

/// The method of `level` (trace messages go to `debug`).
fn method_name(level: LogLevel) -> &'static CStr {
    match level {
        LogLevel::Error => c"error",
        LogLevel::Warn => c"warn",
        LogLevel::Info => c"info",
        LogLevel::Debug | LogLevel::Trace => c"debug",
    }
}

/// Hands an event to its logger, on the JavaScript thread. A logger that throws is ignored.
fn deliver(env: &Env, event: LogEvent) {
    let js = Js { env: env.raw() };
    match event {
        LogEvent::Message {
            client,
            level,
            text,
        } => {
            let Some(reference) = LOGGERS.with(|loggers| loggers.borrow().get(&client).copied())
            else {
                return;
            };
            let mut logger = ptr::null_mut();
            // SAFETY: `reference` was made on this thread's env and is not deleted yet.
            if unsafe { sys::napi_get_reference_value(env.raw(), reference, &mut logger) }
                != sys::Status::napi_ok
                || logger.is_null()
            {
                return;
            }
            let Some(method) = js
                .get(logger, method_name(level))
                .filter(|m| js.type_of(*m) == Type::Function)
            else {
                return;
            };
            // SAFETY: the env is this call's; a String always converts.
            let Ok(text) = (unsafe { String::to_napi_value(env.raw(), text) }) else {
                return;
            };
            let mut result = ptr::null_mut();
            // SAFETY: `method` is a function of `logger`, both values of this env.
            unsafe {
                sys::napi_call_function(env.raw(), logger, method, 1, &text, &mut result);
            }
            js.clear_exception();
        }
        LogEvent::Forget { client } => {
            if let Some(reference) = LOGGERS.with(|loggers| loggers.borrow_mut().remove(&client)) {
                // SAFETY: made on this thread's env, deleted once (removed from the map).
                unsafe { sys::napi_delete_reference(env.raw(), reference) };
            }
        }
    }
}

/// This thread's log queue, made on first use.
fn queue(env: &Env) -> Result<Arc<LogQueue>> {
    if let Some(queue) = QUEUE.with(|queue| queue.borrow().clone()) {
        return Ok(queue);
    }
    // The queue's work happens in its callback; the function it then calls does nothing.
    let nothing = env
        .create_function_from_closure::<(), (), _>("vexilLog", |_| Ok(()))
        .map_err(internal)?;
    let queue: LogQueue = nothing
        .build_threadsafe_function::<LogEvent>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(|context: ThreadsafeCallContext<LogEvent>| {
            deliver(&context.env, context.value);
            Ok(())
        })
        .map_err(internal)?;
    let queue = Arc::new(queue);
    QUEUE.with(|held| *held.borrow_mut() = Some(queue.clone()));
    Ok(queue)
}

/// The `logger` and `logLevel` options as a sink; `None` for `logLevel: 'silent'` or
/// `logger: null`.
pub fn read_logger(
    env: &Env,
    js: Js,
    options: Option<sys::napi_value>,
) -> Result<Option<Arc<dyn LogSink>>> {
    let options = options.filter(|o| js.type_of(*o) == Type::Object);
    let option = |name: &CStr| {
        options
            .and_then(|o| js.get(o, name))
            .filter(|v| js.type_of(*v) != Type::Undefined)
    };
    let max_level = match option(c"logLevel") {
        None => LogLevel::Info,
        Some(level) => {
            let Some(name) = js
                .string(level)
                .filter(|_| js.type_of(level) == Type::String)
            else {
                return Err(invalid_argument(
                    "options.logLevel",
                    format!("expected a string, got {}", js.type_of(level).name()),
                ));
            };
            if name == "silent" {
                return Ok(None);
            }
            LogLevel::from_name(&name).ok_or_else(|| {
                invalid_argument(
                    "options.logLevel",
                    format!(
                        "expected 'error', 'warn', 'info', 'debug', 'trace' or 'silent', got {name:?}"
                    ),
                )
            })?
        }
    };
    let logger = match option(c"logger") {
        Some(logger) if js.type_of(logger) == Type::Null => return Ok(None),
        Some(logger) => logger,
        None => {
            let global = env.get_global().map_err(internal)?;
            js.get(global.raw(), c"console")
                .ok_or_else(|| error(ErrorCode::Internal, "no global console"))?
        }
    };
    if js.type_of(logger) != Type::Object {
        return Err(invalid_argument(
            "options.logger",
            format!(
                "expected an object with error, warn, info and debug methods, got {}",
                js.type_of(logger).name()
            ),
        ));
    }
    for level in [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
    ] {
        let name = method_name(level);
        if level <= max_level
            && js
                .get(logger, name)
                .is_none_or(|m| js.type_of(m) != Type::Function)
        {
            return Err(invalid_argument(
                "options.logger",
                format!("has no {} method", name.to_string_lossy()),
            ));
        }
    }
    let queue = queue(env)?;
    let mut reference = ptr::null_mut();
    // SAFETY: `logger` is an object of this call's env.
    if unsafe { sys::napi_create_reference(env.raw(), logger, 1, &mut reference) }
        != sys::Status::napi_ok
    {
        return Err(error(ErrorCode::Internal, "cannot keep the logger"));
    }
    let client = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
    LOGGERS.with(|loggers| loggers.borrow_mut().insert(client, reference));
    Ok(Some(Arc::new(NodeLogger {
        client,
        max_level,
        queue,
    })))
}
