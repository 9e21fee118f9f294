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
//! use vexil_core::{Client, Config};
//! use vexil_engine::{Context, SingleContext};
//!
//! let client = Client::new(Config::new("vxl-server-…").with_cache_dir("/var/cache/my-app"))?;
//! client.wait_for_initialization(std::time::Duration::from_secs(5));
//! let alice = Context::from(SingleContext::new("user", "alice")?);
//! if client.bool_variation("new-checkout", &alice, false) {
//!     // …
//! }
//! client.track("checkout-completed", &alice, Some(42.0));
//! client.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod data;
mod events;
mod held;
mod network;

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use vexil_engine::{ErrorKind, Reason, ValueKind};

pub use config::{Config, EventConfig};
pub use data::Source;
pub use events::EventStats;
pub use vexil_engine::{Context, SingleContext};

use data::{Cached, Data, RemoteValue};
use events::{Event, EventQueue};
use held::SharedData;

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

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the SDK key must start with vxl-server-, vxl-client- or vxl-mobile-")]
    InvalidKey,
    #[error("invalid endpoint {endpoint:?}: {message}")]
    InvalidEndpoint { endpoint: String, message: String },
    #[error("cannot start the client's background runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// How a client evaluates, decided by its SDK key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Server keys: the ruleset is synced and evaluated in process.
    Local,
    /// Client and mobile keys: values are evaluated by the server for the identified context.
    Remote,
}

/// Where a client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the first data from the server (cached or bootstrap data, if any, is
    /// served meanwhile).
    Initializing,
    /// Connected, with current data.
    Ready,
    /// The connection is lost or the data is older than the maximum age: the last good
    /// data is served. Reconnection goes on in the background.
    Stale { reason: String },
    /// Offline mode: no network; cache, bootstrap or defaults.
    Offline,
    /// The server refused the SDK key: no retry.
    Failed { reason: String },
    /// [`Client::close`] was called.
    Closed,
}

/// The result of a variation call with everything known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail<T> {
    pub value: T,
    /// The variation served; `None` when the default was returned.
    pub variation: Option<usize>,
    pub reason: Reason<String>,
    pub in_experiment: bool,
    pub experiment_key: Option<String>,
    /// The flag's version (0 when unknown).
    pub flag_version: i64,
    /// Where the data came from.
    pub source: Source,
    /// The environment version of the data (0 when none).
    pub version: i64,
}

/// A change of flag data seen by a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    /// Flags whose definition or value may have changed, in key order.
    pub flag_keys: Vec<String>,
    /// The environment version after the change.
    pub version: i64,
}

/// Identifies a listener for [`Client::remove_listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

type Listener = Arc<dyn Fn(&FlagChange) + Send + Sync>;

/// Shared state of a client and its background tasks.
pub(crate) struct Inner {
    config: Config,
    mode: Mode,
    data: SharedData,
    /// Whether the stream is up: data from the network is reported stale otherwise.
    connected: AtomicBool,
    status: Mutex<Status>,
    status_changed: Condvar,
    listeners: RwLock<Vec<(u64, Listener)>>,
    next_listener: AtomicU64,
    events: Arc<EventQueue>,
    /// What variation calls record, from `config.events`; read here on every call, next to
    /// the data, instead of through `events`.
    recording: Recording,
    cache_path: Option<PathBuf>,
    closing: watch::Sender<bool>,
    /// The identified context (remote mode).
    identified: watch::Sender<Option<Context>>,
    flush_requests: mpsc::UnboundedSender<std::sync::mpsc::Sender<bool>>,
}

/// What a variation call records (see [`EventConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recording {
    /// Events are off.
    Nothing,
    /// Exposures only: summaries are off.
    Exposures,
    /// Exposures and evaluation counts.
    Summaries,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("mode", &self.mode)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A Vexil client: see the crate documentation. Cheap to share (`Arc`) across threads;
/// every method takes `&self`.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Client {
    /// Creates a client and starts its background work (streaming, events) at once. Never
    /// waits for the network: see [`Client::wait_for_initialization`].
    pub fn new(config: Config) -> Result<Client, Error> {
        let mode = if config.sdk_key.starts_with("vxl-server-") {
            Mode::Local
        } else if config.sdk_key.starts_with("vxl-client-")
            || config.sdk_key.starts_with("vxl-mobile-")
        {
            Mode::Remote
        } else {
            return Err(Error::InvalidKey);
        };
        let endpoint = network::endpoint(&config)?;
        let cache_path = config
            .cache_dir
            .as_deref()
            .map(|dir| data::cache_path(dir, &config.sdk_key));
        let initial = initial_data(&config, mode, cache_path.as_deref());
        let (closing, _) = watch::channel(false);
        let (identified, _) = watch::channel(config.initial_context.clone());
        let (flush_requests, flush_rx) = mpsc::unbounded_channel();
        let status = if config.offline {
            Status::Offline
        } else {
            Status::Initializing
        };
        let inner = Arc::new(Inner {
            mode,
            data: SharedData::new(initial),
            connected: AtomicBool::new(false),
            status: Mutex::new(status),
            status_changed: Condvar::new(),
            listeners: RwLock::new(Vec::new()),
            next_listener: AtomicU64::new(1),
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
            config,
        });
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime
            .worker_threads(1)
            .thread_name("vexil-client")
            .enable_all();
        #[cfg(unix)]
        runtime.on_thread_start(block_sigpipe);
        let runtime = runtime.build()?;
        if !inner.config.offline {
            let channel = {
                let _entered = runtime.enter();
                endpoint.connect_lazy()
            };
            match mode {
                Mode::Local => {
                    runtime.spawn(network::sync_loop(inner.clone(), channel.clone()));
                }
                Mode::Remote => {
                    runtime.spawn(network::watch_loop(inner.clone(), channel.clone()));
                }
            }
            if inner.events.enabled() {
                runtime.spawn(network::events_loop(inner.clone(), channel, flush_rx));
            }
        }
        Ok(Client {
            inner,
            runtime: Mutex::new(Some(runtime)),
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

    pub fn bool_variation(&self, flag_key: &str, context: &Context, default: bool) -> bool {
        self.inner
            .serve(flag_key, context, ValueKind::Bool, move |value| {
                value.and_then(Value::as_bool).unwrap_or(default)
            })
    }

    pub fn string_variation(&self, flag_key: &str, context: &Context, default: &str) -> String {
        self.inner
            .serve(flag_key, context, ValueKind::String, move |value| {
                value.and_then(Value::as_str).unwrap_or(default).to_owned()
            })
    }

    pub fn number_variation(&self, flag_key: &str, context: &Context, default: f64) -> f64 {
        self.inner
            .serve(flag_key, context, ValueKind::Number, move |value| {
                value.and_then(Value::as_f64).unwrap_or(default)
            })
    }

    /// Any flag's value as JSON (no type check).
    pub fn json_variation(&self, flag_key: &str, context: &Context, default: Value) -> Value {
        self.inner
            .serve(flag_key, context, ValueKind::Json, move |value| {
                value.cloned().unwrap_or(default)
            })
    }

    pub fn bool_variation_detail(
        &self,
        flag_key: &str,
        context: &Context,
        default: bool,
    ) -> Detail<bool> {
        self.detail(flag_key, context, ValueKind::Bool, |v| {
            v.and_then(Value::as_bool).unwrap_or(default)
        })
    }

    pub fn string_variation_detail(
        &self,
        flag_key: &str,
        context: &Context,
        default: &str,
    ) -> Detail<String> {
        self.detail(flag_key, context, ValueKind::String, |v| {
            v.and_then(Value::as_str).unwrap_or(default).to_owned()
        })
    }

    pub fn number_variation_detail(
        &self,
        flag_key: &str,
        context: &Context,
        default: f64,
    ) -> Detail<f64> {
        self.detail(flag_key, context, ValueKind::Number, |v| {
            v.and_then(Value::as_f64).unwrap_or(default)
        })
    }

    pub fn json_variation_detail(
        &self,
        flag_key: &str,
        context: &Context,
        default: Value,
    ) -> Detail<Value> {
        self.detail(flag_key, context, ValueKind::Json, |v| {
            v.cloned().unwrap_or(default)
        })
    }

    /// A variation of the type `kind` with its detail, the default given as JSON (for
    /// bindings that hold values as JSON).
    pub fn variation_detail(
        &self,
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        default: &Value,
    ) -> Detail<Value> {
        self.detail(flag_key, context, kind, |v| {
            v.cloned().unwrap_or_else(|| default.clone())
        })
    }

    /// [`Client::variation_detail`] for a context given as its canonical JSON, as bindings
    /// receive it (dicts, objects). A context that is not valid gives the default with an
    /// `ERROR`/`INVALID_CONTEXT` reason, after the flag's own errors (not found, malformed,
    /// wrong type), in the engine's order.
    pub fn variation_detail_json(
        &self,
        flag_key: &str,
        context: &Value,
        kind: ValueKind,
        default: &Value,
    ) -> Detail<Value> {
        match Context::from_json(context) {
            Ok(context) => self.variation_detail(flag_key, &context, kind, default),
            Err(_) => self.inner.invalid_context(flag_key, context, kind, default),
        }
    }

    fn detail<T>(
        &self,
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        value: impl FnOnce(Option<&Value>) -> T,
    ) -> Detail<T> {
        self.inner
            .evaluate(flag_key, context, kind, true, |served, info| Detail {
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
    /// event is queued and sent in the background.
    pub fn track(&self, event_name: &str, context: &Context, value: Option<f64>) {
        self.inner.events.push(Event::Track {
            time: data::now_millis(),
            name: event_name.to_owned(),
            context: context.clone(),
            value: value.filter(|v| v.is_finite()),
        });
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

    /// Calls `listener` (on the client's background thread) after every change of flag data.
    pub fn on_change(&self, listener: impl Fn(&FlagChange) + Send + Sync + 'static) -> ListenerId {
        let id = self.inner.next_listener.fetch_add(1, Ordering::Relaxed);
        let mut listeners = match self.inner.listeners.write() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        listeners.push((id, Arc::new(listener)));
        ListenerId(id)
    }

    pub fn remove_listener(&self, id: ListenerId) {
        let mut listeners = match self.inner.listeners.write() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        listeners.retain(|(held, _)| *held != id.0);
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
        if self.inner.flush_requests.send(reply).is_err() {
            return false;
        }
        done.recv_timeout(timeout).unwrap_or(false)
    }

    /// Flushes events (up to 5 s), stops the background work and releases its thread.
    /// Variation calls keep answering from the last data. Calling it again does nothing.
    pub fn close(&self) {
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

/// What the caller learns besides the value.
/// Borrowed from the data, so that a plain variation call allocates nothing.
struct Info<'a> {
    variation: Option<usize>,
    reason: Reason<&'a str>,
    in_experiment: bool,
    experiment_key: Option<&'a str>,
    flag_version: i64,
    /// `Source::Defaults` unless the caller asked for it (see `Inner::evaluate`).
    source: Source,
    version: i64,
}

impl Inner {
    fn set_status(&self, status: Status) {
        let mut held = lock(&self.status);
        if *held == Status::Closed || *held == status {
            return;
        }
        if !matches!(status, Status::Stale { .. }) || *held != Status::Initializing {
            tracing::debug!(?status, "client status");
        }
        *held = status;
        self.status_changed.notify_all();
    }

    /// The source to report for `data` now.
    fn source(&self, data: &Data) -> Source {
        match data.source() {
            Source::Network if !self.connected.load(Ordering::Relaxed) => Source::Stale,
            Source::Cache
                if data::now_millis() - data.received_at()
                    > i64::try_from(self.config.max_cache_age.as_millis()).unwrap_or(i64::MAX) =>
            {
                Source::Stale
            }
            source => source,
        }
    }

    /// What the typed variations without details call: [`Inner::evaluate`] with no result
    /// but the value. An ordinary evaluation of a ruleset (no error, no experiment) is served
    /// from the engine's two-word result and counted in this thread's counters; everything
    /// else (an error, an exposure, remote values, no data) goes through
    /// [`Inner::evaluate_on`], which evaluates again for the whole result.
    #[inline]
    fn serve<R>(
        &self,
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        f: impl FnOnce(Option<&Value>) -> R,
    ) -> R {
        // `move`: the kind and the caller's default stay constants and registers, not
        // places on the stack the closure points to.
        self.data.with_current(move |data, counters| {
            let Data::Ruleset { ruleset, .. } = &**data else {
                return self.serve_in_full((data, counters), flag_key, context, kind, f);
            };
            let index = ruleset.flag_index(flag_key);
            let served = ruleset.serve_at(index.unwrap_or(usize::MAX), context, kind);
            // Done when nothing is recorded, or an ordinary evaluation was counted (or has
            // nothing to count).
            let done = match (self.recording, served.ordinary_outcome()) {
                (Recording::Nothing, _) => true,
                (_, None) => false,
                (Recording::Exposures, Some(_)) => true,
                (Recording::Summaries, Some(outcome)) => match counters {
                    Some(counters) => self.events.count_local(counters, data, outcome),
                    None => self.events.count_at(data, outcome),
                },
            };
            if !done {
                self.record_in_full((data, counters), flag_key, context, kind);
            }
            f(served.value)
        })
    }

    /// [`Inner::serve`] without a ruleset (remote values, no data): out of the typed calls'
    /// hot path, so that its registers and stack stay those of the lean evaluation.
    #[cold]
    #[inline(never)]
    fn serve_in_full<R>(
        &self,
        data: (&Arc<Data>, Option<&OnceCell<Arc<events::LocalCounters>>>),
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        f: impl FnOnce(Option<&Value>) -> R,
    ) -> R {
        self.evaluate_on(data, flag_key, context, kind, false, |v, _| f(v))
    }

    /// Counts and records an evaluation that [`Inner::serve`] could not, from the whole
    /// result.
    #[cold]
    #[inline(never)]
    fn record_in_full(
        &self,
        data: (&Arc<Data>, Option<&OnceCell<Arc<events::LocalCounters>>>),
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
    ) {
        self.evaluate_on(data, flag_key, context, kind, false, |_, _| ());
    }

    /// Evaluates a flag, counts it for the summaries and records an exposure when the
    /// context is in an experiment; `f` sees the served value (`None`: use the default).
    fn evaluate<R>(
        &self,
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        with_source: bool,
        f: impl FnOnce(Option<&Value>, &Info) -> R,
    ) -> R {
        self.data.with_current(|data, counters| {
            self.evaluate_on((data, counters), flag_key, context, kind, with_source, f)
        })
    }

    #[inline]
    fn evaluate_on<R>(
        &self,
        (data, counters): (&Arc<Data>, Option<&OnceCell<Arc<events::LocalCounters>>>),
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        with_source: bool,
        f: impl FnOnce(Option<&Value>, &Info) -> R,
    ) -> R {
        // The source may read the clock: only the `…_detail` calls, which report it, pay.
        let source = |data: &Data| {
            if with_source {
                self.source(data)
            } else {
                Source::Defaults
            }
        };
        let version = data.version();
        match &**data {
            Data::Ruleset { ruleset, .. } => {
                // One key lookup: the index serves the evaluation and the summary counter.
                let index = ruleset.flag_index(flag_key);
                let e = ruleset.evaluate_at(index.unwrap_or(usize::MAX), context, kind);
                let flag_version = i64::try_from(e.flag_version).unwrap_or(i64::MAX);
                let error = e.reason.error_kind();
                let outcome = index
                    .filter(|_| error.is_none() && self.events.counts_summaries())
                    .and_then(|index| events::outcome_number(ruleset, index, e.variation));
                let counted = match (outcome, counters) {
                    (Some(outcome), Some(counters)) => {
                        self.events.count_local(counters, data, outcome)
                    }
                    (Some(outcome), None) => self.events.count_at(data, outcome),
                    (None, _) => false,
                };
                if !counted || e.experiment_key.is_some() {
                    self.record(
                        flag_key,
                        flag_version,
                        e.variation.and_then(|v| u32::try_from(v).ok()),
                        error,
                        e.experiment_key,
                        e.in_experiment,
                        context,
                        !counted,
                    );
                }
                let info = Info {
                    variation: e.variation,
                    reason: e.reason,
                    in_experiment: e.in_experiment,
                    experiment_key: e.experiment_key,
                    flag_version,
                    source: source(data),
                    version,
                };
                f(e.value, &info)
            }
            Data::Values { values, .. } => {
                let (served, info) = match values.get(flag_key) {
                    Some(v) => match &v.value {
                        Some(value) if kind.admits(value) => (Some(value), remote_info(v)),
                        Some(_) => (None, error_info(ErrorKind::WrongType, v.flag_version)),
                        None => (None, remote_info(v)),
                    },
                    None => (None, error_info(ErrorKind::FlagNotFound, 0)),
                };
                let info = Info {
                    source: source(data),
                    version,
                    ..info
                };
                self.record(
                    flag_key,
                    info.flag_version,
                    info.variation.and_then(|v| u32::try_from(v).ok()),
                    info.reason.error_kind(),
                    info.experiment_key,
                    info.in_experiment,
                    context,
                    true,
                );
                f(served, &info)
            }
            Data::Empty => {
                let info = Info {
                    source: Source::Defaults,
                    ..error_info(ErrorKind::ClientNotReady, 0)
                };
                self.record(
                    flag_key,
                    0,
                    None,
                    Some(ErrorKind::ClientNotReady),
                    None,
                    false,
                    context,
                    true,
                );
                f(None, &info)
            }
        }
    }

    /// The answer for a context that is not valid (see [`Client::variation_detail_json`]).
    fn invalid_context(
        &self,
        flag_key: &str,
        context: &Value,
        kind: ValueKind,
        default: &Value,
    ) -> Detail<Value> {
        let data = self.data.load();
        let (source, version) = (self.source(&data), data.version());
        let info = match &**data {
            Data::Ruleset { ruleset, .. } => {
                let e = ruleset.evaluate_json(flag_key, context, kind);
                Info {
                    variation: e.variation,
                    reason: e.reason,
                    in_experiment: e.in_experiment,
                    experiment_key: e.experiment_key,
                    flag_version: i64::try_from(e.flag_version).unwrap_or(i64::MAX),
                    source,
                    version,
                }
            }
            Data::Values { values, .. } => match values.get(flag_key) {
                None => error_info(ErrorKind::FlagNotFound, 0),
                Some(v) if v.value.as_ref().is_some_and(|value| !kind.admits(value)) => {
                    error_info(ErrorKind::WrongType, v.flag_version)
                }
                Some(v) => error_info(ErrorKind::InvalidContext, v.flag_version),
            },
            Data::Empty => error_info(ErrorKind::ClientNotReady, 0),
        };
        Detail {
            value: default.clone(),
            variation: info.variation,
            reason: info.reason.to_owned_reason(),
            in_experiment: info.in_experiment,
            experiment_key: info.experiment_key.map(str::to_owned),
            flag_version: info.flag_version,
            source: if matches!(**data, Data::Empty) {
                Source::Defaults
            } else {
                source
            },
            version,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        flag_key: &str,
        flag_version: i64,
        variation: Option<u32>,
        error: Option<ErrorKind>,
        experiment_key: Option<&str>,
        in_experiment: bool,
        context: &Context,
        count: bool,
    ) {
        if !self.events.enabled() {
            return;
        }
        if count {
            let error_kind = error.map_or(0, proto_error_kind);
            self.events
                .count(flag_key, flag_version, variation, error_kind);
        }
        if let (Some(experiment), Some(variation)) = (experiment_key, variation) {
            // In remote mode the server evaluated for the identified context.
            let exposed = match self.mode {
                Mode::Local => Some(context.clone()),
                Mode::Remote => self.identified.borrow().clone(),
            };
            if let Some(exposed) = exposed {
                self.events.expose(
                    flag_key,
                    flag_version,
                    experiment,
                    variation,
                    in_experiment,
                    &exposed,
                );
            }
        }
    }

    /// Swaps in new data, persists it, and tells the listeners.
    fn replace_data(&self, data: Data, changed: Vec<String>) {
        let version = data.version();
        let data = Arc::new(data);
        self.data.store(data.clone());
        if let Some(path) = self.cache_path.clone() {
            // Writing a large ruleset takes milliseconds: not on the stream's task.
            tokio::task::spawn_blocking(move || {
                if let Err(err) = data::save(&path, &data) {
                    tracing::warn!(path = %path.display(), error = %err, "cannot write the cache file");
                }
            });
        }
        if changed.is_empty() {
            return;
        }
        let change = FlagChange {
            flag_keys: changed,
            version,
        };
        let listeners: Vec<Listener> = match self.listeners.read() {
            Ok(l) => l.iter().map(|(_, f)| f.clone()).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .map(|(_, f)| f.clone())
                .collect(),
        };
        for listener in listeners {
            // A panicking listener must not take the client down.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(&change))).is_err()
            {
                tracing::warn!("a change listener panicked");
            }
        }
    }
}

fn remote_info(v: &RemoteValue) -> Info<'_> {
    Info {
        variation: v.variation,
        reason: borrow_reason(&v.reason),
        in_experiment: v.in_experiment,
        experiment_key: v.experiment_key.as_deref(),
        flag_version: v.flag_version,
        source: Source::Defaults,
        version: 0,
    }
}

fn borrow_reason(reason: &Reason<String>) -> Reason<&str> {
    match reason {
        Reason::Off => Reason::Off,
        Reason::TargetMatch => Reason::TargetMatch,
        Reason::RuleMatch {
            rule_index,
            rule_id,
        } => Reason::RuleMatch {
            rule_index: *rule_index,
            rule_id,
        },
        Reason::Fallthrough => Reason::Fallthrough,
        Reason::PrerequisiteFailed { prerequisite_key } => {
            Reason::PrerequisiteFailed { prerequisite_key }
        }
        Reason::Error { error_kind } => Reason::Error {
            error_kind: *error_kind,
        },
    }
}

fn error_info(kind: ErrorKind, flag_version: i64) -> Info<'static> {
    Info {
        variation: None,
        reason: Reason::Error { error_kind: kind },
        in_experiment: false,
        experiment_key: None,
        flag_version,
        source: Source::Defaults,
        version: 0,
    }
}

fn proto_error_kind(kind: ErrorKind) -> i32 {
    use vexil_proto::v1::ErrorKind as P;
    (match kind {
        ErrorKind::FlagNotFound => P::FlagNotFound,
        ErrorKind::WrongType => P::WrongType,
        ErrorKind::MalformedFlag => P::MalformedFlag,
        ErrorKind::InvalidContext => P::InvalidContext,
        ErrorKind::ClientNotReady => P::ClientNotReady,
    }) as i32
}

/// The data to start with: the cache file when it is usable (and, in remote mode, for the
/// initial context), else the bootstrap file, else nothing.
fn initial_data(config: &Config, mode: Mode, cache: Option<&std::path::Path>) -> Data {
    if let Some(path) = cache {
        match data::load(path) {
            Ok(Some(Cached::Ruleset {
                ruleset,
                version,
                saved_at,
            })) if mode == Mode::Local => {
                return Data::Ruleset {
                    ruleset,
                    version,
                    source: Source::Cache,
                    received_at: saved_at,
                    counters: Default::default(),
                };
            }
            Ok(Some(Cached::Values {
                values,
                context,
                version,
                saved_at,
            })) if mode == Mode::Remote
                && config
                    .initial_context
                    .as_ref()
                    .is_none_or(|c| c.to_json() == context) =>
            {
                return Data::Values {
                    values,
                    context,
                    version,
                    source: Source::Cache,
                    received_at: saved_at,
                };
            }
            Ok(_) => {}
            Err(problem) => tracing::warn!(problem, "ignoring the cache file"),
        }
    }
    if let Some(path) = &config.bootstrap {
        match data::load_bootstrap(path) {
            Ok(ruleset) => {
                return Data::Ruleset {
                    version: 0,
                    ruleset,
                    source: Source::Bootstrap,
                    received_at: data::now_millis(),
                    counters: Default::default(),
                };
            }
            Err(problem) => tracing::warn!(problem, "ignoring the bootstrap file"),
        }
    }
    Data::Empty
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
