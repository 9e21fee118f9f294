//! The suite's SDK clients: the Rust SDK in process, and bindings driven through their
//! conformance testee (the JSON-lines protocol of `conformance/PROTOCOL.md`). Each runs on a
//! thread of its own that evaluates in a loop, tracks an event every 20 ms (its value a
//! sequence number, so that the database can be checked event by event) and answers flush
//! requests; tracking waits while it flushes, so a delivered flush acknowledges every event
//! tracked before it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use vexil_core::{Client, Config, Context, Reason, Source};

use crate::proxy::Proxy;

/// How one evaluation went.
pub struct Answer {
    pub error: bool,
    pub stale: bool,
}

/// What the worker needs of an SDK.
pub trait Sdk: Send + 'static {
    fn evaluate(&mut self, flag: &str) -> Answer;
    fn track(&mut self, name: &str, value: f64) -> bool;
    fn flush(&mut self, timeout: Duration) -> bool;
    /// Events the SDK dropped because its queue was full.
    fn dropped(&mut self) -> u64;
    fn close(&mut self);
}

/// Counters a worker keeps; read between phases.
#[derive(Default)]
pub struct Counters {
    pub evaluations: AtomicU64,
    pub errors: AtomicU64,
    pub stale: AtomicU64,
    /// Next sequence number of a `track` event (its value).
    pub tracked: AtomicU64,
    pub dropped: AtomicU64,
    /// The flag whose arrival the suite waits for, and whether this client has it (live).
    marker: Mutex<Option<String>>,
    marker_known: AtomicBool,
}

/// A running client: its proxy, its counters, and the way to ask its thread for a flush.
pub struct SdkClient {
    pub proxy: Proxy,
    pub counters: Arc<Counters>,
    /// The event name that tells this client's events apart in the database.
    pub event_name: String,
    flushes: mpsc::Sender<(Duration, mpsc::Sender<(bool, u64)>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SdkClient {
    /// Starts the worker thread of `sdk`.
    pub fn start(
        event_name: String,
        proxy: Proxy,
        mut sdk: impl Sdk,
        stop: Arc<AtomicBool>,
    ) -> SdkClient {
        let counters = Arc::new(Counters::default());
        let (flushes, requests) = mpsc::channel::<(Duration, mpsc::Sender<(bool, u64)>)>();
        let thread = {
            let (counters, event_name) = (counters.clone(), event_name.clone());
            std::thread::spawn(move || {
                let mut last_track = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((timeout, reply)) = requests.try_recv() {
                        let tracked = counters.tracked.load(Ordering::Relaxed);
                        let delivered = sdk.flush(timeout);
                        counters.dropped.store(sdk.dropped(), Ordering::Relaxed);
                        let _ = reply.send((delivered, tracked));
                    }
                    let answer = sdk.evaluate(super::EVALUATED_FLAG);
                    counters.evaluations.fetch_add(1, Ordering::Relaxed);
                    counters
                        .errors
                        .fetch_add(answer.error as u64, Ordering::Relaxed);
                    counters
                        .stale
                        .fetch_add(answer.stale as u64, Ordering::Relaxed);
                    let marker = counters
                        .marker
                        .lock()
                        .map(|m| m.clone())
                        .unwrap_or_default();
                    if let Some(marker) = marker {
                        let answer = sdk.evaluate(&marker);
                        counters
                            .marker_known
                            .store(!answer.error && !answer.stale, Ordering::Relaxed);
                    }
                    if last_track.elapsed() >= Duration::from_millis(20) {
                        last_track = Instant::now();
                        let sequence = counters.tracked.load(Ordering::Relaxed);
                        if sdk.track(&event_name, sequence as f64) {
                            counters.tracked.store(sequence + 1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                sdk.close();
            })
        };
        SdkClient {
            proxy,
            counters,
            event_name,
            flushes,
            thread: Some(thread),
        }
    }

    /// Asks the thread to flush; whether everything was delivered, and how many events had
    /// been tracked then.
    pub fn flush(&self, timeout: Duration) -> (bool, u64) {
        let (reply, answer) = mpsc::channel();
        if self.flushes.send((timeout, reply)).is_err() {
            return (false, 0);
        }
        answer
            .recv_timeout(timeout + Duration::from_secs(5))
            .unwrap_or((false, 0))
    }

    /// From now on the thread also evaluates `marker`; [`SdkClient::knows_marker`] says
    /// when it is there, live.
    pub fn watch_marker(&self, marker: &str) {
        self.counters.marker_known.store(false, Ordering::Relaxed);
        if let Ok(mut held) = self.counters.marker.lock() {
            *held = Some(marker.to_owned());
        }
    }

    pub fn knows_marker(&self) -> bool {
        self.counters.marker_known.load(Ordering::Relaxed)
    }

    /// Waits for the thread, which closes the SDK (the caller set the stop flag).
    pub fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The Rust SDK, in this process.
pub struct RustSdk {
    client: Client,
    context: Context,
}

impl RustSdk {
    pub fn new(sdk_key: &str, endpoint: String, user: &str) -> anyhow::Result<RustSdk> {
        let mut config = Config::new(sdk_key);
        config.endpoint = endpoint;
        // A blackholed stream is noticed after a few missed heartbeats (the servers send one
        // a second here), and reconnections are retried within 5 s at most.
        config.stream_timeout = Duration::from_secs(5);
        config.connect_timeout = Duration::from_secs(2);
        config.max_backoff = Duration::from_secs(5);
        config.events.flush_interval = Duration::from_millis(500);
        let client = Client::new(config)?;
        client.wait_for_initialization(Duration::from_secs(30));
        if client.source() != Source::Network {
            bail!("a Rust client did not initialise");
        }
        Ok(RustSdk {
            client,
            context: Context::from_json(&json!({"kind": "user", "key": user}))?,
        })
    }
}

impl Sdk for RustSdk {
    fn evaluate(&mut self, flag: &str) -> Answer {
        let detail = self
            .client
            .bool_variation_detail(flag, &self.context, false);
        Answer {
            error: matches!(detail.reason, Reason::Error { .. }),
            stale: detail.source != Source::Network,
        }
    }

    fn track(&mut self, name: &str, value: f64) -> bool {
        self.client.track(name, &self.context, Some(value)).is_ok()
    }

    fn flush(&mut self, timeout: Duration) -> bool {
        self.client.flush(timeout)
    }

    fn dropped(&mut self) -> u64 {
        self.client.event_stats().dropped
    }

    fn close(&mut self) {
        self.client.close();
    }
}

/// A binding, through its conformance testee process.
pub struct TesteeSdk {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    context: Value,
}

impl TesteeSdk {
    /// Starts `command` (the testee) and creates its client.
    pub fn new(
        command: &[String],
        sdk_key: &str,
        endpoint: String,
        user: &str,
    ) -> anyhow::Result<TesteeSdk> {
        let (program, args) = command.split_first().context("an empty testee command")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start the testee {program}"))?;
        let input = child.stdin.take().context("testee stdin")?;
        let output = BufReader::new(child.stdout.take().context("testee stdout")?);
        let mut testee = TesteeSdk {
            child,
            input,
            output,
            next_id: 0,
            context: json!({"kind": "user", "key": user}),
        };
        let created = testee.call(json!({
            "cmd": "create", "sdk_key": sdk_key, "endpoint": endpoint, "flush_interval_ms": 500,
        }))?;
        if created["ok"] != json!(true) {
            bail!("the testee did not create a client: {created}");
        }
        let ready = testee.call(json!({"cmd": "wait_init", "timeout_ms": 30000}))?;
        if ready["status"] != json!("READY") {
            bail!("the testee's client did not initialise: {ready}");
        }
        Ok(testee)
    }

    fn call(&mut self, mut command: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        command["id"] = json!(self.next_id);
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("the testee exited");
        }
        Ok(serde_json::from_str(&line)?)
    }
}

impl Sdk for TesteeSdk {
    fn evaluate(&mut self, flag: &str) -> Answer {
        let command =
            json!({"cmd": "evaluate", "flag": flag, "context": self.context, "default": false});
        match self.call(command) {
            Ok(answer) if answer["ok"] == json!(true) => Answer {
                error: answer["reason"]["kind"] == json!("ERROR"),
                stale: answer["source"] != json!("NETWORK"),
            },
            // A testee that cannot answer counts as an evaluation error.
            _ => Answer {
                error: true,
                stale: true,
            },
        }
    }

    fn track(&mut self, name: &str, value: f64) -> bool {
        let command =
            json!({"cmd": "track", "name": name, "context": self.context, "value": value});
        matches!(self.call(command), Ok(answer) if answer["ok"] == json!(true))
    }

    fn flush(&mut self, timeout: Duration) -> bool {
        let command = json!({"cmd": "flush", "timeout_ms": timeout.as_millis() as u64});
        matches!(self.call(command), Ok(answer) if answer["delivered"] == json!(true))
    }

    fn dropped(&mut self) -> u64 {
        match self.call(json!({"cmd": "status"})) {
            Ok(answer) => answer["events"]["dropped"].as_u64().unwrap_or(0),
            Err(_) => 0,
        }
    }

    fn close(&mut self) {
        let _ = self.call(json!({"cmd": "close"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
