//! The Rust SDK's testee: answers the commands of `conformance/PROTOCOL.md` on stdin/stdout
//! through `vexil-core`'s public API only.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use vexil_core::{Client, Config, Detail, EventConfig, Source, Status};
use vexil_engine::{Context, ValueKind};

struct Testee {
    client: Option<Client>,
    changes: Option<mpsc::Receiver<Vec<String>>>,
}

fn status_name(status: &Status) -> &'static str {
    match status {
        Status::Initializing => "INITIALIZING",
        Status::Ready => "READY",
        Status::Stale { .. } => "STALE",
        Status::Offline => "OFFLINE",
        Status::Failed { .. } => "FAILED",
        Status::Closed => "CLOSED",
    }
}

fn source_name(source: Source) -> &'static str {
    source.as_str()
}

fn millis(command: &Value, field: &str, default: u64) -> Duration {
    Duration::from_millis(
        command
            .get(field)
            .and_then(Value::as_u64)
            .unwrap_or(default),
    )
}

fn context(command: &Value) -> Result<Context, String> {
    let value = command.get("context").unwrap_or(&Value::Null);
    Context::from_json(value).map_err(|err| format!("context: {err}"))
}

/// The requested type: explicit, or read from the default as the vector files do.
fn kind(command: &Value, default: &Value) -> Result<ValueKind, String> {
    Ok(match command.get("type").and_then(Value::as_str) {
        Some("bool") => ValueKind::Bool,
        Some("string") => ValueKind::String,
        Some("number") => ValueKind::Number,
        Some("json") => ValueKind::Json,
        Some(other) => return Err(format!("type: unknown {other:?}")),
        None => ValueKind::of_default(default),
    })
}

fn detail_json<T: Into<Value>>(detail: Detail<T>) -> Value {
    json!({
        "value": detail.value.into(),
        "variation": detail.variation,
        "reason": serde_json::to_value(&detail.reason).unwrap_or(Value::Null),
        "in_experiment": detail.in_experiment,
        "source": source_name(detail.source),
        "version": detail.version,
    })
}

impl Testee {
    fn client(&self) -> Result<&Client, String> {
        self.client
            .as_ref()
            .ok_or_else(|| "no client: send `create` first".to_owned())
    }

    fn handle(&mut self, command: &Value) -> Result<Value, String> {
        let name = command
            .get("cmd")
            .and_then(Value::as_str)
            .ok_or("cmd: required")?;
        match name {
            "create" => {
                if let Some(old) = self.client.take() {
                    old.close();
                }
                let key = command
                    .get("sdk_key")
                    .and_then(Value::as_str)
                    .ok_or("sdk_key: required")?;
                let mut config = Config::new(key);
                if let Some(endpoint) = command.get("endpoint").and_then(Value::as_str) {
                    config = config.with_endpoint(endpoint);
                }
                if let Some(dir) = command.get("cache_dir").and_then(Value::as_str) {
                    config = config.with_cache_dir(dir);
                }
                if let Some(file) = command.get("bootstrap").and_then(Value::as_str) {
                    config = config.with_bootstrap(file);
                }
                if command.get("offline").and_then(Value::as_bool) == Some(true) {
                    config = config.with_offline(true);
                }
                if command.get("context").is_some_and(|c| !c.is_null()) {
                    config = config.with_context(context(command)?);
                }
                config.initial_backoff = Duration::from_millis(100);
                config.max_backoff = Duration::from_millis(500);
                config.stream_timeout = Duration::from_secs(5);
                config = config.with_events(EventConfig {
                    flush_interval: millis(command, "flush_interval_ms", 5_000),
                    ..EventConfig::default()
                });
                config = config.with_sdk("vexil-rust-testee", env!("CARGO_PKG_VERSION"));
                let client = Client::new(config).map_err(|err| err.to_string())?;
                let (sender, receiver) = mpsc::channel();
                client.on_change(move |change| {
                    let _ = sender.send(change.flag_keys.clone());
                });
                self.changes = Some(receiver);
                self.client = Some(client);
                Ok(json!({}))
            }
            "wait_init" => {
                let status =
                    self.client()?
                        .wait_for_initialization(millis(command, "timeout_ms", 5_000));
                Ok(json!({ "status": status_name(&status) }))
            }
            "evaluate" => {
                let client = self.client()?;
                let flag = command
                    .get("flag")
                    .and_then(Value::as_str)
                    .ok_or("flag: required")?;
                let default = command.get("default").cloned().unwrap_or(Value::Null);
                let kind = kind(command, &default)?;
                let context = command.get("context").unwrap_or(&Value::Null);
                let detail = client.variation_detail_json(flag, context, kind, &default);
                Ok(detail_json(detail))
            }
            "evaluate_all" => {
                let client = self.client()?;
                let flags: serde_json::Map<String, Value> = client
                    .all_flags(&context(command)?)
                    .into_iter()
                    .map(|(key, d)| {
                        (
                            key,
                            json!({
                                "value": d.value,
                                "variation": d.variation,
                                "reason": serde_json::to_value(&d.reason).unwrap_or(Value::Null),
                                "in_experiment": d.in_experiment,
                            }),
                        )
                    })
                    .collect();
                Ok(json!({ "flags": flags }))
            }
            "identify" => {
                let arrived = self
                    .client()?
                    .identify(context(command)?, millis(command, "timeout_ms", 5_000));
                Ok(json!({ "arrived": arrived }))
            }
            "track" => {
                let name = command
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("name: required")?;
                let value = command.get("value").and_then(Value::as_f64);
                self.client()?.track(name, &context(command)?, value);
                Ok(json!({}))
            }
            "flush" => {
                let delivered = self.client()?.flush(millis(command, "timeout_ms", 5_000));
                Ok(json!({ "delivered": delivered }))
            }
            "wait_change" => {
                let wanted = command.get("flag").and_then(Value::as_str);
                let receiver = self.changes.as_ref().ok_or("no client")?;
                let deadline = std::time::Instant::now() + millis(command, "timeout_ms", 5_000);
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match receiver.recv_timeout(left) {
                        Ok(keys) if wanted.is_none_or(|w| keys.iter().any(|k| k == w)) => {
                            return Ok(json!({ "changed": true, "flag_keys": keys }));
                        }
                        Ok(_) => continue,
                        Err(_) => return Ok(json!({ "changed": false, "flag_keys": [] })),
                    }
                }
            }
            "status" => {
                let client = self.client()?;
                let events = client.event_stats();
                Ok(json!({
                    "status": status_name(&client.status()),
                    "source": source_name(client.source()),
                    "version": client.version(),
                    "events": {"dropped": events.dropped, "sent": events.sent, "queued": events.queued},
                }))
            }
            "close" => {
                if let Some(client) = self.client.take() {
                    client.close();
                }
                Ok(json!({}))
            }
            other => Err(format!("cmd: unknown command {other:?}")),
        }
    }
}

fn main() {
    let mut testee = Testee {
        client: None,
        changes: None,
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(command) => {
                let id = command.get("id").cloned().unwrap_or(Value::Null);
                match testee.handle(&command) {
                    Ok(Value::Object(mut fields)) => {
                        fields.insert("id".into(), id);
                        fields.insert("ok".into(), Value::Bool(true));
                        Value::Object(fields)
                    }
                    Ok(_) => json!({"id": id, "ok": true}),
                    Err(error) => json!({"id": id, "ok": false, "error": error}),
                }
            }
            Err(err) => json!({"id": null, "ok": false, "error": format!("not JSON: {err}")}),
        };
        if writeln!(stdout, "{answer}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    if let Some(client) = testee.client.take() {
        client.close();
    }
}
