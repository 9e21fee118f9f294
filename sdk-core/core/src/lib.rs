//! Vexil's SDK core, and the Rust SDK: a [`Client`] built from an SDK key that keeps flag
//! data current in the background and answers variation calls at once, from memory.
//!
//! * **Local evaluation** (server keys, `vxl-server-…`): the environment's ruleset arrives
//!   over `SyncService.Sync` (a snapshot, then patches; a reconnection resumes from the version
//!   held) and every flag is evaluated in process by the same engine as the server's.
//! * **Remote evaluation** (client and mobile keys): the server evaluates for the identified
//!   context and streams the values over `EvaluationService.Watch`; rules never reach the
//!   device. [`Client::identify`] changes the context.
//!
//! Evaluation never blocks and never fails: before any data arrives, or for an unknown flag
//! or a wrong type, it returns the caller's default with a reason saying why, and every
//! `…_detail` call says where the data came from ([`Source`]). The last good data is kept in
//! a cache file (when a cache directory is set) and loaded at the next start, so an
//! application starts with flags even when the server cannot be reached.
//!
//! ```no_run
//! use vexil_core::{Client, Config, Context, SingleContext};
//!
//! let client = Client::new(Config::new("vxl-server-…").with_cache_dir("/var/cache/my-app"))?;
//! client.wait_for_initialization(std::time::Duration::from_secs(5));
//! let alice = Context::from(SingleContext::new("user", "alice")?);
//! if client.bool_variation("new-checkout", &alice, false) {
//!     // …
//! }
//! client.track("checkout-completed", &alice, Some(42.0))?;
//! client.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The calls that wait have `async` forms ([`Client::wait_for_initialization_async`],
//! [`Client::identify_async`], [`Client::flush_async`]) that run on any executor, the
//! waiting done on the client's own runtime, and callback forms (`when_…`) the bindings turn
//! into their languages' futures.
//!
//! An application's tests use [`TestData`] instead of a server: flags held in memory that the
//! test changes one at a time, each change reaching the clients made on it at once
//! ([`Config::with_test_data`]).
//!
//! # The surface every language binds to
//!
//! This crate is the only one the language bindings (C ABI, uniffi, pyo3, napi, JNI) wrap:
//! everything they need is here. Contexts come built ([`Context`]) or as JSON
//! ([`ContextRef`]); results have one JSON form ([`Detail`], [`ClientState`]); options have
//! one JSON form ([`Options`]); and every failure of a call carries a code from one table
//! ([`ErrorCode`]) that each binding maps to its language, with [`guard`] turning a panic
//! into an `INTERNAL` failure at the boundary. A binding hands the client's log messages to
//! its language's logging with a [`LogSink`] ([`Config::with_log_sink`]); a Rust application
//! sees them through its own `tracing` subscriber.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod answer;
pub mod arguments;
mod config;
mod data;
mod error;
mod events;
mod held;
mod inner;
mod listeners;
pub mod logging;
mod network;
mod options;
mod summaries;
mod test_data;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use answer::{ClientState, Detail, FlagChange, ListenerId, Mode, Status, Unevaluated};
pub use config::{Config, EventConfig};
pub use data::Source;
pub use error::{Error, ErrorCategory, ErrorCode, Failure, guard, panic_message};
pub use events::EventStats;
pub use listeners::in_listener;
pub use logging::{LogLevel, LogSink};
pub use options::{EventOptions, Options};
pub use test_data::TestData;
pub use vexil_engine::{
    Context, ContextError, ErrorKind, Reason, Redaction, SingleContext, ValueKind,
};

use data::Data;
use events::{Event, EventQueue};
use held::SharedData;
use inner::{Inner, Recording, initial_data, lock};
use listeners::Listeners;

/// A context as a caller holds it: built and validated once ([`Context`], the fast form for
/// contexts used again), or its canonical JSON, read by the call itself. Variation calls
/// take either (`&context` or `&json`); a JSON context that is not valid is not a failure
/// there but an answer: the default, with an `ERROR`/`INVALID_CONTEXT` reason.
#[derive(Debug, Clone, Copy)]
pub enum ContextRef<'a> {
    Built(&'a Context),
    Json(&'a Value),
}

impl<'a> From<&'a Context> for ContextRef<'a> {
    #[inline]
    fn from(context: &'a Context) -> ContextRef<'a> {
        ContextRef::Built(context)
    }
}

impl<'a> From<&'a Value> for ContextRef<'a> {
    #[inline]
    fn from(json: &'a Value) -> ContextRef<'a> {
        ContextRef::Json(json)
    }
}

impl<'a> ContextRef<'a> {
    /// The context, for calls that need a valid one (identify, track, all flags): a JSON
    /// context that is not valid fails with `INVALID_CONTEXT` naming `context`.
    pub fn require(self) -> Result<Cow<'a, Context>, Failure> {
        match self {
            ContextRef::Built(context) => Ok(Cow::Borrowed(context)),
            ContextRef::Json(json) => context_from_json(json, "context").map(Cow::Owned),
        }
    }
}

/// A context from its canonical JSON, or `INVALID_CONTEXT` naming `field` and the problem.
pub fn context_from_json(json: &Value, field: &str) -> Result<Context, Failure> {
    Context::from_json(json)
        .map_err(|err| Failure::new(ErrorCode::InvalidContext, format!("{field}: {err}")))
}

/// Blocks SIGPIPE on the calling thread (each of the client's own threads), so that a write
/// to a connection the server has closed fails with `EPIPE` rather than raising the signal,
/// whose default action ends the process. Rust programs ignore SIGPIPE from `main`, but the
/// hosts of the language SDKs do not for threads they did not start (a Go program is killed
/// by one raised on a non-Go thread).
#[cfg(unix)]
fn block_sigpipe() {
    // SAFETY: the set is initialised by `sigemptyset` before use, and `pthread_sigmask`
    // changes the signal mask of this thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A Vexil client: see the crate documentation. Cheap to share (`Arc`) across threads;
/// every method takes `&self`.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Routes the client's log messages to its [`Config::log_sink`], when it has one.
    log: Option<tracing::Dispatch>,
}

/// Runs `f` with the client's log messages routed to `log` (when set) on this thread.
fn logged<T>(log: Option<&tracing::Dispatch>, f: impl FnOnce() -> T) -> T {
    match log {
        Some(log) => tracing::dispatcher::with_default(log, f),
        None => f(),
    }
}

impl Client {
    /// Creates a client and starts its background work (streaming, events) at once. Never
    /// waits for the network: see [`Client::wait_for_initialization`]. Fails on a key of no
    /// known kind, a bad endpoint, or settings [`Config::check`] refuses.
    pub fn new(config: Config) -> Result<Client, Error> {
        let log = config.log_sink.clone().map(logging::dispatch);
        logged(log.as_ref(), || Client::start(config, log.clone()))
    }

    fn start(mut config: Config, log: Option<tracing::Dispatch>) -> Result<Client, Error> {
        let test_data = config.test_data.clone();
        if test_data.is_some() {
            // The test's data stands in for the server: nothing goes out, nothing is cached.
            config.offline = true;
            config.cache_dir = None;
        }
        let mode = if test_data.is_some() {
            // Only the key's form is checked: the test's data is evaluated here.
            if !["vxl-server-", "vxl-client-", "vxl-mobile-"]
                .iter()
                .any(|kind| config.sdk_key.starts_with(kind))
            {
                return Err(Error::InvalidKey);
            }
            Mode::Local
        } else if config.sdk_key.starts_with("vxl-server-") {
            Mode::Local
        } else if config.sdk_key.starts_with("vxl-client-")
            || config.sdk_key.starts_with("vxl-mobile-")
        {
            Mode::Remote
        } else {
            return Err(Error::InvalidKey);
        };
        config.check().map_err(Error::InvalidOptions)?;
        let endpoint = network::endpoint(&config)?;
        let cache_path = config
            .cache_dir
            .as_deref()
            .map(|dir| data::cache_path(dir, &config.sdk_key));
        let initial = match &test_data {
            Some(test_data) => test_data.current(),
            None => initial_data(&config, mode, cache_path.as_deref()),
        };
        let (closing, _) = watch::channel(false);
        let (identified, _) = watch::channel(config.initial_context.clone());
        let (flush_requests, flush_rx) = mpsc::unbounded_channel();
        let status = if test_data.is_some() {
            Status::Ready
        } else if config.offline {
            Status::Offline
        } else {
            Status::Initializing
        };
        let inner = Arc::new(Inner {
            mode,
            data: SharedData::new(initial),
            // A test's data is current by definition.
            connected: AtomicBool::new(test_data.is_some()),
            status: Mutex::new(status.clone()),
            status_changed: Condvar::new(),
            listeners: Listeners::default(),
            events: Arc::new(EventQueue::new(config.events.clone())),
            recording: match (config.events.enabled, config.events.summaries) {
                (false, _) => Recording::Nothing,
                (true, false) => Recording::Exposures,
                (true, true) => Recording::Summaries,
            },
            cache_path,
            closing,
            identified,
            flush_requests,
            status_watch: watch::channel(status.clone()).0,
            config,
        });
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime
            .worker_threads(1)
            .thread_name("vexil-client")
            .enable_all();
        let thread_log = log.clone();
        runtime.on_thread_start(move || {
            #[cfg(unix)]
            block_sigpipe();
            if let Some(log) = &thread_log {
                // For the thread's whole life: the guard would restore the previous default
                // (none) when the thread ends anyway.
                std::mem::forget(tracing::dispatcher::set_default(log));
            }
        });
        let runtime = runtime.build()?;
        if let Some(test_data) = &test_data {
            test_data.attach(&inner, runtime.handle().clone());
        }
        if !inner.config.offline {
            let channel = {
                let _entered = runtime.enter();
                endpoint.connect_lazy()
            };
            runtime.spawn(network::data_loop(inner.clone(), channel.clone(), mode));
            if inner.events.enabled() {
                runtime.spawn(network::events_loop(inner.clone(), channel, flush_rx));
            }
        }
        Ok(Client {
            inner,
            runtime: Mutex::new(Some(runtime)),
            log,
        })
    }

    /// How this client evaluates (decided by its key).
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The client's status now.
    pub fn status(&self) -> Status {
        lock(&self.inner.status).clone()
    }

    /// Everything about where the client stands, read at once.
    pub fn state(&self) -> ClientState {
        let status = self.status();
        ClientState {
            reason: status.reason().map(str::to_owned),
            status,
            mode: self.mode(),
            source: self.source(),
            version: self.version(),
            events: self.event_stats(),
        }
    }

    /// Waits until the first data from the server arrives, the key is refused, or `timeout`
    /// passes; returns the status then. Cached and bootstrap data are served meanwhile.
    pub fn wait_for_initialization(&self, timeout: Duration) -> Status {
        let deadline = Instant::now() + timeout;
        let mut status = lock(&self.inner.status);
        while *status == Status::Initializing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            status = match self.inner.status_changed.wait_timeout(status, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        status.clone()
    }

    /// The environment version of the data held (0 when none).
    pub fn version(&self) -> i64 {
        self.inner.data.load().version()
    }

    /// Where the data being served comes from now.
    pub fn source(&self) -> Source {
        self.inner.source(&self.inner.data.load())
    }

    /// A boolean flag's value for `context` (a [`Context`] or its JSON), or `default` when
    /// the flag is unknown, of another type, or there is no data yet.
    #[inline]
    pub fn bool_variation<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: bool,
    ) -> bool {
        match context.into() {
            ContextRef::Built(context) => self.bool_for(flag_key, context, default),
            ContextRef::Json(json) => with_json_context(json, default, |context| {
                self.bool_for(flag_key, context, default)
            }),
        }
    }

    /// A string flag's value; see [`Client::bool_variation`].
    #[inline]
    pub fn string_variation<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: &str,
    ) -> String {
        match context.into() {
            ContextRef::Built(context) => self.string_for(flag_key, context, default),
            ContextRef::Json(json) => with_json_context(json, default.to_owned(), |context| {
                self.string_for(flag_key, context, default)
            }),
        }
    }

    /// A number flag's value; see [`Client::bool_variation`].
    #[inline]
    pub fn number_variation<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: f64,
    ) -> f64 {
        match context.into() {
            ContextRef::Built(context) => self.number_for(flag_key, context, default),
            ContextRef::Json(json) => with_json_context(json, default, |context| {
                self.number_for(flag_key, context, default)
            }),
        }
    }

    /// Any flag's value as JSON (no type check); see [`Client::bool_variation`].
    #[inline]
    pub fn json_variation<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: Value,
    ) -> Value {
        match context.into() {
            ContextRef::Built(context) => self.json_for(flag_key, context, default),
            ContextRef::Json(json) => match Context::from_json(json) {
                Ok(context) => self.json_for(flag_key, &context, default),
                Err(_) => default,
            },
        }
    }

    // The typed calls' bodies: not generic, so that they are compiled once, here, whatever
    // the caller's context type.

    fn bool_for(&self, flag_key: &str, context: &Context, default: bool) -> bool {
        self.inner
            .serve(flag_key, context, ValueKind::Bool, move |value| {
                value.and_then(Value::as_bool).unwrap_or(default)
            })
    }

    fn string_for(&self, flag_key: &str, context: &Context, default: &str) -> String {
        self.inner
            .serve(flag_key, context, ValueKind::String, move |value| {
                value.and_then(Value::as_str).unwrap_or(default).to_owned()
            })
    }

    fn number_for(&self, flag_key: &str, context: &Context, default: f64) -> f64 {
        self.inner
            .serve(flag_key, context, ValueKind::Number, move |value| {
                value.and_then(Value::as_f64).unwrap_or(default)
            })
    }

    fn json_for(&self, flag_key: &str, context: &Context, default: Value) -> Value {
        self.inner
            .serve(flag_key, context, ValueKind::Json, move |value| {
                value.cloned().unwrap_or(default)
            })
    }

    pub fn bool_variation_detail<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: bool,
    ) -> Detail<bool> {
        self.detail(flag_key, context.into(), ValueKind::Bool, |v| {
            v.and_then(Value::as_bool).unwrap_or(default)
        })
    }

    pub fn string_variation_detail<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: &str,
    ) -> Detail<String> {
        self.detail(flag_key, context.into(), ValueKind::String, |v| {
            v.and_then(Value::as_str).unwrap_or(default).to_owned()
        })
    }

    pub fn number_variation_detail<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: f64,
    ) -> Detail<f64> {
        self.detail(flag_key, context.into(), ValueKind::Number, |v| {
            v.and_then(Value::as_f64).unwrap_or(default)
        })
    }

    pub fn json_variation_detail<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        default: Value,
    ) -> Detail<Value> {
        self.detail(flag_key, context.into(), ValueKind::Json, |v| {
            v.cloned().unwrap_or(default)
        })
    }

    /// A variation of the type `kind` with its detail, the default given as JSON: the call
    /// for bindings that hold values as JSON. A JSON context that is not valid gives the
    /// default with an `ERROR`/`INVALID_CONTEXT` reason, after the flag's own errors (not
    /// found, malformed, wrong type), in the engine's order.
    pub fn variation_detail<'c>(
        &self,
        flag_key: &str,
        context: impl Into<ContextRef<'c>>,
        kind: ValueKind,
        default: &Value,
    ) -> Detail<Value> {
        self.detail(flag_key, context.into(), kind, |v| {
            v.cloned().unwrap_or_else(|| default.clone())
        })
    }

    fn detail<T>(
        &self,
        flag_key: &str,
        context: ContextRef<'_>,
        kind: ValueKind,
        value: impl FnOnce(Option<&Value>) -> T,
    ) -> Detail<T> {
        let context = match context {
            ContextRef::Built(context) => Cow::Borrowed(context),
            ContextRef::Json(json) => match Context::from_json(json) {
                Ok(context) => Cow::Owned(context),
                Err(_) => {
                    return self
                        .inner
                        .invalid_context(flag_key, json, kind)
                        .map(|()| value(None));
                }
            },
        };
        self.inner
            .evaluate(flag_key, &context, kind, |served, info| Detail {
                value: value(served),
                variation: info.variation,
                reason: info.reason.to_owned_reason(),
                in_experiment: info.in_experiment,
                experiment_key: info.experiment_key.map(str::to_owned),
                flag_version: info.flag_version,
                source: info.source,
                version: info.version,
            })
    }

    /// Every flag's value for a context (remote mode: for the identified context), with
    /// details; flags that cannot be served have `None`.
    pub fn all_flags(&self, context: &Context) -> BTreeMap<String, Detail<Option<Value>>> {
        let data = self.inner.data.load();
        let source = self.inner.source(&data);
        let version = data.version();
        let mut out = BTreeMap::new();
        match &**data {
            Data::Empty => {}
            Data::Ruleset { ruleset, .. } => {
                for (key, e) in ruleset.evaluate_all(context) {
                    out.insert(
                        key.to_owned(),
                        Detail {
                            value: e.value.cloned(),
                            variation: e.variation,
                            reason: e.reason.to_owned_reason(),
                            in_experiment: e.in_experiment,
                            experiment_key: e.experiment_key.map(str::to_owned),
                            flag_version: i64::try_from(e.flag_version).unwrap_or(i64::MAX),
                            source,
                            version,
                        },
                    );
                }
            }
            Data::Values { values, .. } => {
                for (key, v) in values {
                    out.insert(
                        key.clone(),
                        Detail {
                            value: v.value.clone(),
                            variation: v.variation,
                            reason: v.reason.clone(),
                            in_experiment: v.in_experiment,
                            experiment_key: v.experiment_key.clone(),
                            flag_version: v.flag_version,
                            source,
                            version,
                        },
                    );
                }
            }
        }
        out
    }

    /// Records a metric event for a context, with an optional value. Returns at once: the
    /// event is queued and sent in the background. Fails with `INVALID_ARGUMENT` for an
    /// empty name or a value that is not a finite number.
    pub fn track(
        &self,
        event_name: &str,
        context: &Context,
        value: Option<f64>,
    ) -> Result<(), Failure> {
        if event_name.is_empty() {
            return Err(Failure::invalid_argument("event_name", "must not be empty"));
        }
        if let Some(value) = value.filter(|v| !v.is_finite()) {
            return Err(Failure::invalid_argument(
                "value",
                format!("expected a finite number, got {value}"),
            ));
        }
        self.inner.events.push(Event::Track {
            time: data::now_millis(),
            name: event_name.to_owned(),
            context: context.clone(),
            value,
        });
        Ok(())
    }

    /// Remote mode: evaluates for `context` from now on, and waits up to `timeout` for its
    /// values (the previous context's values are served meanwhile). Returns whether they
    /// arrived. Local mode evaluates every context given to each call, so this only stores
    /// the context.
    pub fn identify(&self, context: Context, timeout: Duration) -> bool {
        let wanted = context.to_json();
        self.inner.identified.send_replace(Some(context));
        if self.inner.mode == Mode::Local || self.inner.config.offline {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Data::Values { context, .. } = &**self.inner.data.load()
                && *context == wanted
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Calls `listener` on the client's background thread after every change of flag data,
    /// one change at a time; while it runs the client receives no further data, so it should
    /// return quickly. A panic in it is caught and reported.
    pub fn on_change(&self, listener: impl Fn(&FlagChange) + Send + Sync + 'static) -> ListenerId {
        self.inner.listeners.add(Box::new(listener))
    }

    /// Unregisters a listener; returns whether it was registered. When it returns, the
    /// listener is not running and will not be called again, so what it refers to may be
    /// released (called from inside a listener, it cannot wait for that listener itself:
    /// see [`in_listener`]).
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.inner.listeners.remove(id)
    }

    /// How many listeners are registered.
    pub fn listener_count(&self) -> usize {
        self.inner.listeners.count()
    }

    /// Writes the data held now as the cache file of this key in `dir` (the same file a
    /// client with that cache directory keeps), for instance to ship a warm cache.
    pub fn write_cache_to(&self, dir: &std::path::Path) -> std::io::Result<()> {
        data::save(
            &data::cache_path(dir, &self.inner.config.sdk_key),
            &self.inner.data.load(),
        )
    }

    /// Counters of the event pipeline.
    pub fn event_stats(&self) -> EventStats {
        self.inner.events.stats()
    }

    /// Sends every pending event now; waits up to `timeout`. Returns whether everything was
    /// delivered.
    pub fn flush(&self, timeout: Duration) -> bool {
        if self.inner.config.offline || !self.inner.events.enabled() {
            return true;
        }
        let (reply, done) = std::sync::mpsc::channel();
        let reply: inner::FlushReply = Box::new(move |delivered| {
            let _ = reply.send(delivered);
        });
        if self.inner.flush_requests.send(reply).is_err() {
            return false;
        }
        done.recv_timeout(timeout).unwrap_or(false)
    }

    // ----- waits that block no thread -------------------------------------------------------

    /// The client's runtime, unless it is closed.
    fn runtime_handle(&self) -> Option<tokio::runtime::Handle> {
        lock(&self.runtime).as_ref().map(|r| r.handle().clone())
    }

    /// [`Client::wait_for_initialization`] without blocking a thread: `done` is called once
    /// with the status when the first data arrives, the key is refused, or `timeout` passes,
    /// on the client's own thread (at once, on the caller's, when there is nothing to wait
    /// for; with `Closed` if the client closes first). The form bindings build their
    /// languages' futures on.
    pub fn when_initialized(&self, timeout: Duration, done: impl FnOnce(Status) + Send + 'static) {
        let current = self.status();
        let Some(runtime) = self
            .runtime_handle()
            .filter(|_| current == Status::Initializing)
        else {
            return done(current);
        };
        let answer = Answer::new(done, Status::Closed);
        let mut changes = self.inner.status_watch.subscribe();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(
                timeout,
                changes.wait_for(|status| *status != Status::Initializing),
            )
            .await;
            let status = changes.borrow().clone();
            answer.give(status);
        });
    }

    /// [`Client::flush`] without blocking a thread: `done` is told once whether everything
    /// was delivered within `timeout` (false if the client closes first), as
    /// [`Client::when_initialized`] is.
    pub fn when_flushed(&self, timeout: Duration, done: impl FnOnce(bool) + Send + 'static) {
        if self.inner.config.offline || !self.inner.events.enabled() {
            return done(true);
        }
        let Some(runtime) = self.runtime_handle() else {
            return done(false);
        };
        // Whichever comes first, the flush's answer or the timeout, answers; the last of the
        // two dropped (the client closing) answers false.
        let answer = Arc::new(Mutex::new(Some(Answer::new(done, false))));
        let give = |answer: &Mutex<Option<Answer<bool>>>, delivered: bool| {
            if let Some(answer) = lock(answer).take() {
                answer.give(delivered);
            }
        };
        let on_flush = answer.clone();
        let reply: inner::FlushReply = Box::new(move |delivered| give(&on_flush, delivered));
        if self.inner.flush_requests.send(reply).is_err() {
            return give(&answer, false);
        }
        runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            give(&answer, false);
        });
    }

    /// [`Client::identify`] without blocking a thread: `done` is told once whether the
    /// values of `context` arrived within `timeout` (false if the client closes first), as
    /// [`Client::when_initialized`] is.
    pub fn when_identified(
        &self,
        context: Context,
        timeout: Duration,
        done: impl FnOnce(bool) + Send + 'static,
    ) {
        let wanted = context.to_json();
        self.inner.identified.send_replace(Some(context));
        if self.inner.mode == Mode::Local || self.inner.config.offline {
            return done(true);
        }
        let Some(runtime) = self.runtime_handle() else {
            return done(false);
        };
        let answer = Answer::new(done, false);
        let inner = self.inner.clone();
        runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if let Data::Values { context, .. } = &**inner.data.load()
                    && *context == wanted
                {
                    return answer.give(true);
                }
                if tokio::time::Instant::now() >= deadline {
                    return answer.give(false);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    /// [`Client::wait_for_initialization`] as a future, for any executor: the waiting
    /// happens on the client's own runtime, and no thread of the caller's is blocked.
    pub async fn wait_for_initialization_async(&self, timeout: Duration) -> Status {
        let (sender, answer) = tokio::sync::oneshot::channel();
        self.when_initialized(timeout, move |status| {
            let _ = sender.send(status);
        });
        answer.await.unwrap_or_else(|_| self.status())
    }

    /// [`Client::flush`] as a future, for any executor (see
    /// [`Client::wait_for_initialization_async`]).
    pub async fn flush_async(&self, timeout: Duration) -> bool {
        let (sender, answer) = tokio::sync::oneshot::channel();
        self.when_flushed(timeout, move |delivered| {
            let _ = sender.send(delivered);
        });
        answer.await.unwrap_or(false)
    }

    /// [`Client::identify`] as a future, for any executor (see
    /// [`Client::wait_for_initialization_async`]).
    pub async fn identify_async(&self, context: Context, timeout: Duration) -> bool {
        let (sender, answer) = tokio::sync::oneshot::channel();
        self.when_identified(context, timeout, move |arrived| {
            let _ = sender.send(arrived);
        });
        answer.await.unwrap_or(false)
    }

    /// Flushes events (up to 5 s), stops the background work, releases its thread and
    /// unregisters every listener. Variation calls keep answering from the last data.
    /// Calling it again does nothing.
    pub fn close(&self) {
        logged(self.log.as_ref(), || self.close_logged());
    }

    fn close_logged(&self) {
        self.inner.listeners.clear();
        let Some(runtime) = lock(&self.runtime).take() else {
            return;
        };
        self.flush(Duration::from_secs(5));
        self.inner.closing.send_replace(true);
        self.inner.set_status(Status::Closed);
        // Not `shutdown_timeout`: it must not panic when called from async code.
        runtime.shutdown_background();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// The answer of a wait that runs on the client's runtime: its function is called exactly
/// once, with the answer, or with `fallback` when the wait is dropped unanswered (the
/// client's runtime shut down under it), so that no caller waits forever.
struct Answer<T> {
    done: Option<Box<dyn FnOnce(T) + Send>>,
    fallback: Option<T>,
}

impl<T> Answer<T> {
    fn new(done: impl FnOnce(T) + Send + 'static, fallback: T) -> Answer<T> {
        Answer {
            done: Some(Box::new(done)),
            fallback: Some(fallback),
        }
    }

    fn give(mut self, value: T) {
        if let Some(done) = self.done.take() {
            done(value);
        }
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        if let (Some(done), Some(fallback)) = (self.done.take(), self.fallback.take()) {
            done(fallback);
        }
    }
}

/// Evaluates with a context given as JSON: `f` with the context when it is valid, else
/// `default` (an invalid context is answered with the default, never evaluated).
#[cold]
fn with_json_context<R>(json: &Value, default: R, f: impl FnOnce(&Context) -> R) -> R {
    match Context::from_json(json) {
        Ok(context) => f(&context),
        Err(_) => default,
    }
}

#[cfg(all(test, unix))]
mod tests {
    /// Whether SIGPIPE is in the calling thread's signal mask.
    fn sigpipe_blocked() -> bool {
        // SAFETY: reads this thread's mask into a set initialised by `sigemptyset`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            libc::sigismember(&set, libc::SIGPIPE) == 1
        }
    }

    #[test]
    fn client_threads_block_sigpipe() {
        std::thread::spawn(|| {
            assert!(!sigpipe_blocked(), "a new thread starts without the mask");
            super::block_sigpipe();
            assert!(sigpipe_blocked());
        })
        .join()
        .unwrap();
    }
}
