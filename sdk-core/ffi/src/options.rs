//! The client options given as JSON to `vexil_client_new`, turned into a `Config`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use vexil_core::{Config, EventConfig};
use vexil_engine::Context;

use crate::{Failure, VexilCode};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    endpoint: Option<String>,
    cache_dir: Option<String>,
    bootstrap: Option<String>,
    #[serde(default)]
    offline: bool,
    context: Option<Value>,
    max_cache_age_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    stream_timeout_ms: Option<u64>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    sdk_name: Option<String>,
    sdk_version: Option<String>,
    events: Option<EventOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventOptions {
    enabled: Option<bool>,
    capacity: Option<usize>,
    batch_size: Option<usize>,
    flush_interval_ms: Option<u64>,
    exposure_window_ms: Option<u64>,
    exposure_memory: Option<usize>,
    summaries: Option<bool>,
    attempts: Option<u32>,
}

fn invalid(message: String) -> Failure {
    Failure::new(VexilCode::InvalidOptions, message)
}

/// The configuration for `sdk_key` with the options of `json` (empty: the defaults).
pub(crate) fn config(sdk_key: &str, json: &str) -> Result<Config, Failure> {
    let options: Options = if json.trim().is_empty() {
        Options::default()
    } else {
        let mut reader = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut reader).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Failure::new(VexilCode::InvalidJson, format!("options_json: {inner}"))
            } else if path == "." {
                invalid(format!("options_json: {inner}"))
            } else {
                invalid(format!("options_json.{path}: {inner}"))
            }
        })?
    };
    let mut config = Config::new(sdk_key).with_sdk("vexil-c", env!("CARGO_PKG_VERSION"));
    if let Some(endpoint) = options.endpoint {
        config = config.with_endpoint(endpoint);
    }
    if let Some(dir) = options.cache_dir {
        config = config.with_cache_dir(dir);
    }
    if let Some(file) = options.bootstrap {
        config = config.with_bootstrap(file);
    }
    config = config.with_offline(options.offline);
    if let Some(context) = options.context.filter(|c| !c.is_null()) {
        let context = Context::from_json(&context).map_err(|err| {
            Failure::new(
                VexilCode::InvalidContext,
                format!("options_json.context: {err}"),
            )
        })?;
        config = config.with_context(context);
    }
    let ms = Duration::from_millis;
    if let Some(v) = options.max_cache_age_ms {
        config.max_cache_age = ms(v);
    }
    if let Some(v) = options.connect_timeout_ms {
        config.connect_timeout = ms(v);
    }
    if let Some(v) = options.stream_timeout_ms {
        config.stream_timeout = ms(v);
    }
    if let Some(v) = options.initial_backoff_ms {
        config.initial_backoff = ms(v);
    }
    if let Some(v) = options.max_backoff_ms {
        config.max_backoff = ms(v);
    }
    if config.initial_backoff > config.max_backoff {
        return Err(invalid(
            "options_json.initial_backoff_ms: must not exceed max_backoff_ms".into(),
        ));
    }
    match (options.sdk_name, options.sdk_version) {
        (Some(name), Some(version)) => config = config.with_sdk(name, version),
        (Some(name), None) => config.sdk_name = name,
        (None, Some(version)) => config.sdk_version = version,
        (None, None) => {}
    }
    if let Some(events) = options.events {
        let defaults = EventConfig::default();
        let positive = |value: Option<usize>, field: &str, default: usize| match value {
            Some(0) => Err(invalid(format!(
                "options_json.events.{field}: must be at least 1"
            ))),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        config = config.with_events(EventConfig {
            enabled: events.enabled.unwrap_or(defaults.enabled),
            capacity: positive(events.capacity, "capacity", defaults.capacity)?,
            batch_size: positive(events.batch_size, "batch_size", defaults.batch_size)?,
            flush_interval: events.flush_interval_ms.map_or(defaults.flush_interval, ms),
            exposure_window: events
                .exposure_window_ms
                .map_or(defaults.exposure_window, ms),
            exposure_memory: events.exposure_memory.unwrap_or(defaults.exposure_memory),
            summaries: events.summaries.unwrap_or(defaults.summaries),
            attempts: match events.attempts {
                Some(0) => {
                    return Err(invalid(
                        "options_json.events.attempts: must be at least 1".into(),
                    ));
                }
                Some(v) => v,
                None => defaults.attempts,
            },
        });
    }
    Ok(config)
}
