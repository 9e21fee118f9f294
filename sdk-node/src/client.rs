//! The `Client` class: a vexil-core client seen from JavaScript.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Function, FunctionRef, Object, This, ToNapiValue, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use serde_json::Value;
use vexil_core::{Config, ListenerId, Options, Reason, Status, ValueKind, panic_message};

use crate::context::{context_arg, required_context};
use crate::error::{ErrorCode, Result, error, from_core, guard, internal, invalid_argument};
use crate::js::{Js, Type};

/// Why a value was served (the `reason` of the conformance vectors, in camelCase).
#[napi(object, js_name = "Reason")]
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationReason {
    #[napi(
        ts_type = "'OFF' | 'TARGET_MATCH' | 'RULE_MATCH' | 'FALLTHROUGH' | 'PREREQUISITE_FAILED' | 'ERROR'"
    )]
    pub kind: String,
    /// `RULE_MATCH`: the index of the rule that matched.
    pub rule_index: Option<u32>,
    /// `RULE_MATCH`: the id of the rule that matched.
    pub rule_id: Option<String>,
    /// `PREREQUISITE_FAILED`: the prerequisite that was not met.
    pub prerequisite_key: Option<String>,
    /// `ERROR`: what went wrong.
    #[napi(
        ts_type = "'FLAG_NOT_FOUND' | 'WRONG_TYPE' | 'MALFORMED_FLAG' | 'INVALID_CONTEXT' | 'CLIENT_NOT_READY'"
    )]
    pub error_kind: Option<String>,
}

impl From<&Reason<String>> for EvaluationReason {
    fn from(reason: &Reason<String>) -> Self {
        let mut out = EvaluationReason {
            kind: reason.kind_str().to_owned(),
            rule_index: None,
            rule_id: None,
            prerequisite_key: None,
            error_kind: None,
        };
        match reason {
            Reason::RuleMatch {
                rule_index,
                rule_id,
            } => {
                out.rule_index = Some(u32::try_from(*rule_index).unwrap_or(u32::MAX));
                out.rule_id = Some(rule_id.clone());
            }
            Reason::PrerequisiteFailed { prerequisite_key } => {
                out.prerequisite_key = Some(prerequisite_key.clone());
            }
            Reason::Error { error_kind } => out.error_kind = Some(error_kind.as_str().to_owned()),
            Reason::Off | Reason::TargetMatch | Reason::Fallthrough => {}
        }
        out
    }
}

/// A variation with everything known about it.
#[napi(object, use_nullable = true)]
#[derive(Debug, Clone)]
pub struct EvaluationDetail {
    /// The value served, or the default.
    #[napi(ts_type = "any")]
    pub value: Value,
    /// The index of the variation served; `null` when the default was returned.
    pub variation: Option<u32>,
    pub reason: EvaluationReason,
    /// Whether the context is counted in an experiment.
    pub in_experiment: bool,
    /// The experiment the context is counted in.
    pub experiment_key: Option<String>,
    /// The flag's version (0 when unknown).
    pub flag_version: i64,
    /// Where the data came from.
    #[napi(ts_type = "Source")]
    pub source: String,
    /// The environment version of the data (0 when none).
    pub version: i64,
}

impl EvaluationDetail {
    fn from_core(detail: vexil_core::Detail<Value>) -> Self {
        EvaluationDetail {
            value: detail.value,
            variation: detail
                .variation
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            reason: (&detail.reason).into(),
            in_experiment: detail.in_experiment,
            experiment_key: detail.experiment_key,
            flag_version: detail.flag_version,
            source: detail.source.as_str().to_owned(),
            version: detail.version,
        }
    }
}

/// Flags whose data changed, passed to `'change'` listeners.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct FlagChange {
    /// The flags whose definition or value may have changed, in key order.
    pub flag_keys: Vec<String>,
    /// The environment version after the change.
    pub version: i64,
}

/// Counters of the event pipeline.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct EventStats {
    /// Events dropped because the queue was full.
    pub dropped: i64,
    /// Events the server accepted.
    pub sent: i64,
    /// Batches that failed every attempt.
    pub failed_batches: i64,
    /// Events waiting to be sent.
    pub queued: i64,
}

/// Where a client stands.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct ClientStatus {
    #[napi(ts_type = "Status")]
    pub status: String,
    /// Why the client is `STALE` or `FAILED`.
    pub reason: Option<String>,
    /// Where the data served now comes from.
    #[napi(ts_type = "Source")]
    pub source: String,
    /// The environment version of the data held (0 when none).
    pub version: i64,
    /// `local` (server keys: the ruleset is evaluated in process) or `remote` (client and
    /// mobile keys: the server evaluates).
    #[napi(ts_type = "'local' | 'remote'")]
    pub mode: String,
    pub events: EventStats,
}

/// A `'change'` listener: the function (to find it again in `off`) and its registration
/// in the core client, which owns the threadsafe function that calls it.
struct ChangeListener {
    function: FunctionRef<FlagChange, Unknown<'static>>,
    id: ListenerId,
}

/// A Vexil client. Created with an SDK key; starts at once, never waits for the network.
/// Variation calls are synchronous and answer from memory.
#[napi]
pub struct Client {
    core: Arc<vexil_core::Client>,
    listeners: Vec<ChangeListener>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("core", &self.core)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// An optional timeout in milliseconds.
fn timeout_arg(js: Js, value: Option<Unknown>, field: &str) -> Result<Duration> {
    let Some(value) = value else {
        return Ok(DEFAULT_TIMEOUT);
    };
    match js.type_of(value.raw()) {
        Type::Undefined | Type::Null => Ok(DEFAULT_TIMEOUT),
        Type::Number => {
            vexil_core::arguments::millis(js.number(value.raw()).unwrap_or(f64::NAN), field)
                .map_err(from_core)
        }
        other => Err(invalid_argument(
            field,
            format!("expected a number of milliseconds, got {}", other.name()),
        )),
    }
}

/// Reads a string argument into `f`, without allocating when it is short.
fn with_str_arg<R>(
    js: Js,
    value: sys::napi_value,
    field: &str,
    f: impl FnOnce(&str) -> R,
) -> Result<R> {
    // Read first, typed only on failure: one Node-API call fewer on the hot path.
    if let Some(result) = js.with_str(value, f) {
        return Ok(result);
    }
    Err(invalid_argument(
        field,
        match js.type_of(value) {
            Type::String => "cannot read the string".to_owned(),
            other => format!("expected a string, got {}", other.name()),
        },
    ))
}

fn string_arg(js: Js, value: sys::napi_value, field: &str) -> Result<String> {
    with_str_arg(js, value, field, str::to_owned)
}

fn value_kind(js: Js, value: sys::napi_value) -> Result<ValueKind> {
    with_str_arg(js, value, "type", |kind| {
        vexil_core::arguments::value_kind(kind, "type").map_err(from_core)
    })?
}

/// Runs `work` on a thread of its own (it may wait) and settles the returned promise with
/// `to_js(result)` on the JavaScript thread. A panic rejects it with `VEXIL_PANIC`.
fn promise<'env, T, V>(
    env: &'env Env,
    work: impl FnOnce() -> T + Send + 'static,
    to_js: impl FnOnce(T) -> V + Send + 'static,
) -> Result<Object<'env>>
where
    T: Send + 'static,
    V: ToNapiValue + 'static,
{
    let (deferred, promise) = env.create_deferred().map_err(internal)?;
    let job = move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|payload| panic_message(&*payload));
        deferred.resolve(move |env: Env| match outcome {
            Ok(value) => Ok(to_js(value)),
            Err(message) => {
                let error = napi::JsError::from(error(
                    ErrorCode::Panic,
                    format!("internal error in the Vexil addon: {message}"),
                ));
                // SAFETY: the resolver runs on the JavaScript thread with its env.
                let value = unsafe { error.into_value(env.raw()) };
                // SAFETY: as above; `value` is the error just made.
                Err(napi::Error::from(unsafe {
                    Unknown::from_raw_unchecked(env.raw(), value)
                }))
            }
        });
    };
    std::thread::Builder::new()
        .name("vexil-node-wait".into())
        .spawn(job)
        .map_err(|err| error(ErrorCode::Runtime, format!("cannot start a thread: {err}")))?;
    Ok(promise)
}

/// The client's configuration from `sdkKey` and the options object, read by the core in its
/// one JSON form (the package's camelCase names are the core's camelCase spellings).
fn read_config(js: Js, sdk_key: String, options: Option<sys::napi_value>) -> Result<Config> {
    let defaults = ("vexil-node", env!("CARGO_PKG_VERSION"));
    let Some(options) = options.filter(|o| !matches!(js.type_of(*o), Type::Undefined | Type::Null))
    else {
        return Options::default()
            .into_config(sdk_key, defaults)
            .map_err(from_core);
    };
    match js.type_of(options) {
        Type::Object if !js.is_array(options) => {}
        other => {
            return Err(invalid_argument(
                "options",
                format!("expected an object, got {}", other.name()),
            ));
        }
    }
    let mut json = js
        .json_except(options, &["logger", "logLevel", "testData"])
        .map_err(|problem| invalid_argument("options", problem))?;
    // A reusable `Context` given as the first context: its canonical JSON (a native object
    // has no own properties to read). Only objects may be asked for their type tag: Node-API
    // converts anything else to an object, and throws for undefined.
    if let Some(context) = js.get(options, c"context")
        && js.type_of(context) == Type::Object
        && let Some(native) = crate::context::native_context(js, context)
        && let Some(object) = json.as_object_mut()
    {
        object.insert("context".into(), native.to_json());
    }
    Options::from_json(&json)
        .and_then(|options| options.into_config(sdk_key, defaults))
        .map_err(from_core)
}

fn event_arg(js: Js, event: Unknown) -> Result<()> {
    with_str_arg(js, event.raw(), "event", |name| {
        if name == "change" {
            Ok(())
        } else {
            Err(invalid_argument(
                "event",
                format!("unknown event {name:?}; the client emits 'change'"),
            ))
        }
    })?
}

#[napi]
impl Client {
    /// Creates a client for `sdkKey` and starts its background work at once; never waits
    /// for the network (see `waitForInitialization`). Throws `VEXIL_INVALID_KEY`,
    /// `VEXIL_INVALID_ENDPOINT`, `VEXIL_INVALID_ARGUMENT` (naming the option) or
    /// `VEXIL_INVALID_CONTEXT` (`options.context`).
    #[napi(constructor, ts_args_type = "sdkKey: string, options?: ClientOptions")]
    pub fn new(env: Env, sdk_key: Unknown, options: Option<Unknown>) -> Result<Self> {
        guard(|| {
            let js = Js { env: env.raw() };
            let sdk_key = string_arg(js, sdk_key.raw(), "sdkKey")?;
            let config = read_config(js, sdk_key, options.map(|o| o.raw()))?;
            let config = match crate::logging::read_logger(&env, js, options.map(|o| o.raw()))? {
                Some(logger) => config.with_log_sink(logger),
                None => config,
            };
            let config = match crate::test_data::read_test_data(js, options.map(|o| o.raw()))? {
                Some(test_data) => config.with_test_data(&test_data),
                None => config,
            };
            let core = vexil_core::Client::new(config).map_err(|err| from_core(err.into()))?;
            Ok(Client {
                core: Arc::new(core),
                listeners: Vec::new(),
            })
        })
    }

    /// Resolves when the first data from the server has arrived, the key was refused, or
    /// `timeoutMs` (default 5000) has passed, with the status then (`READY`, `FAILED`,
    /// `OFFLINE`, or `INITIALIZING` on timeout). Waits on a thread of its own: the event
    /// loop goes on.
    #[napi(
        ts_args_type = "timeoutMs?: number",
        ts_return_type = "Promise<Status>"
    )]
    pub fn wait_for_initialization<'env>(
        &self,
        env: &'env Env,
        timeout_ms: Option<Unknown>,
    ) -> Result<Object<'env>> {
        guard(|| {
            let timeout = timeout_arg(Js { env: env.raw() }, timeout_ms, "timeoutMs")?;
            let core = self.core.clone();
            promise(
                env,
                move || core.wait_for_initialization(timeout),
                |status| status.name(),
            )
        })
    }

    /// The flag's value for `context` if it is a boolean flag, else `defaultValue`.
    #[napi(ts_args_type = "flagKey: string, context: ContextInput, defaultValue: boolean")]
    pub fn bool_variation(
        &self,
        env: Env,
        flag_key: Unknown,
        context: Unknown,
        default_value: Unknown,
    ) -> Result<bool> {
        let args = [flag_key.raw(), context.raw(), default_value.raw()];
        guard(|| bool_variation(Js { env: env.raw() }, args, || &self.core))
    }

    /// The flag's value for `context` if it is a string flag, else `defaultValue`.
    #[napi(ts_args_type = "flagKey: string, context: ContextInput, defaultValue: string")]
    pub fn string_variation(
        &self,
        env: Env,
        flag_key: Unknown,
        context: Unknown,
        default_value: Unknown,
    ) -> Result<String> {
        let args = [flag_key.raw(), context.raw(), default_value.raw()];
        guard(|| string_variation(Js { env: env.raw() }, args, || &self.core))
    }

    /// The flag's value for `context` if it is a number flag, else `defaultValue`.
    #[napi(ts_args_type = "flagKey: string, context: ContextInput, defaultValue: number")]
    pub fn number_variation(
        &self,
        env: Env,
        flag_key: Unknown,
        context: Unknown,
        default_value: Unknown,
    ) -> Result<f64> {
        let args = [flag_key.raw(), context.raw(), default_value.raw()];
        guard(|| number_variation(Js { env: env.raw() }, args, || &self.core))
    }

    /// The flag's value for `context`, of any kind (no type check), else `defaultValue`.
    /// `defaultValue` must be representable as JSON.
    #[napi(
        ts_args_type = "flagKey: string, context: ContextInput, defaultValue: any",
        ts_return_type = "any"
    )]
    pub fn json_variation(
        &self,
        env: Env,
        flag_key: Unknown,
        context: Unknown,
        default_value: Unknown,
    ) -> Result<Value> {
        let args = [flag_key.raw(), context.raw(), default_value.raw()];
        guard(|| json_variation(Js { env: env.raw() }, args, || &self.core))
    }

    /// The flag's value with its variation, reason, experiment, flag version, source and
    /// environment version. The type asked for is `type`, or that of `defaultValue`
    /// (boolean, string, number; anything else: `json`).
    #[napi(
        ts_args_type = "flagKey: string, context: ContextInput, defaultValue: any, type?: ValueType"
    )]
    pub fn variation_detail(
        &self,
        env: Env,
        flag_key: Unknown,
        context: Unknown,
        default_value: Unknown,
        r#type: Option<Unknown>,
    ) -> Result<EvaluationDetail> {
        guard(|| {
            let js = Js { env: env.raw() };
            let default = js
                .json(default_value.raw())
                .map_err(|problem| invalid_argument("defaultValue", problem))?;
            let kind = match r#type.filter(|t| js.type_of(t.raw()) != Type::Undefined) {
                Some(kind) => value_kind(js, kind.raw())?,
                None => ValueKind::of_default(&default),
            };
            let context = context_arg(js, context.raw());
            let detail = with_str_arg(js, flag_key.raw(), "flagKey", |flag| {
                self.core
                    .variation_detail(flag, context.as_ref(), kind, &default)
            })?;
            Ok(EvaluationDetail::from_core(detail))
        })
    }

    /// Every flag's detail for `context` (remote mode: for the identified context), by
    /// flag key; `value` is `null` for a flag that cannot be served.
    #[napi(
        ts_args_type = "context: ContextInput",
        ts_return_type = "Record<string, EvaluationDetail>"
    )]
    pub fn all_flags(
        &self,
        env: Env,
        context: Unknown,
    ) -> Result<std::collections::HashMap<String, EvaluationDetail>> {
        guard(|| {
            let js = Js { env: env.raw() };
            let context = required_context(js, context.raw(), "context")?;
            Ok(self
                .core
                .all_flags(&context)
                .into_iter()
                .map(|(key, detail)| {
                    let detail = detail.map(|value| value.unwrap_or(Value::Null));
                    (key, EvaluationDetail::from_core(detail))
                })
                .collect())
        })
    }

    /// Remote mode (client and mobile keys): evaluates for `context` from now on and
    /// resolves `true` when its values arrived, `false` after `timeoutMs` (default 5000;
    /// the previous values are served meanwhile). Local mode: stores the context and
    /// resolves `true` at once. Throws `VEXIL_INVALID_CONTEXT` for an invalid context.
    #[napi(
        ts_args_type = "context: ContextInput, timeoutMs?: number",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn identify<'env>(
        &self,
        env: &'env Env,
        context: Unknown,
        timeout_ms: Option<Unknown>,
    ) -> Result<Object<'env>> {
        guard(|| {
            let js = Js { env: env.raw() };
            let context = required_context(js, context.raw(), "context")?;
            let timeout = timeout_arg(js, timeout_ms, "timeoutMs")?;
            let core = self.core.clone();
            promise(
                env,
                move || core.identify(context, timeout),
                |arrived| arrived,
            )
        })
    }

    /// Records a metric event `eventName` for `context`, with an optional numeric value.
    /// Returns at once: the event is queued and sent in the background.
    #[napi(ts_args_type = "eventName: string, context: ContextInput, value?: number")]
    pub fn track(
        &self,
        env: Env,
        event_name: Unknown,
        context: Unknown,
        value: Option<Unknown>,
    ) -> Result<()> {
        guard(|| {
            let js = Js { env: env.raw() };
            let value = match value.map(|v| (js.type_of(v.raw()), v)) {
                None | Some((Type::Undefined | Type::Null, _)) => None,
                Some((Type::Number, v)) => js.number(v.raw()),
                Some((other, _)) => {
                    return Err(invalid_argument(
                        "value",
                        format!("expected a number, got {}", other.name()),
                    ));
                }
            };
            let name = string_arg(js, event_name.raw(), "eventName")?;
            let context = required_context(js, context.raw(), "context")?;
            self.core.track(&name, &context, value).map_err(from_core)
        })
    }

    /// Sends every pending event now; resolves whether everything was delivered within
    /// `timeoutMs` (default 5000).
    #[napi(
        ts_args_type = "timeoutMs?: number",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn flush<'env>(&self, env: &'env Env, timeout_ms: Option<Unknown>) -> Result<Object<'env>> {
        guard(|| {
            let timeout = timeout_arg(Js { env: env.raw() }, timeout_ms, "timeoutMs")?;
            let core = self.core.clone();
            promise(env, move || core.flush(timeout), |delivered| delivered)
        })
    }

    /// Where the client stands now.
    #[napi]
    pub fn status(&self) -> Result<ClientStatus> {
        guard(|| {
            let state = self.core.state();
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            Ok(ClientStatus {
                status: state.status.name().to_owned(),
                reason: state.reason,
                source: state.source.as_str().to_owned(),
                version: state.version,
                mode: state.mode.name().to_ascii_lowercase(),
                events: EventStats {
                    dropped: count(state.events.dropped),
                    sent: count(state.events.sent),
                    failed_batches: count(state.events.failed_batches),
                    queued: count(state.events.queued),
                },
            })
        })
    }

    /// Calls `listener` on the JavaScript thread after every change of flag data. While a
    /// listener is registered and the client is open, the process stays alive (like a
    /// server's socket); `off`, `removeAllListeners` or `close` release it.
    #[napi(
        ts_args_type = "event: 'change', listener: (change: FlagChange) => void",
        ts_return_type = "this"
    )]
    pub fn on<'a>(
        &mut self,
        env: Env,
        this: This<'a>,
        event: Unknown,
        listener: Unknown,
    ) -> Result<Object<'a>> {
        guard(|| {
            let js = Js { env: env.raw() };
            event_arg(js, event)?;
            if js.type_of(listener.raw()) != Type::Function {
                return Err(invalid_argument(
                    "listener",
                    format!(
                        "expected a function, got {}",
                        js.type_of(listener.raw()).name()
                    ),
                ));
            }
            if self.core.status() == Status::Closed {
                return Ok(this.object);
            }
            // SAFETY: checked to be a function just above.
            let function: Function<FlagChange, Unknown<'static>> =
                unsafe { listener.cast() }.map_err(internal)?;
            let reference = function.create_ref().map_err(internal)?;
            let caller: ThreadsafeFunction<
                FlagChange,
                Unknown<'static>,
                FlagChange,
                napi::Status,
                false,
            > = function
                .build_threadsafe_function::<FlagChange>()
                .callee_handled::<false>()
                .build()
                .map_err(internal)?;
            let id = self.core.on_change(move |change| {
                let change = FlagChange {
                    flag_keys: change.flag_keys.clone(),
                    version: change.version,
                };
                caller.call(change, ThreadsafeFunctionCallMode::NonBlocking);
            });
            self.listeners.push(ChangeListener {
                function: reference,
                id,
            });
            Ok(this.object)
        })
    }

    /// Removes a listener added with `on` (the most recent registration of that function).
    #[napi(
        ts_args_type = "event: 'change', listener: (change: FlagChange) => void",
        ts_return_type = "this"
    )]
    pub fn off<'a>(
        &mut self,
        env: Env,
        this: This<'a>,
        event: Unknown,
        listener: Unknown,
    ) -> Result<Object<'a>> {
        guard(|| {
            let js = Js { env: env.raw() };
            event_arg(js, event)?;
            let found = self.listeners.iter().rposition(|held| {
                held.function
                    .borrow_back(&env)
                    .is_ok_and(|f| js.strict_equals(f.raw(), listener.raw()))
            });
            if let Some(index) = found {
                let removed = self.listeners.remove(index);
                self.core.remove_listener(removed.id);
            }
            Ok(this.object)
        })
    }

    /// Removes every `'change'` listener.
    #[napi(ts_args_type = "event?: 'change'", ts_return_type = "this")]
    pub fn remove_all_listeners<'a>(
        &mut self,
        env: Env,
        this: This<'a>,
        event: Option<Unknown>,
    ) -> Result<Object<'a>> {
        guard(|| {
            if let Some(event) =
                event.filter(|e| Js { env: env.raw() }.type_of(e.raw()) != Type::Undefined)
            {
                event_arg(Js { env: env.raw() }, event)?;
            }
            self.release_listeners();
            Ok(this.object)
        })
    }

    /// How many `'change'` listeners are registered.
    #[napi(ts_args_type = "event: 'change'")]
    pub fn listener_count(&self, env: Env, event: Unknown) -> Result<u32> {
        guard(|| {
            event_arg(Js { env: env.raw() }, event)?;
            Ok(u32::try_from(self.listeners.len()).unwrap_or(u32::MAX))
        })
    }

    /// Flushes pending events (up to 5 s), stops the background work and releases the
    /// listeners; resolves when done. Variation calls keep answering from the last data.
    /// Calling it again does nothing.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        guard(|| {
            self.release_listeners();
            let core = self.core.clone();
            promise(env, move || core.close(), |()| ())
        })
    }
}

/// The arguments of a typed variation call: flag key, context, default value.
pub(crate) type VariationArgs = [sys::napi_value; 3];

// The bodies of the typed variation calls, shared by the methods napi-rs declares (which
// give `index.d.ts` its types) and the raw Node-API callbacks that replace them on the
// prototype (see `fast.rs`). `core` is asked for only after the context has been read: a
// getter on a plain context object runs JavaScript, which may call into this client.

pub(crate) fn bool_variation<'c>(
    js: Js,
    [flag_key, context, default_value]: VariationArgs,
    core: impl FnOnce() -> &'c vexil_core::Client,
) -> Result<bool> {
    // Read first, typed only on failure (as `with_str_arg`).
    let Some(default) = js.bool(default_value) else {
        return Err(invalid_argument(
            "defaultValue",
            format!(
                "expected a boolean, got {}",
                js.type_of(default_value).name()
            ),
        ));
    };
    let context = context_arg(js, context);
    with_str_arg(js, flag_key, "flagKey", |flag| {
        core().bool_variation(flag, context.as_ref(), default)
    })
}

pub(crate) fn string_variation<'c>(
    js: Js,
    [flag_key, context, default_value]: VariationArgs,
    core: impl FnOnce() -> &'c vexil_core::Client,
) -> Result<String> {
    let default = string_arg(js, default_value, "defaultValue")?;
    let context = context_arg(js, context);
    with_str_arg(js, flag_key, "flagKey", |flag| {
        core().string_variation(flag, context.as_ref(), &default)
    })
}

pub(crate) fn number_variation<'c>(
    js: Js,
    [flag_key, context, default_value]: VariationArgs,
    core: impl FnOnce() -> &'c vexil_core::Client,
) -> Result<f64> {
    let default = match js.type_of(default_value) {
        Type::Number => js.number(default_value).unwrap_or(0.0),
        other => {
            return Err(invalid_argument(
                "defaultValue",
                format!("expected a number, got {}", other.name()),
            ));
        }
    };
    let context = context_arg(js, context);
    with_str_arg(js, flag_key, "flagKey", |flag| {
        core().number_variation(flag, context.as_ref(), default)
    })
}

pub(crate) fn json_variation<'c>(
    js: Js,
    [flag_key, context, default_value]: VariationArgs,
    core: impl FnOnce() -> &'c vexil_core::Client,
) -> Result<Value> {
    let default = js
        .json(default_value)
        .map_err(|problem| invalid_argument("defaultValue", problem))?;
    let context = context_arg(js, context);
    with_str_arg(js, flag_key, "flagKey", |flag| {
        core().json_variation(flag, context.as_ref(), default)
    })
}

impl Client {
    /// The Rust client behind this one (for the benchmark's Rust-side timing).
    pub fn core(&self) -> &vexil_core::Client {
        &self.core
    }

    /// Unregisters every listener: the core drops their threadsafe functions, which lets
    /// the event loop end.
    fn release_listeners(&mut self) {
        for listener in self.listeners.drain(..) {
            self.core.remove_listener(listener.id);
        }
    }
}

impl Drop for Client {
    /// A client collected without `close()`: release the listeners here (the JavaScript
    /// thread) and close the core elsewhere, since closing flushes events and may wait.
    fn drop(&mut self) {
        self.release_listeners();
        let core = self.core.clone();
        let closing = std::thread::Builder::new()
            .name("vexil-node-close".into())
            .spawn({
                let core = core.clone();
                move || core.close()
            });
        if closing.is_err() {
            core.close();
        }
    }
}
