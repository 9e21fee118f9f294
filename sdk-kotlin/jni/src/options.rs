//! Client options as the Kotlin library sends them (one JSON object, built by `VexilOptions`),
//! turned into a `vexil_core::Config`. Every error names the option at fault.

use std::time::Duration;

use serde_json::{Map, Value};
use vexil_core::{Config, Context, EventConfig};

use crate::failure::Failure;

fn field<'a>(options: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    options.get(name).filter(|value| !value.is_null())
}

fn string(options: &Map<String, Value>, name: &str) -> Result<Option<String>, Failure> {
    match field(options, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Failure::Config(format!("{name}: must be a string"))),
    }
}

fn millis(options: &Map<String, Value>, name: &str) -> Result<Option<Duration>, Failure> {
    match field(options, name) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(|ms| Some(Duration::from_millis(ms)))
            .ok_or_else(|| Failure::Config(format!("{name}: must be a duration of 0 ms or more"))),
    }
}

fn count(options: &Map<String, Value>, name: &str) -> Result<Option<usize>, Failure> {
    match field(options, name) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| Failure::Config(format!("{name}: must be a whole number above 0"))),
    }
}

fn flag(options: &Map<String, Value>, name: &str) -> Result<Option<bool>, Failure> {
    match field(options, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Failure::Config(format!("{name}: must be true or false"))),
    }
}

/// Builds the core configuration for `sdk_key` from the options JSON.
pub fn config(sdk_key: String, options_json: &str) -> Result<Config, Failure> {
    let parsed: Value = serde_json::from_str(options_json)
        .map_err(|err| Failure::Config(format!("options: not valid JSON: {err}")))?;
    let Value::Object(options) = parsed else {
        return Err(Failure::Config("options: must be a JSON object".to_owned()));
    };
    let mut config = Config::new(sdk_key);
    if let Some(endpoint) = string(&options, "endpoint")? {
        config = config.with_endpoint(endpoint);
    }
    if let Some(dir) = string(&options, "cacheDir")? {
        config = config.with_cache_dir(dir);
    }
    if let Some(file) = string(&options, "bootstrap")? {
        config = config.with_bootstrap(file);
    }
    if let Some(offline) = flag(&options, "offline")? {
        config = config.with_offline(offline);
    }
    if let Some(context) = field(&options, "context") {
        let context = Context::from_json(context)
            .map_err(|err| Failure::InvalidContext(format!("context: {err}")))?;
        config = config.with_context(context);
    }
    if let Some(value) = millis(&options, "connectTimeoutMs")? {
        config.connect_timeout = value;
    }
    if let Some(value) = millis(&options, "streamTimeoutMs")? {
        config.stream_timeout = value;
    }
    if let Some(value) = millis(&options, "initialBackoffMs")? {
        config.initial_backoff = value;
    }
    if let Some(value) = millis(&options, "maxBackoffMs")? {
        config.max_backoff = value;
    }
    if let Some(value) = millis(&options, "maxCacheAgeMs")? {
        config.max_cache_age = value;
    }
    let mut events = EventConfig::default();
    if let Some(enabled) = flag(&options, "eventsEnabled")? {
        events.enabled = enabled;
    }
    if let Some(capacity) = count(&options, "eventCapacity")? {
        events.capacity = capacity;
    }
    if let Some(size) = count(&options, "eventBatchSize")? {
        events.batch_size = size;
    }
    if let Some(interval) = millis(&options, "flushIntervalMs")? {
        events.flush_interval = interval;
    }
    if let Some(summaries) = flag(&options, "evaluationSummaries")? {
        events.summaries = summaries;
    }
    config = config.with_events(events);
    let name = string(&options, "sdkName")?.unwrap_or_else(|| "vexil-kotlin".to_owned());
    let version =
        string(&options, "sdkVersion")?.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    Ok(config.with_sdk(name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_option() {
        let config = config(
            "vxl-server-x".into(),
            r#"{"endpoint":"http://h:1","cacheDir":"/c","offline":true,"connectTimeoutMs":250,
                "flushIntervalMs":100,"eventCapacity":7,"eventsEnabled":false,
                "context":{"kind":"user","key":"u"}}"#,
        )
        .unwrap();
        assert_eq!(config.endpoint, "http://h:1");
        assert!(config.offline);
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.events.flush_interval, Duration::from_millis(100));
        assert_eq!(config.events.capacity, 7);
        assert!(!config.events.enabled);
        assert!(config.initial_context.is_some());
        assert_eq!(config.sdk_name, "vexil-kotlin");
    }

    #[test]
    fn errors_name_the_option() {
        let message = |json: &str| match config("vxl-server-x".into(), json) {
            Err(Failure::Config(m) | Failure::InvalidContext(m)) => m,
            other => panic!("unexpected {other:?}"),
        };
        assert!(message(r#"{"endpoint":3}"#).starts_with("endpoint:"));
        assert!(message(r#"{"eventCapacity":0}"#).starts_with("eventCapacity:"));
        assert!(message(r#"{"connectTimeoutMs":-1}"#).starts_with("connectTimeoutMs:"));
        assert!(message(r#"{"context":{"kind":"user"}}"#).starts_with("context:"));
        assert!(message("[]").starts_with("options:"));
    }
}
