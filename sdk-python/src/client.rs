//! `vexil.Client`: the core client, with Python values, errors and threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use vexil_core::{Config, Detail, EventConfig, ListenerId, Mode, Status as CoreStatus};
use vexil_engine::{Context as EngineContext, ValueKind};

use crate::context::{ContextArg, context_arg};
use crate::convert::{to_json, to_python};
use crate::{ClientStartError, ConfigurationError, InvalidContextError, guard};

/// Where a client stands: `state` is one of `INITIALIZING`, `READY`, `STALE`, `OFFLINE`,
/// `FAILED`, `CLOSED`; `reason` says why for `STALE` and `FAILED`.
#[pyclass(frozen, module = "vexil", name = "Status")]
#[derive(Debug)]
pub struct Status {
    #[pyo3(get)]
    state: &'static str,
    #[pyo3(get)]
    reason: Option<String>,
}

#[pymethods]
impl Status {
    /// Whether the client holds current data from the server.
    #[getter]
    fn ready(&self) -> bool {
        self.state == "READY"
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Status>()
            .is_ok_and(|o| o.get().state == self.state && o.get().reason == self.reason)
    }

    fn __repr__(&self) -> String {
        match &self.reason {
            Some(reason) => format!("vexil.Status({}, reason={reason:?})", self.state),
            None => format!("vexil.Status({})", self.state),
        }
    }
}

impl From<CoreStatus> for Status {
    fn from(status: CoreStatus) -> Status {
        let (state, reason) = match status {
            CoreStatus::Initializing => ("INITIALIZING", None),
            CoreStatus::Ready => ("READY", None),
            CoreStatus::Stale { reason } => ("STALE", Some(reason)),
            CoreStatus::Offline => ("OFFLINE", None),
            CoreStatus::Failed { reason } => ("FAILED", Some(reason)),
            CoreStatus::Closed => ("CLOSED", None),
        };
        Status { state, reason }
    }
}

/// A value with everything known about it: the variation served (`None` when the default
/// was returned), the reason (a dict as in the conformance vectors, e.g. `{"kind":
/// "RULE_MATCH", "rule_index": 0, "rule_id": "staff"}`), the experiment, the flag's version,
/// where the data came from (`source`) and the environment version.
#[pyclass(frozen, module = "vexil", name = "EvaluationDetail")]
#[derive(Debug)]
pub struct EvaluationDetail {
    #[pyo3(get)]
    value: Py<PyAny>,
    #[pyo3(get)]
    variation: Option<usize>,
    #[pyo3(get)]
    reason: Py<PyAny>,
    #[pyo3(get)]
    in_experiment: bool,
    #[pyo3(get)]
    experiment_key: Option<String>,
    #[pyo3(get)]
    flag_version: i64,
    #[pyo3(get)]
    source: &'static str,
    #[pyo3(get)]
    version: i64,
    error_kind: Option<&'static str>,
}

#[pymethods]
impl EvaluationDetail {
    /// The reason's kind: `OFF`, `TARGET_MATCH`, `RULE_MATCH`, `FALLTHROUGH`,
    /// `PREREQUISITE_FAILED` or `ERROR`.
    #[getter]
    fn reason_kind(&self, py: Python<'_>) -> PyResult<String> {
        self.reason.bind(py).get_item("kind")?.extract()
    }

    /// For an `ERROR` reason: `FLAG_NOT_FOUND`, `WRONG_TYPE`, `MALFORMED_FLAG`,
    /// `INVALID_CONTEXT` or `CLIENT_NOT_READY`.
    #[getter]
    fn error_kind(&self) -> Option<&'static str> {
        self.error_kind
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "vexil.EvaluationDetail(value={}, variation={:?}, reason={}, source={})",
            self.value
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string()),
            self.variation,
            self.reason
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string()),
            self.source,
        )
    }
}

impl EvaluationDetail {
    fn new(py: Python<'_>, detail: Detail<Option<Value>>) -> PyResult<EvaluationDetail> {
        let value = match &detail.value {
            Some(value) => to_python(py, value)?.unbind(),
            None => py.None(),
        };
        let reason = serde_json::to_value(&detail.reason).unwrap_or(Value::Null);
        Ok(EvaluationDetail {
            value,
            variation: detail.variation,
            reason: to_python(py, &reason)?.unbind(),
            in_experiment: detail.in_experiment,
            experiment_key: detail.experiment_key,
            flag_version: detail.flag_version,
            source: detail.source.as_str(),
            version: detail.version,
            error_kind: detail.reason.error_kind().map(|k| k.as_str()),
        })
    }
}

/// What a change listener receives: the flags whose value may have changed, and the
/// environment version after the change.
#[pyclass(frozen, module = "vexil", name = "FlagChange")]
#[derive(Debug)]
pub struct FlagChange {
    #[pyo3(get)]
    flag_keys: Vec<String>,
    #[pyo3(get)]
    version: i64,
}

#[pymethods]
impl FlagChange {
    fn __repr__(&self) -> String {
        format!(
            "vexil.FlagChange(flag_keys={:?}, version={})",
            self.flag_keys, self.version
        )
    }
}

/// The native client; `vexil.Client` adds the asyncio forms on top.
#[pyclass(frozen, subclass, weakref, module = "vexil._native", name = "Client")]
#[derive(Debug)]
pub struct Client {
    pub(crate) inner: vexil_core::Client,
    listeners: Mutex<HashMap<u64, ListenerId>>,
    next_listener: AtomicU64,
}

fn duration(name: &str, seconds: f64, error: fn(String) -> PyErr) -> PyResult<Duration> {
    if seconds.is_finite() && seconds >= 0.0 {
        Duration::try_from_secs_f64(seconds).map_err(|err| error(format!("{name}: {err}")))
    } else {
        Err(error(format!(
            "{name}: expected a finite number of seconds >= 0, got {seconds}"
        )))
    }
}

fn config_error(message: String) -> PyErr {
    ConfigurationError::new_err(message)
}

fn value_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// A context that must be valid (identify, track, all_flags, the initial context).
fn valid_context(object: &Bound<'_, PyAny>) -> PyResult<EngineContext> {
    match context_arg(object)? {
        ContextArg::Held(context) => Ok(context.clone()),
        ContextArg::Built(context) => Ok(context),
        ContextArg::Invalid(json) => Err(InvalidContextError::new_err(
            EngineContext::from_json(&json).err().map_or_else(
                || "context: not valid".to_owned(),
                |e| format!("context: {e}"),
            ),
        )),
    }
}

fn value_kind(name: &str) -> PyResult<ValueKind> {
    Ok(match name {
        "bool" => ValueKind::Bool,
        "string" => ValueKind::String,
        "number" => ValueKind::Number,
        "json" => ValueKind::Json,
        other => {
            return Err(PyValueError::new_err(format!(
                "type: expected 'bool', 'string', 'number' or 'json', got {other:?}"
            )));
        }
    })
}

impl Client {
    /// Runs `evaluate` with the engine's context, or `invalid` with the JSON of a context
    /// that is not valid.
    fn with_context<R>(
        &self,
        context: &Bound<'_, PyAny>,
        evaluate: impl FnOnce(&vexil_core::Client, &EngineContext) -> R,
        invalid: impl FnOnce(&vexil_core::Client, &Value) -> R,
    ) -> PyResult<R> {
        Ok(match context_arg(context)? {
            ContextArg::Held(context) => evaluate(&self.inner, context),
            ContextArg::Built(context) => evaluate(&self.inner, &context),
            ContextArg::Invalid(json) => invalid(&self.inner, &json),
        })
    }

    fn forget_listeners(&self) {
        let ids: Vec<ListenerId> = match self.listeners.lock() {
            Ok(mut held) => held.drain().map(|(_, id)| id).collect(),
            Err(poisoned) => poisoned.into_inner().drain().map(|(_, id)| id).collect(),
        };
        for id in ids {
            self.inner.remove_listener(id);
        }
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        sdk_key, *, endpoint = None, cache_dir = None, offline = false, bootstrap = None,
        context = None, max_cache_age = 604800.0, connect_timeout = 5.0, stream_timeout = 60.0,
        initial_backoff = 1.0, max_backoff = 30.0, events = true, flush_interval = 5.0,
        event_capacity = 10000, event_batch_size = 500, exposure_window = 3600.0,
        evaluation_summaries = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        sdk_key: &str,
        endpoint: Option<String>,
        cache_dir: Option<PathBuf>,
        offline: bool,
        bootstrap: Option<PathBuf>,
        context: Option<&Bound<'_, PyAny>>,
        max_cache_age: f64,
        connect_timeout: f64,
        stream_timeout: f64,
        initial_backoff: f64,
        max_backoff: f64,
        events: bool,
        flush_interval: f64,
        event_capacity: usize,
        event_batch_size: usize,
        exposure_window: f64,
        evaluation_summaries: bool,
    ) -> PyResult<Client> {
        guard(|| {
            let mut config = Config::new(sdk_key).with_offline(offline);
            if let Some(endpoint) = endpoint {
                config = config.with_endpoint(endpoint);
            }
            if let Some(dir) = cache_dir {
                config = config.with_cache_dir(dir);
            }
            if let Some(file) = bootstrap {
                config = config.with_bootstrap(file);
            }
            if let Some(context) = context.filter(|c| !c.is_none()) {
                config = config.with_context(valid_context(context)?);
            }
            config.max_cache_age = duration("max_cache_age", max_cache_age, config_error)?;
            config.connect_timeout = duration("connect_timeout", connect_timeout, config_error)?;
            config.stream_timeout = duration("stream_timeout", stream_timeout, config_error)?;
            config.initial_backoff = duration("initial_backoff", initial_backoff, config_error)?;
            config.max_backoff = duration("max_backoff", max_backoff, config_error)?;
            if config.stream_timeout.is_zero() {
                return Err(config_error("stream_timeout: must be more than 0".into()));
            }
            if event_capacity == 0 {
                return Err(config_error("event_capacity: must be at least 1".into()));
            }
            if event_batch_size == 0 {
                return Err(config_error("event_batch_size: must be at least 1".into()));
            }
            let flush_interval = duration("flush_interval", flush_interval, config_error)?;
            if flush_interval.is_zero() {
                return Err(config_error("flush_interval: must be more than 0".into()));
            }
            config = config
                .with_events(EventConfig {
                    enabled: events,
                    capacity: event_capacity,
                    batch_size: event_batch_size,
                    flush_interval,
                    exposure_window: duration("exposure_window", exposure_window, config_error)?,
                    summaries: evaluation_summaries,
                    ..EventConfig::default()
                })
                .with_sdk("vexil-python", env!("CARGO_PKG_VERSION"));
            // Reads the cache or bootstrap file and starts a thread: not with the GIL held.
            let inner = py
                .detach(|| vexil_core::Client::new(config))
                .map_err(|err| match err {
                    vexil_core::Error::InvalidKey => config_error(format!("sdk_key: {err}")),
                    vexil_core::Error::InvalidEndpoint { .. } => {
                        config_error(format!("endpoint: {err}"))
                    }
                    vexil_core::Error::Runtime(_) => ClientStartError::new_err(err.to_string()),
                })?;
            Ok(Client {
                inner,
                listeners: Mutex::new(HashMap::new()),
                next_listener: AtomicU64::new(1),
            })
        })
    }

    /// `"local"` (server key: the ruleset is synced and evaluated here) or `"remote"` (client
    /// and mobile keys: the server evaluates for the identified context).
    #[getter]
    fn mode(&self) -> &'static str {
        match self.inner.mode() {
            Mode::Local => "local",
            Mode::Remote => "remote",
        }
    }

    /// The environment version of the data held (0 when none).
    #[getter]
    fn version(&self) -> i64 {
        self.inner.version()
    }

    /// Where the data served now comes from: `NETWORK`, `STALE`, `CACHE`, `BOOTSTRAP` or
    /// `DEFAULTS`.
    #[getter]
    fn source(&self) -> &'static str {
        self.inner.source().as_str()
    }

    fn status(&self) -> Status {
        self.inner.status().into()
    }

    /// Waits (without holding the GIL) for the first data from the server, a refused key,
    /// or `timeout` seconds; returns the status then.
    #[pyo3(signature = (timeout = 5.0))]
    fn wait_for_initialization(&self, py: Python<'_>, timeout: f64) -> PyResult<Status> {
        let timeout = duration("timeout", timeout, value_error)?;
        guard(|| {
            Ok(py
                .detach(|| self.inner.wait_for_initialization(timeout))
                .into())
        })
    }

    fn bool_variation(
        &self,
        flag_key: &str,
        context: &Bound<'_, PyAny>,
        default: bool,
    ) -> PyResult<bool> {
        guard(|| {
            self.with_context(
                context,
                |client, context| client.bool_variation(flag_key, context, default),
                |client, json| {
                    client
                        .variation_detail_json(flag_key, json, ValueKind::Bool, &default.into())
                        .value
                        .as_bool()
                        .unwrap_or(default)
                },
            )
        })
    }

    fn string_variation(
        &self,
        flag_key: &str,
        context: &Bound<'_, PyAny>,
        default: &str,
    ) -> PyResult<String> {
        guard(|| {
            self.with_context(
                context,
                |client, context| client.string_variation(flag_key, context, default),
                |_, _| default.to_owned(),
            )
        })
    }

    /// A number flag's value, as a float.
    fn number_variation(
        &self,
        flag_key: &str,
        context: &Bound<'_, PyAny>,
        default: f64,
    ) -> PyResult<f64> {
        guard(|| {
            self.with_context(
                context,
                |client, context| client.number_variation(flag_key, context, default),
                |_, _| default,
            )
        })
    }

    /// Any flag's value as Python data (dict, list, str, int, float, bool or None).
    fn json_variation<'py>(
        &self,
        flag_key: &str,
        context: &Bound<'py, PyAny>,
        default: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = context.py();
        guard(|| {
            let default_json = to_json(default).map_err(|e| e.into_err("default"))?;
            let value = self.with_context(
                context,
                |client, context| Some(client.json_variation(flag_key, context, default_json)),
                |_, _| None,
            )?;
            match value {
                Some(value) => to_python(py, &value),
                None => Ok(default.clone()),
            }
        })
    }

    /// The value with its detail. The requested type is `type` (`"bool"`, `"string"`,
    /// `"number"`, `"json"`), else the default's: a bool, a str, an int or float, or
    /// anything else for json.
    #[pyo3(signature = (flag_key, context, default, *, r#type = None))]
    fn variation_detail(
        &self,
        py: Python<'_>,
        flag_key: &str,
        context: &Bound<'_, PyAny>,
        default: &Bound<'_, PyAny>,
        r#type: Option<&str>,
    ) -> PyResult<EvaluationDetail> {
        guard(|| {
            let default = to_json(default).map_err(|e| e.into_err("default"))?;
            let kind = match r#type {
                Some(name) => value_kind(name)?,
                None => ValueKind::of_default(&default),
            };
            let detail = self.with_context(
                context,
                |client, context| client.variation_detail(flag_key, context, kind, &default),
                |client, json| client.variation_detail_json(flag_key, json, kind, &default),
            )?;
            EvaluationDetail::new(
                py,
                Detail {
                    value: Some(detail.value),
                    variation: detail.variation,
                    reason: detail.reason,
                    in_experiment: detail.in_experiment,
                    experiment_key: detail.experiment_key,
                    flag_version: detail.flag_version,
                    source: detail.source,
                    version: detail.version,
                },
            )
        })
    }

    /// Every flag's detail for a context (remote mode: for the identified context); flags
    /// that cannot be served have the value None.
    fn all_flags<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let context = valid_context(context)?;
            let out = PyDict::new(py);
            for (key, detail) in self.inner.all_flags(&context) {
                out.set_item(key, EvaluationDetail::new(py, detail)?)?;
            }
            Ok(out)
        })
    }

    /// Remote mode: evaluate for `context` from now on; waits (without holding the GIL) up
    /// to `timeout` seconds for its values and returns whether they arrived. Local mode
    /// evaluates the context given to each call, so this only records it.
    #[pyo3(signature = (context, timeout = 5.0))]
    fn identify(&self, py: Python<'_>, context: &Bound<'_, PyAny>, timeout: f64) -> PyResult<bool> {
        let timeout = duration("timeout", timeout, value_error)?;
        guard(|| {
            let context = valid_context(context)?;
            Ok(py.detach(|| self.inner.identify(context, timeout)))
        })
    }

    /// Records a metric event (queued; sent in the background).
    #[pyo3(signature = (event_name, context, value = None))]
    fn track(
        &self,
        event_name: &str,
        context: &Bound<'_, PyAny>,
        value: Option<f64>,
    ) -> PyResult<()> {
        guard(|| {
            if event_name.is_empty() {
                return Err(PyValueError::new_err("event_name: must not be empty"));
            }
            if let Some(value) = value.filter(|v| !v.is_finite()) {
                return Err(PyValueError::new_err(format!(
                    "value: expected a finite number, got {value}"
                )));
            }
            let context = valid_context(context)?;
            self.inner.track(event_name, &context, value);
            Ok(())
        })
    }

    /// Sends pending events now; waits (without holding the GIL) up to `timeout` seconds.
    /// Returns whether everything was delivered.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = duration("timeout", timeout, value_error)?;
        guard(|| Ok(py.detach(|| self.inner.flush(timeout))))
    }

    /// Counters of the event pipeline: `dropped`, `sent`, `failed_batches`, `queued`.
    fn event_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.event_stats();
        let out = PyDict::new(py);
        out.set_item("dropped", stats.dropped)?;
        out.set_item("sent", stats.sent)?;
        out.set_item("failed_batches", stats.failed_batches)?;
        out.set_item("queued", stats.queued)?;
        Ok(out)
    }

    /// Calls `listener(change: FlagChange)` after every change of flag data, on the
    /// client's background thread. An exception in the listener is reported through
    /// `sys.unraisablehook` and changes nothing else. Returns an id for `remove_listener`.
    fn on_change(&self, listener: &Bound<'_, PyAny>) -> PyResult<u64> {
        if !listener.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "listener: expected a callable, got {}",
                crate::convert::type_name(listener)
            )));
        }
        let callback: Py<PyAny> = listener.clone().unbind();
        guard(|| {
            let core_id = self.inner.on_change(move |change| {
                // Not at all while the interpreter shuts down.
                Python::try_attach(|py| {
                    let change = FlagChange {
                        flag_keys: change.flag_keys.clone(),
                        version: change.version,
                    };
                    let called = Py::new(py, change).and_then(|c| callback.call1(py, (c,)));
                    if let Err(err) = called {
                        err.write_unraisable(py, Some(callback.bind(py)));
                    }
                });
            });
            let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
            match self.listeners.lock() {
                Ok(mut held) => held.insert(id, core_id),
                Err(poisoned) => poisoned.into_inner().insert(id, core_id),
            };
            Ok(id)
        })
    }

    /// Removes a listener; returns whether it was registered.
    fn remove_listener(&self, listener_id: u64) -> bool {
        let removed = match self.listeners.lock() {
            Ok(mut held) => held.remove(&listener_id),
            Err(poisoned) => poisoned.into_inner().remove(&listener_id),
        };
        match removed {
            Some(id) => {
                self.inner.remove_listener(id);
                true
            }
            None => false,
        }
    }

    /// Flushes events (up to 5 s), stops the background work and forgets the listeners.
    /// Variation calls keep answering from the last data. Calling it again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        guard(|| {
            py.detach(|| self.inner.close());
            self.forget_listeners();
            Ok(())
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "vexil.Client(mode={:?}, status={})",
            self.mode(),
            self.status().state
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Closing flushes events and may wait: not with the GIL held.
        let inner = &self.inner;
        if Python::try_attach(|py| py.detach(|| inner.close())).is_none() {
            inner.close();
        }
    }
}
