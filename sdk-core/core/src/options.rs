//! Client options in their one JSON form, for bindings that receive options as data (the C
//! ABI's `options_json`, objects from JavaScript, Kotlin and Swift records).
//!
//! Field names are snake_case, durations are whole milliseconds (`_ms`); each name also has
//! its camelCase spelling (`cacheDir`, `connectTimeoutMs`), so a binding can pass its
//! language's object as it is. Every field is optional; an unknown field, a wrong type or an
//! out-of-range value fails with `INVALID_OPTIONS` naming the field as the caller spelled it
//! (`options.events.batch_size: must be at least 1`, or `options.events.batchSize: …` for
//! options given in camelCase), a first context that is not valid with `INVALID_CONTEXT`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ErrorCode, Failure};
use crate::{Config, Context, EventConfig, Redaction};

/// The options of a client, every field optional (`None` keeps the default of [`Config`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub endpoint: Option<String>,
    #[serde(alias = "cacheDir")]
    pub cache_dir: Option<PathBuf>,
    pub bootstrap: Option<PathBuf>,
    pub offline: Option<bool>,
    /// The first context of a remote-mode client, as canonical JSON.
    pub context: Option<Value>,
    #[serde(alias = "maxCacheAgeMs")]
    pub max_cache_age_ms: Option<u64>,
    #[serde(alias = "connectTimeoutMs")]
    pub connect_timeout_ms: Option<u64>,
    #[serde(alias = "streamTimeoutMs")]
    pub stream_timeout_ms: Option<u64>,
    #[serde(alias = "initialBackoffMs")]
    pub initial_backoff_ms: Option<u64>,
    #[serde(alias = "maxBackoffMs")]
    pub max_backoff_ms: Option<u64>,
    #[serde(alias = "sdkName")]
    pub sdk_name: Option<String>,
    #[serde(alias = "sdkVersion")]
    pub sdk_version: Option<String>,
    pub events: Option<EventOptions>,
    /// Whether errors name options in camelCase (set when the options were read from JSON
    /// written so).
    #[serde(skip)]
    pub camel_case: bool,
}

/// The options of the event pipeline (see [`EventConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventOptions {
    pub enabled: Option<bool>,
    pub capacity: Option<u64>,
    #[serde(alias = "batchSize")]
    pub batch_size: Option<u64>,
    #[serde(alias = "flushIntervalMs")]
    pub flush_interval_ms: Option<u64>,
    #[serde(alias = "exposureWindowMs")]
    pub exposure_window_ms: Option<u64>,
    #[serde(alias = "exposureMemory")]
    pub exposure_memory: Option<u64>,
    pub summaries: Option<bool>,
    pub attempts: Option<u64>,
    /// Attribute references whose values events never carry (see [`EventConfig::redaction`]).
    #[serde(alias = "privateAttributes")]
    pub private_attributes: Option<Vec<String>>,
    /// Every attribute private: events carry kinds and keys only.
    #[serde(alias = "allAttributesPrivate")]
    pub all_attributes_private: Option<bool>,
}

fn invalid(message: String) -> Failure {
    Failure::new(ErrorCode::InvalidOptions, message)
}

impl Options {
    /// Options from JSON text; empty text (or `null`) is every default. Text that is not JSON
    /// fails with `INVALID_JSON`.
    pub fn from_json_str(text: &str) -> Result<Options, Failure> {
        if text.trim().is_empty() {
            return Ok(Options::default());
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|err| Failure::new(ErrorCode::InvalidJson, format!("options: {err}")))?;
        Options::from_json(&value)
    }

    /// Options from a JSON value; `null` is every default, and so is a `null` field.
    pub fn from_json(value: &Value) -> Result<Options, Failure> {
        if value.is_null() {
            return Ok(Options::default());
        }
        let camel_case = written_in_camel_case(value);
        let mut options: Options = serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let problem = err.into_inner().to_string();
            let at = if path == "." {
                "options".to_owned()
            } else {
                format!("options.{path}")
            };
            // serde names an unknown field in its message; the error names it as its path.
            match problem
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
            {
                // The path names the unknown field itself already, or its parent.
                Some((field, _)) if at.ends_with(&format!(".{field}")) => {
                    invalid(format!("{at}: unknown option"))
                }
                Some((field, _)) => invalid(format!("{at}.{field}: unknown option")),
                None => invalid(format!("{at}: {problem}")),
            }
        })?;
        options.camel_case = camel_case;
        Ok(options)
    }

    /// The client configuration for `sdk_key` with these options; `sdk_name`/`sdk_version`
    /// default to the binding's (`default_sdk`).
    pub fn into_config(
        self,
        sdk_key: impl Into<String>,
        default_sdk: (&str, &str),
    ) -> Result<Config, Failure> {
        let mut config = Config::new(sdk_key).with_sdk(
            self.sdk_name.unwrap_or_else(|| default_sdk.0.to_owned()),
            self.sdk_version.unwrap_or_else(|| default_sdk.1.to_owned()),
        );
        if let Some(endpoint) = self.endpoint {
            config = config.with_endpoint(endpoint);
        }
        if let Some(dir) = self.cache_dir {
            config = config.with_cache_dir(dir);
        }
        if let Some(file) = self.bootstrap {
            config = config.with_bootstrap(file);
        }
        if let Some(offline) = self.offline {
            config = config.with_offline(offline);
        }
        if let Some(context) = self.context.filter(|c| !c.is_null()) {
            let context = Context::from_json(&context).map_err(|err| {
                Failure::new(ErrorCode::InvalidContext, format!("options.context: {err}"))
            })?;
            config = config.with_context(context);
        }
        let ms = Duration::from_millis;
        let set = |slot: &mut Duration, value: Option<u64>| {
            if let Some(v) = value {
                *slot = ms(v);
            }
        };
        set(&mut config.max_cache_age, self.max_cache_age_ms);
        set(&mut config.connect_timeout, self.connect_timeout_ms);
        set(&mut config.stream_timeout, self.stream_timeout_ms);
        set(&mut config.initial_backoff, self.initial_backoff_ms);
        set(&mut config.max_backoff, self.max_backoff_ms);
        if let Some(events) = self.events {
            let mut settings = EventConfig::default();
            let count = |value: u64, field: &str| {
                usize::try_from(value)
                    .map_err(|_| invalid(format!("options.events.{field}: {value} is too many")))
            };
            if let Some(enabled) = events.enabled {
                settings.enabled = enabled;
            }
            if let Some(n) = events.capacity {
                settings.capacity = count(n, "capacity")?;
            }
            if let Some(n) = events.batch_size {
                settings.batch_size = count(n, "batch_size")?;
            }
            set(&mut settings.flush_interval, events.flush_interval_ms);
            set(&mut settings.exposure_window, events.exposure_window_ms);
            if let Some(n) = events.exposure_memory {
                settings.exposure_memory = count(n, "exposure_memory")?;
            }
            if let Some(summaries) = events.summaries {
                settings.summaries = summaries;
            }
            if let Some(n) = events.attempts {
                settings.attempts = u32::try_from(n)
                    .map_err(|_| invalid(format!("options.events.attempts: {n} is too many")))?;
            }
            let references = events.private_attributes.unwrap_or_default();
            let all = events.all_attributes_private.unwrap_or(false);
            settings.redaction = Redaction::new(all, &references).map_err(|(i, problem)| {
                let message = format!("options.events.private_attributes[{i}]: {problem}");
                invalid(if self.camel_case {
                    camel_case_names(&message)
                } else {
                    message
                })
            })?;
            config = config.with_events(settings);
        }
        let camel_case = self.camel_case;
        config.check().map_err(|message| {
            invalid(if camel_case {
                camel_case_names(&message)
            } else {
                message
            })
        })?;
        Ok(config)
    }
}

/// Whether an options object spells its fields in camelCase (any key of it, or of its
/// `events`, holding an uppercase letter).
fn written_in_camel_case(value: &Value) -> bool {
    let uppercase = |object: &serde_json::Map<String, Value>| {
        object.keys().any(|k| k.chars().any(char::is_uppercase))
    };
    value.as_object().is_some_and(|object| {
        uppercase(object)
            || object
                .get("events")
                .and_then(Value::as_object)
                .is_some_and(uppercase)
    })
}

/// A message naming options in snake_case, with every `options.…` name in camelCase.
fn camel_case_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut upper = false;
    let mut in_name = false;
    for (i, c) in message.char_indices() {
        if message[i..].starts_with("options.") {
            in_name = true;
        }
        if in_name && c == '_' {
            upper = true;
            continue;
        }
        if in_name && !(c.is_alphanumeric() || c == '.' || c == '_') {
            in_name = false;
        }
        if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Config {
    /// Checks the settings that would make a client misbehave, naming the option at fault
    /// in the form of [`Options`]. [`Client::new`](crate::Client::new) refuses a
    /// configuration that fails it.
    pub fn check(&self) -> Result<(), String> {
        let positive = |value: Duration, field: &str| {
            if value.is_zero() {
                Err(format!("options.{field}: must be more than 0"))
            } else {
                Ok(())
            }
        };
        positive(self.stream_timeout, "stream_timeout_ms")?;
        positive(self.events.flush_interval, "events.flush_interval_ms")?;
        if self.initial_backoff > self.max_backoff {
            return Err(
                "options.initial_backoff_ms: must not exceed options.max_backoff_ms".into(),
            );
        }
        for (value, field) in [
            (self.events.capacity, "capacity"),
            (self.events.batch_size, "batch_size"),
            (self.events.attempts as usize, "attempts"),
        ] {
            if value == 0 {
                return Err(format!("options.events.{field}: must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Result<Config, Failure> {
        Options::from_json(&value)?.into_config("vxl-server-x", ("vexil-test", "1"))
    }

    #[test]
    fn reads_every_option_in_both_spellings() {
        let snake = config(json!({
            "endpoint": "http://h:1", "cache_dir": "/c", "bootstrap": "/b.json", "offline": true,
            "context": {"kind": "user", "key": "u"}, "max_cache_age_ms": 1,
            "connect_timeout_ms": 2, "stream_timeout_ms": 3, "initial_backoff_ms": 4,
            "max_backoff_ms": 5, "sdk_name": "n", "sdk_version": "v",
            "events": {"enabled": false, "capacity": 6, "batch_size": 7,
                       "flush_interval_ms": 8, "exposure_window_ms": 9, "exposure_memory": 10,
                       "summaries": false, "attempts": 11,
                       "private_attributes": ["email"], "all_attributes_private": false}
        }))
        .unwrap();
        let camel = config(json!({
            "endpoint": "http://h:1", "cacheDir": "/c", "bootstrap": "/b.json", "offline": true,
            "context": {"kind": "user", "key": "u"}, "maxCacheAgeMs": 1,
            "connectTimeoutMs": 2, "streamTimeoutMs": 3, "initialBackoffMs": 4,
            "maxBackoffMs": 5, "sdkName": "n", "sdkVersion": "v",
            "events": {"enabled": false, "capacity": 6, "batchSize": 7,
                       "flushIntervalMs": 8, "exposureWindowMs": 9, "exposureMemory": 10,
                       "summaries": false, "attempts": 11,
                       "privateAttributes": ["email"], "allAttributesPrivate": false}
        }))
        .unwrap();
        for c in [&snake, &camel] {
            assert_eq!(c.endpoint, "http://h:1");
            assert_eq!(c.cache_dir, Some(PathBuf::from("/c")));
            assert!(c.offline);
            assert!(c.initial_context.is_some());
            assert_eq!(c.max_cache_age, Duration::from_millis(1));
            assert_eq!(c.max_backoff, Duration::from_millis(5));
            assert_eq!((c.sdk_name.as_str(), c.sdk_version.as_str()), ("n", "v"));
            assert!(!c.events.enabled && !c.events.summaries);
            assert_eq!(c.events.capacity, 6);
            assert_eq!(c.events.flush_interval, Duration::from_millis(8));
            assert_eq!(c.events.attempts, 11);
            assert_eq!(
                c.events.redaction,
                Redaction::new(false, &["email"]).unwrap()
            );
        }
        let defaults = config(Value::Null).unwrap();
        assert_eq!(defaults.sdk_name, "vexil-test");
        assert_eq!(Options::from_json_str("  ").unwrap(), Options::default());
    }

    #[test]
    fn errors_name_the_option() {
        let failure = |value: Value| config(value).unwrap_err();
        let f = failure(json!({"endpoint": 3}));
        assert_eq!(f.code, ErrorCode::InvalidOptions);
        assert!(f.message.starts_with("options.endpoint: "), "{}", f.message);
        let f = failure(json!({"cachDir": "/x"}));
        assert_eq!(f.message, "options.cachDir: unknown option");
        let f = failure(json!({"events": {"flushInterval": 5}}));
        assert_eq!(f.message, "options.events.flushInterval: unknown option");
        let f = failure(json!({"events": {"batchSize": 0}}));
        assert_eq!(f.message, "options.events.batchSize: must be at least 1");
        let f = failure(json!({"initialBackoffMs": 10, "maxBackoffMs": 5}));
        assert_eq!(
            f.message,
            "options.initialBackoffMs: must not exceed options.maxBackoffMs"
        );
        let f = failure(json!({"events": {"privateAttributes": ["ok", "/bad~2"]}}));
        assert!(
            f.message
                .starts_with("options.events.privateAttributes[1]: \"/bad~2\" is not"),
            "{}",
            f.message
        );
        let f = failure(json!({"events": {"capacity": 0}}));
        assert_eq!(f.message, "options.events.capacity: must be at least 1");
        let f = failure(json!({"connectTimeoutMs": -1}));
        assert!(
            f.message.starts_with("options.connectTimeoutMs: "),
            "{}",
            f.message
        );
        let f = failure(json!({"stream_timeout_ms": 0}));
        assert_eq!(f.message, "options.stream_timeout_ms: must be more than 0");
        let f = failure(json!({"initial_backoff_ms": 10, "max_backoff_ms": 5}));
        assert!(f.message.starts_with("options.initial_backoff_ms"));
        let f = failure(json!({"context": {"kind": "user"}}));
        assert_eq!(f.code, ErrorCode::InvalidContext);
        assert!(f.message.starts_with("options.context: "), "{}", f.message);
        let f = failure(json!([]));
        assert!(f.message.starts_with("options: "), "{}", f.message);
        let f = Options::from_json_str("{").unwrap_err();
        assert_eq!(f.code, ErrorCode::InvalidJson);
    }
}
