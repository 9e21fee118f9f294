//! The Rust SDK's testee: answers the commands of `conformance/PROTOCOL.md` on stdin/stdout
//! through `vexil-core`'s public API only.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use vexil_core::{Client, Context, ContextRef, Options, ValueKind};

struct Testee {
    client: Option<Client>,
    changes: Option<mpsc::Receiver<Vec<String>>>,
}

fn millis(command: &Value, field: &str, default: u64) -> Duration {
    Duration::from_millis(
        command
            .get(field)
            .and_then(Value::as_u64)
            .unwrap_or(default),
    )
}

/// The command's context, which must be valid.
fn context(command: &Value) -> Result<Context, String> {
    let value = command.get("context").unwrap_or(&Value::Null);
    let context = ContextRef::Json(value).require().map_err(|f| f.message)?;
    Ok(context.into_owned())
}

/// The requested type: explicit, or read from the default as the vector files do.
fn kind(command: &Value, default: &Value) -> Result<ValueKind, String> {
    match command.get("type").and_then(Value::as_str) {
        Some(name) => vexil_core::arguments::value_kind(name, "type").map_err(|f| f.message),
        None => Ok(ValueKind::of_default(default)),
    }
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
                // The command's own fields are the core's options; the reconnection and
                // stream settings make the scenarios that stop a server quick.
                let mut options = json!({
                    "initial_backoff_ms": 100, "max_backoff_ms": 500, "stream_timeout_ms": 5_000,
                    "events": {"flush_interval_ms": millis(command, "flush_interval_ms", 5_000).as_millis() as u64},
                });
                for field in ["endpoint", "cache_dir", "bootstrap", "offline", "context"] {
                    if let Some(value) = command.get(field).filter(|v| !v.is_null()) {
                        options[field] = value.clone();
                    }
                }
                for field in ["private_attributes", "all_attributes_private"] {
                    if let Some(value) = command.get(field).filter(|v| !v.is_null()) {
                        options["events"][field] = value.clone();
                    }
                }
                let config = Options::from_json(&options)
                    .and_then(|options| {
                        options.into_config(key, ("vexil-rust-testee", env!("CARGO_PKG_VERSION")))
                    })
                    .map_err(|f| f.message)?;
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
                Ok(json!({ "status": status }))
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
                Ok(
                    serde_json::to_value(client.variation_detail(flag, context, kind, &default))
                        .map_err(|err| err.to_string())?,
                )
            }
            "evaluate_all" => {
                let client = self.client()?;
                let flags = client.all_flags(&context(command)?);
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
                self.client()?
                    .track(name, &context(command)?, value)
                    .map_err(|f| f.message)?;
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
            "status" => serde_json::to_value(self.client()?.state()).map_err(|err| err.to_string()),
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
