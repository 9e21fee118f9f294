//! How a client is set up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::logging::LogSink;
use crate::test_data::TestData;

/// Settings of a [`Client`](crate::Client). Build with [`Config::new`] and the `with_…`
/// methods; every field has a default fit for production.
#[derive(Clone)]
pub struct Config {
    /// The SDK key. Its kind decides the mode: `vxl-server-…` evaluates locally from the
    /// synced ruleset; `vxl-client-…` and `vxl-mobile-…` receive evaluated values.
    pub sdk_key: String,
    /// The server's gRPC endpoint, `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// Where the last good data is persisted and read at start; `None`: not persisted.
    pub cache_dir: Option<PathBuf>,
    /// Data older than this (from the cache, or since the connection was lost) is reported
    /// stale.
    pub max_cache_age: Duration,
    /// A ruleset JSON file (the export format) used until better data arrives.
    pub bootstrap: Option<PathBuf>,
    /// No network at all: data from the cache file or the bootstrap file, or defaults.
    pub offline: bool,
    /// Timeout of a connection attempt.
    pub connect_timeout: Duration,
    /// A stream with no message (not even a heartbeat) for this long is reconnected.
    pub stream_timeout: Duration,
    /// Backoff of reconnections: the first delay, doubling up to `max_backoff`, jittered;
    /// reset after a minute of health.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The context whose values a client or mobile key watches first (see
    /// [`Client::identify`](crate::Client::identify)).
    pub initial_context: Option<vexil_engine::Context>,
    pub events: EventConfig,
    /// Name and version of the SDK, sent with syncs and event batches.
    pub sdk_name: String,
    pub sdk_version: String,
    /// Where the client's log messages go; `None`: to the application's `tracing`
    /// subscriber, like any crate's (see [`crate::logging`]).
    pub log_sink: Option<Arc<dyn LogSink>>,
    /// An in-memory source of flag data standing in for the server, for tests: the client
    /// then evaluates locally, uses no network and no cache file (see [`TestData`]).
    pub test_data: Option<TestData>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("sdk_key", &redact(&self.sdk_key))
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("bootstrap", &self.bootstrap)
            .field("events", &self.events)
            .field("log_sink", &self.log_sink.as_ref().map(|_| "…"))
            .field("test_data", &self.test_data)
            .finish_non_exhaustive()
    }
}

/// The kind prefix of a key and nothing of its secret.
fn redact(key: &str) -> String {
    let visible: String = key.chars().take(12).collect();
    format!("{visible}…")
}

/// Settings of the event pipeline.
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// Send exposures, track events and evaluation summaries at all.
    pub enabled: bool,
    /// Events held at most while waiting to be sent; beyond, new events are dropped and
    /// counted.
    pub capacity: usize,
    /// Events per batch at most; a full batch is sent at once.
    pub batch_size: usize,
    /// How often pending events are sent.
    pub flush_interval: Duration,
    /// An exposure of the same context, flag and variation within this window is sent once.
    pub exposure_window: Duration,
    /// How many recent exposures are remembered for deduplication.
    pub exposure_memory: usize,
    /// Count evaluations per flag and variation and send the counts (flag-usage insight).
    pub summaries: bool,
    /// Attempts to send a batch before keeping it for the next flush.
    pub attempts: u32,
    /// The attributes that never leave the process with an event (private attributes):
    /// their values are removed before a batch is built, their names listed in the
    /// context's `redacted_attributes`. Evaluation still reads them. A context's own marks
    /// (`private_attributes` in its JSON) are honoured whatever this says.
    pub redaction: vexil_engine::Redaction,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            enabled: true,
            capacity: 10_000,
            batch_size: 500,
            flush_interval: Duration::from_secs(5),
            exposure_window: Duration::from_secs(3600),
            exposure_memory: 10_000,
            summaries: true,
            attempts: 3,
            redaction: vexil_engine::Redaction::default(),
        }
    }
}

impl Config {
    /// The defaults for `sdk_key`: endpoint `http://127.0.0.1:50051`, no cache directory,
    /// online.
    pub fn new(sdk_key: impl Into<String>) -> Config {
        Config {
            sdk_key: sdk_key.into(),
            endpoint: "http://127.0.0.1:50051".into(),
            cache_dir: None,
            max_cache_age: Duration::from_secs(7 * 24 * 3600),
            bootstrap: None,
            offline: false,
            connect_timeout: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            initial_context: None,
            events: EventConfig::default(),
            sdk_name: "vexil-rust".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            log_sink: None,
            test_data: None,
        }
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Config {
        self.endpoint = endpoint.into();
        self
    }

    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Config {
        self.cache_dir = Some(dir.into());
        self
    }

    pub fn with_bootstrap(mut self, file: impl Into<PathBuf>) -> Config {
        self.bootstrap = Some(file.into());
        self
    }

    /// Routes the client's log messages to `sink` rather than to the application's
    /// `tracing` subscriber.
    pub fn with_log_sink(mut self, sink: Arc<dyn LogSink>) -> Config {
        self.log_sink = Some(sink);
        self
    }

    /// Serves the flags of `test_data`, changed by the test as it goes, instead of the
    /// server's (see [`TestData`]).
    pub fn with_test_data(mut self, test_data: &TestData) -> Config {
        self.test_data = Some(test_data.clone());
        self
    }

    pub fn with_offline(mut self, offline: bool) -> Config {
        self.offline = offline;
        self
    }

    pub fn with_context(mut self, context: vexil_engine::Context) -> Config {
        self.initial_context = Some(context);
        self
    }

    pub fn with_events(mut self, events: EventConfig) -> Config {
        self.events = events;
        self
    }

    pub fn with_sdk(mut self, name: impl Into<String>, version: impl Into<String>) -> Config {
        self.sdk_name = name.into();
        self.sdk_version = version.into();
        self
    }
}
