//! Load generator for the evaluation path: Evaluate throughput and latency, EvaluateAll over
//! 10,000 flags, propagation of changes to Sync/Watch streams across instances, and the
//! memory held per stream.
//!
//! Every scenario starts its own `vexil-server` processes (the binary given by `--server-bin`
//! or `VEXIL_SERVER_BIN`) on loopback ports with fresh data directories, drives them over
//! gRPC from this process, prints figures and stops them. Nothing is asserted.
//!
//! ```text
//! cargo build --release -p vexil-server --examples --bins
//! target/release/examples/load evaluate            # throughput, then p99 at 10,000 req/s
//! target/release/examples/load evaluate-all        # 10,000 flags, one context
//! target/release/examples/load propagation         # needs VEXIL_TEST_DATABASE_URL, VEXIL_TEST_REDIS_URL
//! target/release/examples/load memory              # RSS per stream
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::evaluation_service_client::EvaluationServiceClient;
use vexil_proto::v1::sync_service_client::SyncServiceClient;

const PROJECT: &str = "default";
/// Streams opened per HTTP/2 connection (servers commonly cap concurrent streams at 200).
const STREAMS_PER_CHANNEL: usize = 100;
/// Largest ruleset JSON sent in one ImportEnvironment (the server takes up to 4 MiB).
const IMPORT_CHUNK: usize = 2_000;

#[derive(Debug, Parser)]
#[command(about = "Load generator for vexil-server's evaluation path")]
struct Cli {
    /// The vexil-server binary to start (default: the one built beside this example).
    #[arg(long, env = "VEXIL_SERVER_BIN")]
    server_bin: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Evaluate: closed-loop max throughput, then latency at a fixed open-loop rate.
    Evaluate {
        /// HTTP/2 connections shared by the requests.
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// Requests in flight in the closed-loop phase.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Seconds measured per phase (after 2 s of warm-up).
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
        /// Requests per second of the open-loop phase.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
    },
    /// EvaluateAll over many flags for one context, one request at a time.
    EvaluateAll {
        #[arg(long, default_value_t = 10_000)]
        flags: usize,
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// Changes through instance A, timed to every stream on every instance.
    Propagation {
        #[arg(long, default_value_t = 3)]
        instances: usize,
        #[arg(long, default_value_t = 1_000)]
        streams: usize,
        /// Flag toggles made through instance A, one after the other.
        #[arg(long, default_value_t = 200)]
        changes: usize,
        /// Pause between two changes, in milliseconds.
        #[arg(long, default_value_t = 250)]
        gap_ms: u64,
        #[arg(long, value_enum, default_value_t = StreamKind::Sync)]
        kind: StreamKind,
        /// Postgres to create the benchmark database in.
        #[arg(long, env = "VEXIL_TEST_DATABASE_URL")]
        database_url: String,
        #[arg(long, env = "VEXIL_TEST_REDIS_URL")]
        redis_url: String,
    },
    /// RSS of one instance before and after opening many streams.
    Memory {
        #[arg(long, default_value_t = 10_000)]
        streams: usize,
        #[arg(long, value_enum, default_value_t = StreamKind::Sync)]
        kind: StreamKind,
        /// Flags in the environment (Watch streams remember one result per flag).
        #[arg(long, default_value_t = 10)]
        flags: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StreamKind {
    Sync,
    Watch,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.server_bin.is_none() {
        // target/<profile>/examples/load -> target/<profile>/vexil-server
        let exe = std::env::current_exe()?;
        cli.server_bin = exe
            .parent()
            .and_then(|examples| examples.parent())
            .map(|profile| profile.join("vexil-server"));
    }
    let server_bin = cli
        .server_bin
        .clone()
        .ok_or_else(|| anyhow::anyhow!("pass --server-bin"))?;
    anyhow::ensure!(
        server_bin.is_file(),
        "no server binary at {} (build it, or pass --server-bin)",
        server_bin.display()
    );
    println!(
        "host: {} CPUs; generator: this process (tokio, {} workers); server: separate process(es) {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tokio::runtime::Handle::current().metrics().num_workers(),
        server_bin.display()
    );
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    match cli.scenario {
        Scenario::Evaluate {
            channels,
            concurrency,
            seconds,
            rate,
        } => evaluate(&server_bin, channels, concurrency, seconds, rate).await,
        Scenario::EvaluateAll { flags, requests } => {
            evaluate_all(&server_bin, flags, requests).await
        }
        Scenario::Propagation {
            instances,
            streams,
            changes,
            gap_ms,
            kind,
            database_url,
            redis_url,
        } => {
            let run = PropagationRun {
                bin: &server_bin,
                instances,
                streams,
                changes,
                gap: Duration::from_millis(gap_ms),
                kind,
                redis_url: &redis_url,
            };
            propagation(&run, &database_url).await
        }
        Scenario::Memory {
            streams,
            kind,
            flags,
        } => memory(&server_bin, streams, kind, flags).await,
    }
}

// ---------------------------------------------------------------------------------------
// Server processes

/// Options of a server process beyond its ports and data directory.
#[derive(Debug, Default, Clone)]
struct ServerOptions {
    database_url: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    jwt_secret: Option<String>,
}

/// A `vexil-server` child process, killed when dropped.
#[derive(Debug)]
struct Instance {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Instance {
    /// Starts a server and waits until it answers `/readyz`.
    async fn start(bin: &Path, options: &ServerOptions) -> anyhow::Result<Instance> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let (grpc, http) = (free_port()?, free_port()?);
        // VEXIL_LOAD_LOG_DIR keeps the server logs (named by port) after the run.
        let log_path = match std::env::var_os("VEXIL_LOAD_LOG_DIR") {
            Some(keep) => PathBuf::from(keep).join(format!("server-{}.log", grpc.port())),
            None => dir.path().join("server.log"),
        };
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(bin);
        command
            .arg("--listen")
            .arg(grpc.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .env(
                "RUST_LOG",
                std::env::var("VEXIL_LOAD_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        for (flag, value) in [
            ("--database-url", &options.database_url),
            ("--redis-url", &options.redis_url),
            ("--redis-prefix", &options.redis_prefix),
            ("--jwt-secret", &options.jwt_secret),
        ] {
            if let Some(value) = value {
                command.arg(flag).arg(value);
            }
        }
        let child = command.spawn().context("start vexil-server")?;
        let mut instance = Instance {
            child,
            grpc,
            http,
            data_dir,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = instance.child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("vexil-server exited with {status}:\n{log}");
            }
            if http_get(instance.http, "/readyz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(instance);
            }
            if Instant::now() > deadline {
                bail!("vexil-server did not become ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn credentials(&self) -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(self.data_dir.join("credentials.json"))
            .context("read credentials.json")?;
        Ok(serde_json::from_str(&text)?)
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.grpc))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }

    /// Resident set size of the process, in KiB.
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS in /proc/<pid>/status")
    }
}

/// A plain HTTP/1.1 GET; the whole response as text.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The credential of a first start: `sdk_keys.<env>.<kind>` or the admin token.
fn secret(credentials: &Value, pointer: &str) -> anyhow::Result<String> {
    credentials
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{pointer} in credentials.json"))
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    vexil_proto::authorize(&mut request, token).expect("tokens the server issues are ASCII");
    request
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A bool flag with one `in` rule and a 50/50 rollout fallthrough: the common shape, kept in
/// bench_flag.json (the seeds example of vexil-testing loads it too).
fn bench_flag(key: &str) -> Value {
    let mut flag: Value =
        serde_json::from_str(include_str!("bench_flag.json")).expect("bench_flag.json is JSON");
    flag["key"] = key.into();
    flag
}

/// Imports `count` flags `flag-00000`… into `env`, in chunks; returns the last version.
async fn import_flags(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    env: &str,
    count: usize,
) -> anyhow::Result<i64> {
    let mut version = 0;
    let keys: Vec<String> = (0..count).map(|i| format!("flag-{i:05}")).collect();
    for chunk in keys.chunks(IMPORT_CHUNK) {
        let flags: Vec<Value> = chunk.iter().map(|k| bench_flag(k)).collect();
        let ruleset = json!({ "flags": flags, "segments": [] });
        let reply = admin
            .import_environment(authed(
                pb::ImportEnvironmentRequest {
                    project_key: PROJECT.into(),
                    environment_key: env.into(),
                    ruleset_json: ruleset.to_string(),
                    expected_version: None,
                },
                token,
            ))
            .await?
            .into_inner();
        version = reply.version;
    }
    Ok(version)
}

fn string_value(text: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(text.into())),
    }
}

fn user_context(key: &str) -> pb::Context {
    pb::Context {
        kind: "user".into(),
        key: key.into(),
        attributes: Some(prost_types::Struct {
            fields: [
                ("country".to_owned(), string_value("DE")),
                ("plan".to_owned(), string_value("pro")),
            ]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

fn evaluate_request(user: usize) -> pb::EvaluateRequest {
    pb::EvaluateRequest {
        flag_key: "flag-00000".into(),
        context: Some(user_context(&format!("user-{user}"))),
        default_value: Some(prost_types::Value {
            kind: Some(prost_types::value::Kind::BoolValue(false)),
        }),
        kind: pb::FlagKind::Bool as i32,
    }
}

/// Waits until the instance serves `env` at `version` or later.
async fn wait_for_version(channel: &Channel, sdk_key: &str, version: i64) -> anyhow::Result<()> {
    let mut client = EvaluationServiceClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = client
            .evaluate(authed(evaluate_request(0), sdk_key))
            .await?
            .into_inner();
        if reply.environment_version >= version {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the instance did not reach version {version}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `n p50 p90 p99 p99.9 max` of values in milliseconds.
fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "n={} p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3} ms",
        values.len(),
        percentile(values, 50.0),
        percentile(values, 90.0),
        percentile(values, 99.0),
        percentile(values, 99.9),
        values.last().copied().unwrap_or(f64::NAN)
    )
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Server CPU time (user + system) in seconds, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // Field 14 is index 11 after the state field (3); clock ticks are 100 per second on Linux.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

// ---------------------------------------------------------------------------------------
// Evaluate

async fn evaluate(
    bin: &Path,
    channels: usize,
    concurrency: usize,
    seconds: f64,
    rate: f64,
) -> anyhow::Result<()> {
    let server = Instance::start(bin, &ServerOptions::default()).await?;
    let credentials = server.credentials()?;
    let token = secret(&credentials, "/admin_token/token")?;
    let sdk_key = secret(&credentials, "/sdk_keys/production/server")?;
    let mut admin = AdminServiceClient::new(server.channel().await?);
    let version = import_flags(&mut admin, &token, "production", 100).await?;
    let mut pool = Vec::new();
    for _ in 0..channels.max(1) {
        pool.push(EvaluationServiceClient::new(server.channel().await?));
    }
    wait_for_version(&server.channel().await?, &sdk_key, version).await?;
    let sdk_key: Arc<str> = sdk_key.into();
    println!(
        "Evaluate: 100 flags (rule + 50/50 rollout), server SDK key, SQLite store, {} channels",
        pool.len()
    );

    // Closed loop: `concurrency` tasks, each with one request in flight.
    let warmup = Duration::from_secs(2);
    let measured = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (measure_from, measure_to) = (start + warmup, start + warmup + measured);
    // Refusals of an overloaded server (RESOURCE_EXHAUSTED, beyond --max-inflight-requests)
    // apart from every other error (a dropped connection would show there).
    let errors = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for t in 0..concurrency {
        let mut client = pool[t % pool.len()].clone();
        let (sdk_key, errors, shed) = (sdk_key.clone(), errors.clone(), shed.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut user = t * 1_000_000;
            loop {
                let sent = Instant::now();
                if sent >= measure_to {
                    return latencies;
                }
                user += 1;
                let reply = client
                    .evaluate(authed(evaluate_request(user % 100_000), &sdk_key))
                    .await;
                match reply {
                    Ok(_) => {}
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        shed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if sent >= measure_from && Instant::now() <= measure_to {
                    latencies.push(millis(sent.elapsed()));
                }
            }
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = cpu_seconds(server.child.id());
    let own_before = cpu_seconds(std::process::id());
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done?);
    }
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    let own = cpu_seconds(std::process::id()) - own_before;
    println!(
        "closed loop, {concurrency} in flight: {:.0} req/s answered over {seconds} s, shed (RESOURCE_EXHAUSTED) {}, other errors {}, CPU: server {:.2} cores, generator {:.2} cores; latency of answered calls {}",
        latencies.len() as f64 / seconds,
        shed.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        cpu / seconds,
        own / seconds,
        summary(&mut latencies)
    );

    // Open loop: a pacing thread issues request i at start + i / rate whatever the replies
    // do; latency is counted from that intended time (no coordinated omission) and also
    // from the actual issue.
    let total = (rate * (seconds + 2.0)) as usize;
    let skip = (rate * 2.0) as usize;
    let runtime = tokio::runtime::Handle::current();
    let (pool2, key2) = (pool.clone(), sdk_key.clone());
    let cpu_before = cpu_seconds(server.child.id());
    let own_before = cpu_seconds(std::process::id());
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        let mut handles = Vec::with_capacity(total);
        let mut late = 0u64;
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else if now - due > Duration::from_millis(1) {
                late += 1;
            }
            let mut client = pool2[i % pool2.len()].clone();
            let key = key2.clone();
            handles.push(runtime.spawn(async move {
                let issued = Instant::now();
                let reply = client
                    .evaluate(authed(evaluate_request(i % 100_000), &key))
                    .await;
                let done = Instant::now();
                (millis(done - due), millis(done - issued), reply.err())
            }));
        }
        (handles, late, start.elapsed())
    });
    let (handles, late, paced) = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("pacer thread panicked"))?;
    let (mut from_due, mut from_issue, mut failed) = (Vec::new(), Vec::new(), 0);
    for (i, handle) in handles.into_iter().enumerate() {
        let (due, issue, error) = handle.await?;
        if let Some(error) = error {
            if failed == 0 {
                println!("first error: {error}");
            }
            failed += 1;
        }
        if i >= skip {
            from_due.push(due);
            from_issue.push(issue);
        }
    }
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    let own = cpu_seconds(std::process::id()) - own_before;
    println!(
        "open loop, {rate:.0} req/s target: issued {total} in {:.2} s ({:.0} req/s), issued >1 ms late: {late}, errors {failed}, CPU: server {:.2} cores, generator {:.2} cores",
        paced.as_secs_f64(),
        total as f64 / paced.as_secs_f64(),
        cpu / paced.as_secs_f64(),
        own / paced.as_secs_f64()
    );
    println!(
        "  latency from intended send time: {}",
        summary(&mut from_due)
    );
    println!(
        "  latency from actual send:        {}",
        summary(&mut from_issue)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// EvaluateAll

/// A server with default options serving `flags` flags imported into `production`: the
/// server, its server SDK key and a channel to it.
async fn serving_flags(bin: &Path, flags: usize) -> anyhow::Result<(Instance, String, Channel)> {
    let server = Instance::start(bin, &ServerOptions::default()).await?;
    let credentials = server.credentials()?;
    let token = secret(&credentials, "/admin_token/token")?;
    let sdk_key = secret(&credentials, "/sdk_keys/production/server")?;
    let channel = server.channel().await?;
    let mut admin = AdminServiceClient::new(channel.clone());
    let started = Instant::now();
    let version = import_flags(&mut admin, &token, "production", flags).await?;
    println!(
        "imported {flags} flags in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_for_version(&channel, &sdk_key, version).await?;
    Ok((server, sdk_key, channel))
}

async fn evaluate_all(bin: &Path, flags: usize, requests: usize) -> anyhow::Result<()> {
    let (server, sdk_key, channel) = serving_flags(bin, flags).await?;
    let mut client = EvaluationServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let request = || pb::EvaluateAllRequest {
        context: Some(user_context("user-42")),
        flag_keys: Vec::new(),
    };
    let mut latencies = Vec::with_capacity(requests);
    let mut results = 0;
    let cpu_before = cpu_seconds(server.child.id());
    for i in 0..requests + 20 {
        let sent = Instant::now();
        let reply = client
            .evaluate_all(authed(request(), &sdk_key))
            .await?
            .into_inner();
        // The first 20 are warm-up.
        if i >= 20 {
            latencies.push(millis(sent.elapsed()));
        }
        results = reply.results.len();
    }
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    println!(
        "EvaluateAll, {results} results per reply, one request at a time: {}; server CPU {:.1} ms per request",
        summary(&mut latencies),
        cpu * 1000.0 / (requests + 20) as f64
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Streams

/// A change seen by a stream: which stream, the environment version, when.
#[derive(Debug)]
struct Delivery {
    stream: usize,
    version: i64,
    at: Instant,
}

/// Follows an open stream: on its first message signals `ready` and lets the next stream
/// open (drops `permit`), then reports the version of each change message (`version_of`) to
/// `deliveries`.
async fn report_changes<M>(
    mut messages: tonic::Streaming<M>,
    permit: Result<OwnedSemaphorePermit, AcquireError>,
    ready: &mpsc::UnboundedSender<anyhow::Result<()>>,
    deliveries: &Option<mpsc::UnboundedSender<Delivery>>,
    stream: usize,
    version_of: fn(M) -> Option<i64>,
) -> anyhow::Result<()> {
    messages.message().await?.context("stream ended at once")?;
    let _ = ready.send(Ok(()));
    drop(permit);
    while let Some(message) = messages.message().await? {
        if let Some(version) = version_of(message)
            && let Some(out) = deliveries
        {
            let _ = out.send(Delivery {
                stream,
                version,
                at: Instant::now(),
            });
        }
    }
    Ok(())
}

/// Opens a stream and follows it until aborted: signals `ready` on its first message,
/// then reports every change message to `deliveries`.
async fn follow(
    channel: Channel,
    kind: StreamKind,
    sdk_key: Arc<str>,
    stream: usize,
    ready: mpsc::UnboundedSender<anyhow::Result<()>>,
    deliveries: Option<mpsc::UnboundedSender<Delivery>>,
    opening: Arc<Semaphore>,
) {
    let permit = opening.acquire_owned().await;
    let outcome = async {
        match kind {
            StreamKind::Sync => {
                let mut client =
                    SyncServiceClient::new(channel).max_decoding_message_size(64 << 20);
                let request = pb::SyncRequest {
                    version: 0,
                    sdk_name: "vexil-load".into(),
                    sdk_version: "0".into(),
                };
                let messages = client.sync(authed(request, &sdk_key)).await?.into_inner();
                report_changes(messages, permit, &ready, &deliveries, stream, |message| {
                    match message.event {
                        Some(pb::sync_response::Event::Patch(patch)) => Some(patch.version),
                        _ => None,
                    }
                })
                .await
            }
            StreamKind::Watch => {
                let mut client =
                    EvaluationServiceClient::new(channel).max_decoding_message_size(64 << 20);
                let request = pb::WatchRequest {
                    context: Some(user_context(&format!("user-{stream}"))),
                    flag_keys: Vec::new(),
                    version: 0,
                };
                let messages = client.watch(authed(request, &sdk_key)).await?.into_inner();
                report_changes(messages, permit, &ready, &deliveries, stream, |message| {
                    match message.event {
                        Some(pb::watch_response::Event::Changes(changes)) => {
                            Some(changes.environment_version)
                        }
                        _ => None,
                    }
                })
                .await
            }
        }
    }
    .await;
    if let Err(err) = outcome {
        // Before the first message this reports a failure to open; later, nobody listens.
        let _ = ready.send(Err(err));
    }
}

/// Opens `count` streams spread over `instances` (round robin, 100 per connection) and
/// waits for each one's first message.
async fn open_streams(
    instances: &[&Instance],
    count: usize,
    kind: StreamKind,
    sdk_key: &str,
    deliveries: Option<mpsc::UnboundedSender<Delivery>>,
) -> anyhow::Result<(JoinSet<()>, Vec<usize>)> {
    let sdk_key: Arc<str> = sdk_key.into();
    let per_instance = count.div_ceil(instances.len());
    let mut channels = Vec::new();
    for instance in instances {
        let mut held = Vec::new();
        for _ in 0..per_instance.div_ceil(STREAMS_PER_CHANNEL) {
            held.push(instance.channel().await?);
        }
        channels.push(held);
    }
    let (ready, mut readies) = mpsc::unbounded_channel();
    let opening = Arc::new(Semaphore::new(200));
    let mut tasks = JoinSet::new();
    let mut placement = Vec::with_capacity(count);
    for stream in 0..count {
        let instance = stream % instances.len();
        let nth = stream / instances.len();
        let channel = channels[instance][nth / STREAMS_PER_CHANNEL].clone();
        placement.push(instance);
        tasks.spawn(follow(
            channel,
            kind,
            sdk_key.clone(),
            stream,
            ready.clone(),
            deliveries.clone(),
            opening.clone(),
        ));
    }
    let started = Instant::now();
    for _ in 0..count {
        match tokio::time::timeout(Duration::from_secs(120), readies.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(err))) => bail!("a stream failed to open: {err:#}"),
            Ok(None) | Err(_) => bail!("streams did not open in time"),
        }
    }
    println!(
        "opened {count} {kind:?} streams over {} connections in {:.2} s",
        channels.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    Ok((tasks, placement))
}

// ---------------------------------------------------------------------------------------
// Propagation

/// A fresh database on the Postgres of `admin_url`; its URL.
async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut admin = sqlx::postgres::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let host_end = base
        .find("://")
        .and_then(|scheme| base[scheme + 3..].find('/').map(|slash| scheme + 3 + slash))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        url = format!("{url}?{query}");
    }
    Ok(url)
}

async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(admin_url).await {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
    }
}

/// A propagation run: the fleet, its streams, and the changes made through instance A.
#[derive(Clone, Copy)]
struct PropagationRun<'a> {
    bin: &'a Path,
    instances: usize,
    streams: usize,
    changes: usize,
    gap: Duration,
    kind: StreamKind,
    redis_url: &'a str,
}

async fn propagation(run: &PropagationRun<'_>, database_admin_url: &str) -> anyhow::Result<()> {
    let tag = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let database = format!("vexil_load_{tag}");
    let url = create_database(database_admin_url, &database).await?;
    let outcome = propagation_on(run, &url, &tag).await;
    drop_database(database_admin_url, &database).await;
    outcome
}

/// The version of the `development` environment.
async fn development_version(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
) -> anyhow::Result<i64> {
    let request = pb::GetEnvironmentRequest {
        project_key: PROJECT.into(),
        key: "development".into(),
    };
    let environment = admin
        .get_environment(authed(request, token))
        .await?
        .into_inner();
    Ok(environment.version)
}

async fn propagation_on(
    run: &PropagationRun<'_>,
    database_url: &str,
    tag: &str,
) -> anyhow::Result<()> {
    let PropagationRun {
        bin,
        instances,
        streams,
        changes,
        gap,
        kind,
        redis_url,
    } = *run;
    let options = ServerOptions {
        database_url: Some(database_url.into()),
        redis_url: Some(redis_url.into()),
        redis_prefix: Some(format!("vexil-load-{tag}")),
        jwt_secret: Some(format!("load-secret-{tag}-0123456789")),
    };
    // The first instance does the first start (credentials), the others join.
    let first = Instance::start(bin, &options).await?;
    let credentials = first.credentials()?;
    let token = secret(&credentials, "/admin_token/token")?;
    let sdk_key = secret(&credentials, "/sdk_keys/development/server")?;
    let mut admin = AdminServiceClient::new(first.channel().await?);
    import_flags(&mut admin, &token, "development", 10).await?;
    let mut fleet = vec![first];
    for _ in 1..instances {
        fleet.push(Instance::start(bin, &options).await?);
    }
    let base = development_version(&mut admin, &token).await?;
    for instance in &fleet {
        wait_for_version(&instance.channel().await?, &sdk_key, base).await?;
    }
    println!(
        "{instances} instances on one Postgres and one Redis; environment of 10 flags at version {base}"
    );

    let (deliveries_tx, mut deliveries) = mpsc::unbounded_channel();
    let refs: Vec<&Instance> = fleet.iter().collect();
    let (mut tasks, placement) =
        open_streams(&refs, streams, kind, &sdk_key, Some(deliveries_tx)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    while deliveries.try_recv().is_ok() {}

    // Toggle flag-00000 through instance A: each change moves the environment one version.
    let flag = admin
        .get_flag(authed(
            pb::GetFlagRequest {
                project_key: PROJECT.into(),
                key: "flag-00000".into(),
                environment_keys: vec!["development".into()],
            },
            &token,
        ))
        .await?
        .into_inner();
    let configuration = flag
        .configurations
        .first()
        .context("configuration of flag-00000")?;
    let (mut config_version, mut on) = (configuration.version, configuration.on);
    // Per change: (just before the call, when it returned).
    let mut sent = Vec::with_capacity(changes);
    let mut admin_latency = Vec::with_capacity(changes);
    for _ in 0..changes {
        on = !on;
        let before = Instant::now();
        let reply = admin
            .toggle_flag(authed(
                pb::ToggleFlagRequest {
                    project_key: PROJECT.into(),
                    environment_key: "development".into(),
                    key: "flag-00000".into(),
                    expected_version: config_version,
                    on,
                },
                &token,
            ))
            .await?
            .into_inner();
        let returned = Instant::now();
        config_version = reply.version;
        sent.push((before, returned));
        admin_latency.push(millis(returned - before));
        tokio::time::sleep(gap).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    tasks.abort_all();
    let after = development_version(&mut admin, &token).await?;
    if after != base + changes as i64 {
        println!(
            "warning: the environment moved {} versions for {changes} changes",
            after - base
        );
    }

    // delivered[change][stream] = time from the admin call's return.
    let mut delivered = vec![vec![None::<f64>; streams]; changes];
    let mut from_before = vec![vec![None::<f64>; streams]; changes];
    let mut unexpected = 0;
    while let Ok(delivery) = deliveries.try_recv() {
        let change = delivery.version - base - 1;
        match usize::try_from(change).ok().filter(|c| *c < changes) {
            Some(change) => {
                let (before, returned) = sent[change];
                let since_return = delivery.at.saturating_duration_since(returned);
                delivered[change][delivery.stream].get_or_insert(millis(since_return));
                from_before[change][delivery.stream].get_or_insert(millis(delivery.at - before));
            }
            None => unexpected += 1,
        }
    }
    let mut all = Vec::new();
    let mut all_before = Vec::new();
    let mut last = Vec::new();
    let mut last_before = Vec::new();
    let mut by_instance = vec![Vec::new(); instances];
    let mut missing = 0;
    for change in 0..changes {
        let mut worst: f64 = 0.0;
        let mut worst_before: f64 = 0.0;
        for stream in 0..streams {
            match (delivered[change][stream], from_before[change][stream]) {
                (Some(ms), Some(before)) => {
                    all.push(ms);
                    all_before.push(before);
                    by_instance[placement[stream]].push(ms);
                    worst = worst.max(ms);
                    worst_before = worst_before.max(before);
                }
                _ => missing += 1,
            }
        }
        last.push(worst);
        last_before.push(worst_before);
    }
    println!(
        "{changes} toggles through instance A, {} ms apart; admin call {}",
        gap.as_millis(),
        summary(&mut admin_latency)
    );
    println!("deliveries missing: {missing}, unexpected messages: {unexpected}");
    println!(
        "last of {streams} streams per change, from the call's return: {}",
        summary(&mut last)
    );
    println!(
        "last of {streams} streams per change, from before the call: {}",
        summary(&mut last_before)
    );
    println!(
        "every delivery, from the call's return: {}",
        summary(&mut all)
    );
    println!(
        "every delivery, from before the call:   {}",
        summary(&mut all_before)
    );
    for (i, values) in by_instance.iter_mut().enumerate() {
        let name = if i == 0 {
            "A (written through)"
        } else {
            "other"
        };
        println!("  instance {i} {name}: {}", summary(values));
    }
    for instance in &fleet {
        if let Ok(metrics) = http_get(instance.http, "/metrics") {
            let errors: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("vexil_redis_errors_total"))
                .collect();
            if !errors.is_empty() {
                println!("  redis errors on {}: {errors:?}", instance.grpc);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory

async fn memory(bin: &Path, streams: usize, kind: StreamKind, flags: usize) -> anyhow::Result<()> {
    let (server, sdk_key, _) = serving_flags(bin, flags).await?;
    // Warm up: a few streams and evaluations so that one-time allocations are made.
    let (warm, _) = open_streams(&[&server], 100, kind, &sdk_key, None).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.rss_kib()?;
    let (tasks, _) = open_streams(&[&server], streams, kind, &sdk_key, None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kib()?;
    let streams_metric = http_get(server.http, "/metrics")
        .ok()
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with("vexil_active_streams"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "{kind:?}, environment of {flags} flags: RSS {before} KiB before, {after} KiB with {streams} streams open ({streams_metric}): {:.1} KiB per stream",
        (after as f64 - before as f64) / streams as f64
    );
    drop(tasks);
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("RSS {} KiB 3 s after closing them", server.rss_kib()?);
    Ok(())
}
