//! The shared state of a client and its background tasks, and the evaluation behind every
//! variation call: the typed calls' lean path, the full path with the whole result, and what
//! each records for events.

use std::cell::OnceCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::answer::{Detail, FlagChange, Mode, Status};
use crate::config::Config;
use crate::data::{self, Cached, Data, RemoteValue, Source};
use crate::events::{self, EventQueue};
use crate::held::SharedData;
use crate::listeners::Listeners;
use crate::{Context, ErrorKind, Reason, ValueKind};

/// Shared state of a client and its background tasks.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) mode: Mode,
    pub(crate) data: SharedData,
    /// Whether the stream is up: data from the network is reported stale otherwise.
    pub(crate) connected: AtomicBool,
    pub(crate) status: Mutex<Status>,
    pub(crate) status_changed: Condvar,
    pub(crate) listeners: Listeners,
    pub(crate) events: Arc<EventQueue>,
    /// What variation calls record, from `config.events`; read here on every call, next to
    /// the data, instead of through `events`.
    pub(crate) recording: Recording,
    pub(crate) cache_path: Option<PathBuf>,
    pub(crate) closing: watch::Sender<bool>,
    /// The identified context (remote mode).
    pub(crate) identified: watch::Sender<Option<Context>>,
    pub(crate) flush_requests: mpsc::UnboundedSender<FlushReply>,
    /// The status as it changes, for the waits that run on a runtime.
    pub(crate) status_watch: watch::Sender<Status>,
}

/// Told whether a requested flush delivered everything.
pub(crate) type FlushReply = Box<dyn FnOnce(bool) + Send>;

/// What a variation call records (see [`EventConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recording {
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

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What the caller learns besides the value.
/// Borrowed from the data, so that a plain variation call allocates nothing.
pub(crate) struct Info<'a> {
    pub(crate) variation: Option<usize>,
    pub(crate) reason: Reason<&'a str>,
    pub(crate) in_experiment: bool,
    pub(crate) experiment_key: Option<&'a str>,
    pub(crate) flag_version: i64,
    /// `Source::Defaults` unless the caller asked for it (see `Inner::evaluate`).
    pub(crate) source: Source,
    pub(crate) version: i64,
}

impl Inner {
    pub(crate) fn set_status(&self, status: Status) {
        let mut held = lock(&self.status);
        if *held == Status::Closed || *held == status {
            return;
        }
        let worth_logging =
            !matches!(status, Status::Stale { .. }) || *held != Status::Initializing;
        *held = status.clone();
        self.status_watch.send_replace(status.clone());
        self.status_changed.notify_all();
        // Not under the lock: a host's logger may wait for a thread that waits for it (a
        // Python thread holding the GIL, say).
        drop(held);
        if worth_logging {
            tracing::debug!(?status, "client status");
        }
    }

    /// The source to report for `data` now.
    pub(crate) fn source(&self, data: &Data) -> Source {
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
    pub(crate) fn serve<R>(
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

    /// Evaluates a flag for a `…_detail` call, counts it for the summaries and records an
    /// exposure when the context is in an experiment; `f` sees the served value (`None`: use
    /// the default) and everything else known about it, the source included.
    pub(crate) fn evaluate<R>(
        &self,
        flag_key: &str,
        context: &Context,
        kind: ValueKind,
        f: impl FnOnce(Option<&Value>, &Info) -> R,
    ) -> R {
        self.data.with_current(|data, counters| {
            self.evaluate_on((data, counters), flag_key, context, kind, true, f)
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
                    .and_then(|index| {
                        crate::summaries::outcome_number(ruleset, index, e.variation)
                    });
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

    /// The answer for a context that is not valid, without its value (the caller's
    /// default): the flag's own errors first (not found, malformed, wrong type), in the
    /// engine's order, else `INVALID_CONTEXT`.
    pub(crate) fn invalid_context(
        &self,
        flag_key: &str,
        context: &Value,
        kind: ValueKind,
    ) -> Detail<()> {
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
            value: (),
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

    /// Swaps in a test source's new data at once and tells the listeners on the client's
    /// `runtime`, as a change from the server would be told (see [`crate::TestData`]).
    pub(crate) fn replace_data_on(self: &Arc<Self>, data: Data, runtime: &tokio::runtime::Handle) {
        let changed = match &data {
            Data::Ruleset { ruleset, .. } => {
                crate::network::changed_flags(&self.data.load(), ruleset)
            }
            _ => Vec::new(),
        };
        let version = data.version();
        self.data.store(Arc::new(data));
        if changed.is_empty() {
            return;
        }
        let inner = self.clone();
        runtime.spawn(async move {
            inner.listeners.notify(&FlagChange {
                flag_keys: changed,
                version,
            });
        });
    }

    /// Swaps in new data, persists it, and tells the listeners.
    pub(crate) fn replace_data(&self, data: Data, changed: Vec<String>) {
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
        self.listeners.notify(&change);
    }
}

fn remote_info(v: &RemoteValue) -> Info<'_> {
    Info {
        variation: v.variation,
        reason: v.reason.as_str_reason(),
        in_experiment: v.in_experiment,
        experiment_key: v.experiment_key.as_deref(),
        flag_version: v.flag_version,
        source: Source::Defaults,
        version: 0,
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
pub(crate) fn initial_data(config: &Config, mode: Mode, cache: Option<&std::path::Path>) -> Data {
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
