//! `vexil.Client`: the core client, with Python values, errors and threads.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use vexil_core::arguments::{seconds, value_kind};
use vexil_core::{
    Detail, ErrorCode, EventOptions, Failure, ListenerId, LogLevel, LogSink, Options,
    Status as CoreStatus, ValueKind,
};

use crate::context::{context_arg, valid_context};
use crate::convert::{to_json, to_python};
use crate::{guard, to_py};

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
        Status {
            state: status.name(),
            reason: status.reason().map(str::to_owned),
        }
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
        let error_kind = detail.error_kind().map(|k| k.as_str());
        Ok(EvaluationDetail {
            value,
            variation: detail.variation,
            reason: to_python(py, &reason)?.unbind(),
            in_experiment: detail.in_experiment,
            experiment_key: detail.experiment_key,
            flag_version: detail.flag_version,
            source: detail.source.as_str(),
            version: detail.version,
            error_kind,
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

/// The `logging` level of `level`; trace is below `DEBUG`.
fn logging_level(level: LogLevel) -> u8 {
    match level {
        LogLevel::Error => 40,
        LogLevel::Warn => 30,
        LogLevel::Info => 20,
        LogLevel::Debug => 10,
        LogLevel::Trace => 5,
    }
}

/// The client's log messages, handed to a `logging.Logger` (by default `vexil`) on the core's
/// log thread: a client thread never waits for the GIL to log (it may hold a lock a Python
/// thread is waiting for). The logger's `isEnabledFor` is asked there, before each message,
/// so its level is respected as it is at that moment.
fn python_logger(logger: Py<PyAny>) -> std::sync::Arc<dyn LogSink> {
    vexil_core::logging::on_log_thread(
        LogLevel::Trace,
        std::sync::Arc::new(move |level, message: &str| {
            // Nothing is logged while the interpreter shuts down.
            Python::try_attach(|py| {
                let logger = logger.bind(py);
                let level = logging_level(level);
                let logged = logger
                    .call_method1("isEnabledFor", (level,))
                    .and_then(|enabled| enabled.extract::<bool>())
                    .and_then(|enabled| {
                        if enabled {
                            logger.call_method1("log", (level, message)).map(drop)
                        } else {
                            Ok(())
                        }
                    });
                // A handler that raises is reported as `logging` would.
                if let Err(err) = logged {
                    err.write_unraisable(py, None);
                }
            });
        }),
    )
}

/// Calls `callback(value)` from one of the client's threads (or the caller's), reporting what
/// it raises as `sys.unraisablehook` does; nothing while the interpreter shuts down.
fn call_back<T>(callback: &Py<PyAny>, value: T)
where
    T: for<'py> IntoPyObject<'py>,
{
    Python::try_attach(|py| {
        if let Err(err) = callback.call1(py, (value,)) {
            err.write_unraisable(py, None);
        }
    });
}

/// The native client; `vexil.Client` adds the asyncio forms on top.
#[pyclass(frozen, subclass, weakref, module = "vexil._native", name = "Client")]
#[derive(Debug)]
pub struct Client {
    pub(crate) inner: vexil_core::Client,
}

/// A duration argument in seconds (`ValueError` naming it otherwise).
fn duration(amount: f64, name: &str) -> PyResult<std::time::Duration> {
    seconds(amount, name).map_err(to_py)
}

/// A duration option in seconds, as the core's whole milliseconds.
fn option_millis(amount: f64, name: &str) -> PyResult<u64> {
    let duration = seconds(amount, name).map_err(|failure| {
        to_py(Failure {
            code: ErrorCode::InvalidOptions,
            ..failure
        })
    })?;
    Ok(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// A failure of the options, naming the keyword argument the caller passed rather than the
/// core's option (`options.events.capacity` is `event_capacity` here).
fn option_error(mut failure: Failure) -> PyErr {
    const NAMES: [(&str, &str); 12] = [
        ("options.events.private_attributes", "private_attributes"),
        ("options.events.capacity", "event_capacity"),
        ("options.events.batch_size", "event_batch_size"),
        ("options.events.flush_interval_ms", "flush_interval"),
        ("options.events.exposure_window_ms", "exposure_window"),
        ("options.stream_timeout_ms", "stream_timeout"),
        ("options.connect_timeout_ms", "connect_timeout"),
        ("options.initial_backoff_ms", "initial_backoff"),
        ("options.max_backoff_ms", "max_backoff"),
        ("options.max_cache_age_ms", "max_cache_age"),
        ("options.context", "context"),
        ("options.endpoint", "endpoint"),
    ];
    for (core, python) in NAMES {
        if let Some(rest) = failure.message.strip_prefix(core) {
            failure.message =
                format!("{python}{rest}").replace("options.max_backoff_ms", "max_backoff");
            break;
        }
    }
    to_py(failure)
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        sdk_key, *, endpoint = None, cache_dir = None, offline = false, bootstrap = None,
        context = None, max_cache_age = 604800.0, connect_timeout = 5.0, stream_timeout = 60.0,
        initial_backoff = 1.0, max_backoff = 30.0, events = true, flush_interval = 5.0,
        event_capacity = 10000, event_batch_size = 500, exposure_window = 3600.0,
        evaluation_summaries = true, private_attributes = None, all_attributes_private = false,
        logger = None, test_data = None,
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
        event_capacity: u64,
        event_batch_size: u64,
        exposure_window: f64,
        evaluation_summaries: bool,
        private_attributes: Option<Vec<String>>,
        all_attributes_private: bool,
        logger: Option<Bound<'_, PyAny>>,
        test_data: Option<PyRef<'_, crate::test_data::TestData>>,
    ) -> PyResult<Client> {
        guard(|| {
            let context = match context.filter(|c| !c.is_none()) {
                Some(context) => Some(valid_context(context)?.to_json()),
                None => None,
            };
            let options = Options {
                endpoint,
                cache_dir,
                bootstrap,
                offline: Some(offline),
                context,
                max_cache_age_ms: Some(option_millis(max_cache_age, "max_cache_age")?),
                connect_timeout_ms: Some(option_millis(connect_timeout, "connect_timeout")?),
                stream_timeout_ms: Some(option_millis(stream_timeout, "stream_timeout")?),
                initial_backoff_ms: Some(option_millis(initial_backoff, "initial_backoff")?),
                max_backoff_ms: Some(option_millis(max_backoff, "max_backoff")?),
                sdk_name: None,
                sdk_version: None,
                events: Some(EventOptions {
                    enabled: Some(events),
                    capacity: Some(event_capacity),
                    batch_size: Some(event_batch_size),
                    flush_interval_ms: Some(option_millis(flush_interval, "flush_interval")?),
                    exposure_window_ms: Some(option_millis(exposure_window, "exposure_window")?),
                    summaries: Some(evaluation_summaries),
                    private_attributes,
                    all_attributes_private: Some(all_attributes_private),
                    ..EventOptions::default()
                }),
                camel_case: false,
            };
            let logger = match logger.filter(|l| !l.is_none()) {
                Some(logger) => logger,
                None => py
                    .import("logging")?
                    .call_method1("getLogger", ("vexil",))?,
            };
            let config = options
                .into_config(sdk_key, ("vexil-python", env!("CARGO_PKG_VERSION")))
                .map_err(option_error)?
                .with_log_sink(python_logger(logger.unbind()));
            let config = match &test_data {
                Some(test_data) => config.with_test_data(&test_data.inner),
                None => config,
            };
            // Reads the cache or bootstrap file and starts a thread: not with the GIL held.
            let inner = py
                .detach(|| vexil_core::Client::new(config))
                .map_err(|err| option_error(err.into()))?;
            Ok(Client { inner })
        })
    }

    /// `"local"` (server key: the ruleset is synced and evaluated here) or `"remote"` (client
    /// and mobile keys: the server evaluates for the identified context).
    #[getter]
    fn mode(&self) -> String {
        self.inner.mode().name().to_ascii_lowercase()
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
        let timeout = duration(timeout, "timeout")?;
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
            let context = context_arg(context)?;
            Ok(self
                .inner
                .bool_variation(flag_key, context.as_ref(), default))
        })
    }

    fn string_variation(
        &self,
        flag_key: &str,
        context: &Bound<'_, PyAny>,
        default: &str,
    ) -> PyResult<String> {
        guard(|| {
            let context = context_arg(context)?;
            Ok(self
                .inner
                .string_variation(flag_key, context.as_ref(), default))
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
            let context = context_arg(context)?;
            Ok(self
                .inner
                .number_variation(flag_key, context.as_ref(), default))
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
            let default = to_json(default).map_err(|e| e.into_err("default"))?;
            let context = context_arg(context)?;
            let value = self
                .inner
                .json_variation(flag_key, context.as_ref(), default);
            to_python(py, &value)
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
                Some(name) => value_kind(name, "type").map_err(to_py)?,
                None => ValueKind::of_default(&default),
            };
            let context = context_arg(context)?;
            let detail = self
                .inner
                .variation_detail(flag_key, context.as_ref(), kind, &default);
            EvaluationDetail::new(py, detail.map(Some))
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
        let timeout = duration(timeout, "timeout")?;
        guard(|| {
            let context = valid_context(context)?.into_owned();
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
            let context = valid_context(context)?;
            self.inner.track(event_name, &context, value).map_err(to_py)
        })
    }

    /// Sends pending events now; waits (without holding the GIL) up to `timeout` seconds.
    /// Returns whether everything was delivered.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = duration(timeout, "timeout")?;
        guard(|| Ok(py.detach(|| self.inner.flush(timeout))))
    }

    /// `wait_for_initialization` without a thread of Python's: `callback(status)` is called
    /// on the client's thread when it is done (the asyncio form builds on it).
    fn _when_initialized(&self, timeout: f64, callback: Py<PyAny>) -> PyResult<()> {
        let timeout = duration(timeout, "timeout")?;
        self.inner.when_initialized(timeout, move |status| {
            call_back(&callback, Status::from(status));
        });
        Ok(())
    }

    /// `identify` without a thread of Python's (see `_when_initialized`).
    fn _when_identified(
        &self,
        context: &Bound<'_, PyAny>,
        timeout: f64,
        callback: Py<PyAny>,
    ) -> PyResult<()> {
        let timeout = duration(timeout, "timeout")?;
        guard(|| {
            let context = valid_context(context)?.into_owned();
            self.inner
                .when_identified(context, timeout, move |arrived| {
                    call_back(&callback, arrived)
                });
            Ok(())
        })
    }

    /// `flush` without a thread of Python's (see `_when_initialized`).
    fn _when_flushed(&self, timeout: f64, callback: Py<PyAny>) -> PyResult<()> {
        let timeout = duration(timeout, "timeout")?;
        self.inner
            .when_flushed(timeout, move |delivered| call_back(&callback, delivered));
        Ok(())
    }

    /// Counters of the event pipeline: `dropped`, `sent`, `failed_batches`, `queued`.
    fn event_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = serde_json::to_value(self.inner.event_stats()).unwrap_or(Value::Null);
        to_python(py, &stats)
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
            let id = self.inner.on_change(move |change| {
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
            Ok(id.number())
        })
    }

    /// Removes a listener; returns whether it was registered. Once it returns, the listener
    /// is not running and will not be called again.
    fn remove_listener(&self, py: Python<'_>, listener_id: u64) -> bool {
        // A running listener needs the GIL to finish: wait for it without holding it.
        py.detach(|| {
            self.inner
                .remove_listener(ListenerId::from_number(listener_id))
        })
    }

    /// Flushes events (up to 5 s), stops the background work and forgets the listeners.
    /// Variation calls keep answering from the last data. Calling it again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        guard(|| {
            py.detach(|| self.inner.close());
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
