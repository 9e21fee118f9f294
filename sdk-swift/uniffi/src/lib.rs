//! The uniffi interface of sdk-core, for the Swift SDK (`sdk-swift`).
//!
//! A thin layer over [`vexil_core::Client`]: it converts options, contexts, values and errors,
//! and nothing else (no evaluation, caching or retries of its own). The Swift package wraps the
//! bindings generated from this library into its idiomatic API; these types are not meant to be
//! used directly.
//!
//! Every exported function returns a `Result`, even those that cannot fail, so that the
//! generated Swift functions are `throws`: uniffi catches a panic at the boundary and reports it
//! as an error, and the Swift side turns it into a `VexilError` (or the caller's default, for a
//! variation call) instead of crashing the application.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vexil_core::{
    Client, Config, Context, Detail, ErrorCategory, ErrorCode, ErrorKind, EventOptions, Failure,
    ListenerId, LogLevel, LogSink, Options, Reason, Source, Status, ValueKind,
};

uniffi::setup_scaffolding!();

/// Why a call could not be performed. Messages name the field at fault and never contain
/// the SDK key.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum NativeError {
    /// The options are not valid (for instance a key of an unknown kind, a bad endpoint).
    #[error("{message}")]
    InvalidOptions { message: String },
    /// The context is not valid; `message` says which field.
    #[error("{message}")]
    InvalidContext { message: String },
    /// The client could not start its background work.
    #[error("{message}")]
    Runtime { message: String },
}

impl From<Failure> for NativeError {
    /// By the failure's code in the core's table: contexts, the runtime, and everything
    /// else the caller passed (options, arguments).
    fn from(failure: Failure) -> Self {
        // Named as the Swift package names them: `VexilOptions.sdkKey`, `eventName`.
        let failure =
            failure.renamed(&[("sdk_key", "options.sdkKey"), ("event_name", "eventName")]);
        let message = failure.message;
        match failure.code.category() {
            ErrorCategory::Context => NativeError::InvalidContext { message },
            ErrorCategory::Native => NativeError::Runtime { message },
            ErrorCategory::Input | ErrorCategory::Closed => NativeError::InvalidOptions { message },
        }
    }
}

impl From<vexil_core::Error> for NativeError {
    fn from(err: vexil_core::Error) -> Self {
        Failure::from(err).into()
    }
}

type NativeResult<T> = Result<T, NativeError>;

/// A context, validated and converted once, then reused for any number of calls.
///
/// Built from its canonical JSON. An invalid context is still an object: variation calls with
/// it answer the default with an `ERROR`/`INVALID_CONTEXT` reason (evaluation never fails), and
/// [`NativeContext::validation_error`] says what is wrong.
#[derive(Debug, uniffi::Object)]
pub struct NativeContext {
    parsed: Result<Context, String>,
    /// The JSON as given, for evaluating an invalid context (the engine reports it in order).
    json: Value,
}

#[uniffi::export]
impl NativeContext {
    #[uniffi::constructor]
    pub fn from_json(json: String) -> NativeResult<Arc<NativeContext>> {
        let (parsed, json) = match serde_json::from_str::<Value>(&json) {
            Ok(value) => (
                vexil_core::context_from_json(&value, "context").map_err(|f| f.message),
                value,
            ),
            Err(err) => (Err(format!("context: not JSON: {err}")), Value::Null),
        };
        Ok(Arc::new(NativeContext { parsed, json }))
    }

    /// What is wrong with this context, or `None` when it is valid.
    pub fn validation_error(&self) -> NativeResult<Option<String>> {
        Ok(self.parsed.as_ref().err().cloned())
    }

    /// The canonical JSON of a valid context (as the engine sees it), else the JSON given.
    pub fn to_json(&self) -> NativeResult<String> {
        Ok(match &self.parsed {
            Ok(context) => context.to_json().to_string(),
            Err(_) => self.json.to_string(),
        })
    }

    /// This context's address, for the fast variation calls (see [`fast_bool_variation`]).
    pub fn address(&self) -> NativeResult<u64> {
        Ok(address_of(self))
    }
}

impl NativeContext {
    fn valid(&self) -> NativeResult<&Context> {
        self.parsed
            .as_ref()
            .map_err(|message| NativeError::InvalidContext {
                message: message.clone(),
            })
    }
}

/// Options of a client; `None` fields keep the core's defaults.
#[derive(Debug, uniffi::Record)]
pub struct NativeOptions {
    pub sdk_key: String,
    pub endpoint: Option<String>,
    pub cache_dir: Option<String>,
    pub bootstrap_file: Option<String>,
    pub offline: bool,
    /// Remote mode (client and mobile keys): the first context.
    pub context: Option<Arc<NativeContext>>,
    pub events_enabled: bool,
    pub flush_interval_ms: Option<u64>,
    pub event_capacity: Option<u64>,
    /// Attribute references events never carry (private attributes).
    pub private_attributes: Vec<String>,
    /// Every attribute private: events carry kinds and keys only.
    pub all_attributes_private: bool,
    pub connect_timeout_ms: Option<u64>,
    pub stream_timeout_ms: Option<u64>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub max_cache_age_ms: Option<u64>,
    pub sdk_name: String,
    pub sdk_version: String,
}

impl NativeOptions {
    /// The core's options (checked there, naming the option at fault).
    fn into_config(self) -> NativeResult<Config> {
        let sdk_key = self.sdk_key;
        let context = match self.context {
            Some(context) => Some(
                context
                    .valid()
                    .map_err(|err| NativeError::InvalidOptions {
                        message: format!("options.context: {err}"),
                    })?
                    .to_json(),
            ),
            None => None,
        };
        let options = Options {
            endpoint: self.endpoint,
            cache_dir: self.cache_dir.map(PathBuf::from),
            bootstrap: self.bootstrap_file.map(PathBuf::from),
            offline: Some(self.offline),
            context,
            max_cache_age_ms: self.max_cache_age_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            stream_timeout_ms: self.stream_timeout_ms,
            initial_backoff_ms: self.initial_backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            sdk_name: Some(self.sdk_name),
            sdk_version: Some(self.sdk_version),
            events: Some(EventOptions {
                enabled: Some(self.events_enabled),
                capacity: self.event_capacity,
                flush_interval_ms: self.flush_interval_ms,
                private_attributes: Some(self.private_attributes),
                all_attributes_private: Some(self.all_attributes_private),
                ..EventOptions::default()
            }),
            // Errors name the Swift package's camelCase options.
            camel_case: true,
        };
        Ok(options.into_config(sdk_key, ("vexil-swift", env!("CARGO_PKG_VERSION")))?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NativeValueKind {
    Bool,
    String,
    Number,
    Json,
}

impl From<NativeValueKind> for ValueKind {
    fn from(kind: NativeValueKind) -> Self {
        match kind {
            NativeValueKind::Bool => ValueKind::Bool,
            NativeValueKind::String => ValueKind::String,
            NativeValueKind::Number => ValueKind::Number,
            NativeValueKind::Json => ValueKind::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NativeErrorKind {
    FlagNotFound,
    WrongType,
    MalformedFlag,
    InvalidContext,
    ClientNotReady,
}

/// Why a value was served: the reasons of the engine.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum NativeReason {
    Off,
    TargetMatch,
    RuleMatch { rule_index: u64, rule_id: String },
    Fallthrough,
    PrerequisiteFailed { prerequisite_key: String },
    Error { error_kind: NativeErrorKind },
}

impl From<Reason<String>> for NativeReason {
    fn from(reason: Reason<String>) -> Self {
        match reason {
            Reason::Off => NativeReason::Off,
            Reason::TargetMatch => NativeReason::TargetMatch,
            Reason::RuleMatch {
                rule_index,
                rule_id,
            } => NativeReason::RuleMatch {
                rule_index: u64::try_from(rule_index).unwrap_or(u64::MAX),
                rule_id,
            },
            Reason::Fallthrough => NativeReason::Fallthrough,
            Reason::PrerequisiteFailed { prerequisite_key } => {
                NativeReason::PrerequisiteFailed { prerequisite_key }
            }
            Reason::Error { error_kind } => NativeReason::Error {
                error_kind: match error_kind {
                    ErrorKind::FlagNotFound => NativeErrorKind::FlagNotFound,
                    ErrorKind::WrongType => NativeErrorKind::WrongType,
                    ErrorKind::MalformedFlag => NativeErrorKind::MalformedFlag,
                    ErrorKind::InvalidContext => NativeErrorKind::InvalidContext,
                    ErrorKind::ClientNotReady => NativeErrorKind::ClientNotReady,
                },
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NativeSource {
    Network,
    Stale,
    Cache,
    Bootstrap,
    Defaults,
}

impl From<Source> for NativeSource {
    fn from(source: Source) -> Self {
        match source {
            Source::Network => NativeSource::Network,
            Source::Stale => NativeSource::Stale,
            Source::Cache => NativeSource::Cache,
            Source::Bootstrap => NativeSource::Bootstrap,
            Source::Defaults => NativeSource::Defaults,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum NativeStatus {
    Initializing,
    Ready,
    Stale { reason: String },
    Offline,
    Failed { reason: String },
    Closed,
}

impl From<Status> for NativeStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Initializing => NativeStatus::Initializing,
            Status::Ready => NativeStatus::Ready,
            Status::Stale { reason } => NativeStatus::Stale { reason },
            Status::Offline => NativeStatus::Offline,
            Status::Failed { reason } => NativeStatus::Failed { reason },
            Status::Closed => NativeStatus::Closed,
        }
    }
}

/// A variation with everything known about it; the value as JSON (`None`: not served, in
/// `all_flags`).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NativeDetail {
    pub value_json: Option<String>,
    pub variation: Option<u64>,
    pub reason: NativeReason,
    pub in_experiment: bool,
    pub experiment_key: Option<String>,
    pub flag_version: i64,
    pub source: NativeSource,
    pub version: i64,
}

impl NativeDetail {
    fn from_core<T>(detail: Detail<T>, value: impl FnOnce(T) -> Option<String>) -> Self {
        NativeDetail {
            value_json: value(detail.value),
            variation: detail.variation.and_then(|v| u64::try_from(v).ok()),
            reason: detail.reason.into(),
            in_experiment: detail.in_experiment,
            experiment_key: detail.experiment_key,
            flag_version: detail.flag_version,
            source: detail.source.into(),
            version: detail.version,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct NativeEventStats {
    pub dropped: u64,
    pub sent: u64,
    pub failed_batches: u64,
    pub queued: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NativeFlagChange {
    pub flag_keys: Vec<String>,
    pub version: i64,
}

/// Receives changes of flag data, on the client's background thread.
#[uniffi::export(callback_interface)]
pub trait NativeChangeListener: Send + Sync {
    fn on_change(&self, change: NativeFlagChange);
}

/// The level of a log message, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NativeLogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl NativeLogLevel {
    fn core(self) -> LogLevel {
        match self {
            NativeLogLevel::Error => LogLevel::Error,
            NativeLogLevel::Warn => LogLevel::Warn,
            NativeLogLevel::Info => LogLevel::Info,
            NativeLogLevel::Debug => LogLevel::Debug,
            NativeLogLevel::Trace => LogLevel::Trace,
        }
    }
}

impl From<LogLevel> for NativeLogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => NativeLogLevel::Error,
            LogLevel::Warn => NativeLogLevel::Warn,
            LogLevel::Info => NativeLogLevel::Info,
            LogLevel::Debug => NativeLogLevel::Debug,
            LogLevel::Trace => NativeLogLevel::Trace,
        }
    }
}

/// Receives the client's log messages, on the client's threads (or the caller's, while the
/// client is created and closed).
#[uniffi::export(callback_interface)]
pub trait NativeLogger: Send + Sync {
    fn log(&self, level: NativeLogLevel, message: String);
}

/// A [`NativeLogger`] as the core's sink, up to a level.
struct LoggerSink {
    logger: Box<dyn NativeLogger>,
    max_level: LogLevel,
}

impl LogSink for LoggerSink {
    fn enabled(&self, level: LogLevel) -> bool {
        level <= self.max_level
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logger.log(level.into(), message.to_owned());
    }
}

fn parse_default(default_json: &str) -> NativeResult<Value> {
    serde_json::from_str(default_json).map_err(|err| NativeError::InvalidOptions {
        message: format!("default: not JSON: {err}"),
    })
}

/// Flags and segments held in memory, standing in for the server in tests.
#[derive(Debug, Default, uniffi::Object)]
pub struct NativeTestData {
    data: vexil_core::TestData,
}

#[uniffi::export]
impl NativeTestData {
    #[uniffi::constructor]
    pub fn new() -> Arc<NativeTestData> {
        Arc::new(NativeTestData::default())
    }

    /// Adds or replaces a flag given as JSON in the export format.
    pub fn update_flag(&self, flag_json: String) -> NativeResult<()> {
        Ok(self
            .data
            .update_flag(parse_json_argument(&flag_json, "flag")?)?)
    }

    /// Makes flag `key` serve the JSON value `value_json` to every context.
    pub fn set_value(&self, key: String, value_json: String) -> NativeResult<()> {
        Ok(self
            .data
            .set_value(&key, parse_json_argument(&value_json, "value")?)?)
    }

    /// Adds or replaces a segment given as JSON in the export format.
    pub fn update_segment(&self, segment_json: String) -> NativeResult<()> {
        Ok(self
            .data
            .update_segment(parse_json_argument(&segment_json, "segment")?)?)
    }

    pub fn remove_flag(&self, key: String) -> bool {
        self.data.remove_flag(&key)
    }

    pub fn remove_segment(&self, key: String) -> bool {
        self.data.remove_segment(&key)
    }
}

fn parse_json_argument(text: &str, what: &str) -> NativeResult<Value> {
    serde_json::from_str(text).map_err(|err| {
        NativeError::from(Failure::new(
            ErrorCode::InvalidJson,
            format!("{what}: not JSON: {err}"),
        ))
    })
}

/// A client of sdk-core.
#[derive(Debug, uniffi::Object)]
pub struct NativeClient {
    client: Client,
}

#[uniffi::export]
impl NativeClient {
    /// Starts a client at once; never waits for the network.
    #[uniffi::constructor]
    pub fn new(options: NativeOptions) -> NativeResult<Arc<NativeClient>> {
        let client = Client::new(options.into_config()?)?;
        Ok(Arc::new(NativeClient { client }))
    }

    /// [`NativeClient::new`] for tests: the client serves `test_data` instead of the server's
    /// data (locally, ready at once, no network, no cache).
    #[uniffi::constructor]
    pub fn with_test_data(
        options: NativeOptions,
        test_data: &NativeTestData,
    ) -> NativeResult<Arc<NativeClient>> {
        let config = options.into_config()?.with_test_data(&test_data.data);
        let client = Client::new(config)?;
        Ok(Arc::new(NativeClient { client }))
    }

    /// [`NativeClient::new`], with the client's messages up to `max_level` handed to
    /// `logger`.
    #[uniffi::constructor]
    pub fn with_logger(
        options: NativeOptions,
        logger: Box<dyn NativeLogger>,
        max_level: NativeLogLevel,
    ) -> NativeResult<Arc<NativeClient>> {
        let sink = LoggerSink {
            logger,
            max_level: max_level.core(),
        };
        let config = options.into_config()?.with_log_sink(Arc::new(sink));
        let client = Client::new(config)?;
        Ok(Arc::new(NativeClient { client }))
    }

    pub fn status(&self) -> NativeResult<NativeStatus> {
        Ok(self.client.status().into())
    }

    /// This client's address, for the fast variation calls (see [`fast_bool_variation`]).
    pub fn address(&self) -> NativeResult<u64> {
        Ok(address_of(self))
    }

    pub fn is_remote(&self) -> NativeResult<bool> {
        Ok(self.client.mode() == vexil_core::Mode::Remote)
    }

    pub fn source(&self) -> NativeResult<NativeSource> {
        Ok(self.client.source().into())
    }

    pub fn version(&self) -> NativeResult<i64> {
        Ok(self.client.version())
    }

    pub fn bool_variation(
        &self,
        flag_key: String,
        context: &NativeContext,
        default_value: bool,
    ) -> NativeResult<bool> {
        Ok(match &context.parsed {
            Ok(parsed) => self.client.bool_variation(&flag_key, parsed, default_value),
            Err(_) => default_value,
        })
    }

    pub fn string_variation(
        &self,
        flag_key: String,
        context: &NativeContext,
        default_value: String,
    ) -> NativeResult<String> {
        Ok(match &context.parsed {
            Ok(parsed) => self
                .client
                .string_variation(&flag_key, parsed, &default_value),
            Err(_) => default_value,
        })
    }

    pub fn number_variation(
        &self,
        flag_key: String,
        context: &NativeContext,
        default_value: f64,
    ) -> NativeResult<f64> {
        Ok(match &context.parsed {
            Ok(parsed) => self
                .client
                .number_variation(&flag_key, parsed, default_value),
            Err(_) => default_value,
        })
    }

    /// Any flag's value as JSON; the default given as JSON.
    pub fn json_variation(
        &self,
        flag_key: String,
        context: &NativeContext,
        default_json: String,
    ) -> NativeResult<String> {
        let default = parse_default(&default_json)?;
        Ok(match &context.parsed {
            Ok(parsed) => self
                .client
                .json_variation(&flag_key, parsed, default)
                .to_string(),
            Err(_) => default_json,
        })
    }

    /// A variation of `kind` with its detail. An invalid context gives the default with the
    /// engine's reason (`INVALID_CONTEXT`, after the flag's own errors).
    pub fn variation_detail(
        &self,
        flag_key: String,
        context: &NativeContext,
        kind: NativeValueKind,
        default_json: String,
    ) -> NativeResult<NativeDetail> {
        let default = parse_default(&default_json)?;
        let detail = match &context.parsed {
            Ok(parsed) => self
                .client
                .variation_detail(&flag_key, parsed, kind.into(), &default),
            Err(_) => self
                .client
                .variation_detail(&flag_key, &context.json, kind.into(), &default),
        };
        Ok(NativeDetail::from_core(detail, |value| {
            Some(value.to_string())
        }))
    }

    /// Every flag's detail for a context (remote mode: the identified context's values).
    pub fn all_flags(
        &self,
        context: &NativeContext,
    ) -> NativeResult<HashMap<String, NativeDetail>> {
        let context = context.valid()?;
        Ok(self
            .client
            .all_flags(context)
            .into_iter()
            .map(|(key, detail)| {
                let detail = NativeDetail::from_core(detail, |value| value.map(|v| v.to_string()));
                (key, detail)
            })
            .collect())
    }

    /// Queues a metric event; returns at once.
    pub fn track(
        &self,
        event_name: String,
        context: &NativeContext,
        value: Option<f64>,
    ) -> NativeResult<()> {
        Ok(self.client.track(&event_name, context.valid()?, value)?)
    }

    /// Remote mode: switches to `context` and waits up to `timeout_ms` for its values.
    /// Blocks: the Swift side calls it off the caller's thread.
    pub fn identify(&self, context: &NativeContext, timeout_ms: u64) -> NativeResult<bool> {
        let context = context.valid()?.clone();
        Ok(self
            .client
            .identify(context, Duration::from_millis(timeout_ms)))
    }

    /// Sends pending events; waits up to `timeout_ms`. Blocks, like [`NativeClient::identify`].
    pub fn flush(&self, timeout_ms: u64) -> NativeResult<bool> {
        Ok(self.client.flush(Duration::from_millis(timeout_ms)))
    }

    pub fn event_stats(&self) -> NativeResult<NativeEventStats> {
        let stats = self.client.event_stats();
        Ok(NativeEventStats {
            dropped: stats.dropped,
            sent: stats.sent,
            failed_batches: stats.failed_batches,
            queued: stats.queued,
        })
    }

    pub fn add_change_listener(
        &self,
        listener: Box<dyn NativeChangeListener>,
    ) -> NativeResult<u64> {
        let id = self.client.on_change(move |change| {
            listener.on_change(NativeFlagChange {
                flag_keys: change.flag_keys.clone(),
                version: change.version,
            });
        });
        Ok(id.number())
    }

    pub fn remove_change_listener(&self, handle: u64) -> NativeResult<()> {
        self.client.remove_listener(ListenerId::from_number(handle));
        Ok(())
    }

    /// Flushes events (up to 5 s) and stops the background work. Blocks.
    pub fn close(&self) -> NativeResult<()> {
        self.client.close();
        Ok(())
    }

    /// For the benchmarks only: times `iterations` calls of `bool_variation` made in Rust with
    /// the same arguments, and returns the total in nanoseconds, so that the cost of the
    /// binding can be told apart from the engine's.
    pub fn benchmark_bool_variation(
        &self,
        flag_key: String,
        context: &NativeContext,
        iterations: u64,
    ) -> NativeResult<u64> {
        let context = context.valid()?;
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(self.client.bool_variation(
                std::hint::black_box(&flag_key),
                context,
                false,
            ));
        }
        Ok(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

// ----- fast variation calls ------------------------------------------------------------------
//
// A method call on a uniffi object clones the object's `Arc` on the Swift side (a call into
// the library) and drops it after, for the client and for the context, and a `String` argument
// is copied into a buffer the library allocates and frees: four atomic read-modify-writes (each
// costs tens of nanoseconds), a memory allocation and an extra call, which is several times
// the cost of the evaluation itself. The typed variations answering a primitive are the calls
// made on every screen and in loops, so they take this path instead: the Swift package passes
// the addresses of the client and context, and the flag key's UTF-8 bytes in place.
//
// The contract with the Swift package, which alone calls these (they are not part of its API):
// `client` and `context` come from `address()` of objects that the caller keeps alive for the
// duration of the call (`withExtendedLifetime`), and `flag_key_utf8`/`flag_key_len` point to
// `flag_key_len` bytes readable for the duration of the call (`String.withUTF8`). Evaluation
// never fails; a null address or a key that is not UTF-8 is reported as an error, and the
// Swift side answers the default, as for any other failure.

fn address_of<T>(object: &T) -> u64 {
    object as *const T as usize as u64
}

/// # Safety
/// See the contract above.
unsafe fn fast_call_arguments<'a>(
    client: u64,
    context: u64,
    flag_key_utf8: u64,
    flag_key_len: u64,
) -> NativeResult<(&'a NativeClient, &'a NativeContext, &'a str)> {
    let invalid = |message: &str| NativeError::InvalidOptions {
        message: message.to_owned(),
    };
    let client = client as usize as *const NativeClient;
    let context = context as usize as *const NativeContext;
    if client.is_null() || context.is_null() {
        return Err(invalid("client, context: null address"));
    }
    let len = usize::try_from(flag_key_len).map_err(|_| invalid("flagKey: too long"))?;
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        let data = flag_key_utf8 as usize as *const u8;
        if data.is_null() {
            return Err(invalid("flagKey: null address"));
        }
        // SAFETY: per the contract, `len` bytes are readable at `data` during the call.
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    let flag_key = std::str::from_utf8(bytes).map_err(|_| invalid("flagKey: not UTF-8"))?;
    // SAFETY: per the contract, both objects are alive (each inside its `Arc`) during the call.
    Ok(unsafe { (&*client, &*context, flag_key) })
}

/// `NativeClient::bool_variation` by addresses; the fast path of the Swift package (see the
/// contract above).
#[uniffi::export]
pub fn fast_bool_variation(
    client: u64,
    context: u64,
    flag_key_utf8: u64,
    flag_key_len: u64,
    default_value: bool,
) -> NativeResult<bool> {
    // SAFETY: the Swift package upholds the contract above.
    let (client, context, flag_key) =
        unsafe { fast_call_arguments(client, context, flag_key_utf8, flag_key_len) }?;
    Ok(match &context.parsed {
        Ok(parsed) => client
            .client
            .bool_variation(flag_key, parsed, default_value),
        Err(_) => default_value,
    })
}

/// `NativeClient::number_variation` by addresses (see [`fast_bool_variation`]).
#[uniffi::export]
pub fn fast_number_variation(
    client: u64,
    context: u64,
    flag_key_utf8: u64,
    flag_key_len: u64,
    default_value: f64,
) -> NativeResult<f64> {
    // SAFETY: the Swift package upholds the contract above.
    let (client, context, flag_key) =
        unsafe { fast_call_arguments(client, context, flag_key_utf8, flag_key_len) }?;
    Ok(match &context.parsed {
        Ok(parsed) => client
            .client
            .number_variation(flag_key, parsed, default_value),
        Err(_) => default_value,
    })
}

/// For the tests of the binding only: panics inside an exported function, so that the Swift
/// side can check that a panic arrives as an error and not as a crash.
#[uniffi::export]
pub fn debug_panic(message: String) -> NativeResult<()> {
    std::panic::panic_any(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(key: &str) -> NativeOptions {
        NativeOptions {
            sdk_key: key.into(),
            endpoint: None,
            cache_dir: None,
            bootstrap_file: None,
            offline: true,
            context: None,
            events_enabled: false,
            flush_interval_ms: None,
            event_capacity: None,
            private_attributes: Vec::new(),
            all_attributes_private: false,
            connect_timeout_ms: None,
            stream_timeout_ms: None,
            initial_backoff_ms: None,
            max_backoff_ms: None,
            max_cache_age_ms: None,
            sdk_name: "test".into(),
            sdk_version: "0".into(),
        }
    }

    #[test]
    fn invalid_context_is_kept_and_explained() {
        let context = NativeContext::from_json(r#"{"kind":"user","key":""}"#.into()).unwrap();
        let error = context.validation_error().unwrap().unwrap();
        assert!(error.starts_with("context: "), "{error}");
        let client = NativeClient::new(options("vxl-server-test")).unwrap();
        let detail = client
            .variation_detail("f".into(), &context, NativeValueKind::Bool, "true".into())
            .unwrap();
        assert_eq!(detail.value_json.as_deref(), Some("true"));
        assert!(matches!(detail.reason, NativeReason::Error { .. }));
        assert!(matches!(
            client.track("e".into(), &context, None),
            Err(NativeError::InvalidContext { .. })
        ));
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = NativeClient::new(options("nope")).unwrap_err().to_string();
        assert!(err.starts_with("options.sdkKey: "), "{err}");
        let mut bad = options("vxl-server-x");
        bad.flush_interval_ms = Some(0);
        let err = NativeClient::new(bad).unwrap_err().to_string();
        assert!(err.contains("options.events.flushIntervalMs"), "{err}");
    }

    #[test]
    fn fast_calls_read_addresses_and_keys_in_place() {
        let dir = std::env::temp_dir().join(format!("vexil-uniffi-fast-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ruleset = dir.join("ruleset.json");
        std::fs::write(
            &ruleset,
            r#"{"flags": [{"key": "on", "kind": "bool", "variations": [false, true], "on": true,
                "fallthrough": {"variation": 1}},
               {"key": "rate", "kind": "number", "variations": [0.5], "on": true,
                "fallthrough": {"variation": 0}}], "segments": []}"#,
        )
        .unwrap();
        let mut config = options("vxl-server-fast");
        config.bootstrap_file = Some(ruleset.to_string_lossy().into_owned());
        let client = NativeClient::new(config).unwrap();
        let context = NativeContext::from_json(r#"{"kind":"user","key":"a"}"#.into()).unwrap();
        let (c, x) = (client.address().unwrap(), context.address().unwrap());
        let call = |key: &str, default| {
            fast_bool_variation(
                c,
                x,
                key.as_ptr() as usize as u64,
                key.len() as u64,
                default,
            )
        };
        assert!(call("on", false).unwrap());
        assert!(!call("missing", false).unwrap());
        assert!(call("", true).unwrap());
        let rate = "rate";
        let value =
            fast_number_variation(c, x, rate.as_ptr() as usize as u64, rate.len() as u64, 1.0);
        assert_eq!(value.unwrap(), 0.5);
        // An invalid context answers the default, as through the object methods.
        let invalid = NativeContext::from_json(r#"{"kind":"user","key":""}"#.into()).unwrap();
        let key = "on";
        let answer = fast_bool_variation(
            c,
            invalid.address().unwrap(),
            key.as_ptr() as usize as u64,
            2,
            false,
        );
        assert!(!answer.unwrap());
        // Bad arguments are errors, not crashes.
        assert!(fast_bool_variation(0, x, key.as_ptr() as usize as u64, 2, false).is_err());
        let not_utf8 = [0xffu8, 0xfe];
        let answer = fast_bool_variation(c, x, not_utf8.as_ptr() as usize as u64, 2, false);
        assert!(
            matches!(answer, Err(NativeError::InvalidOptions { message }) if message.contains("flagKey"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_json_context() {
        let context = NativeContext::from_json("{".into()).unwrap();
        assert!(
            context
                .validation_error()
                .unwrap()
                .unwrap()
                .contains("not JSON")
        );
    }
}
