//! The fault suite: three `vexil-server` processes on a Postgres and a Redis of their own,
//! Rust SDK clients evaluating and sending events, and an admin writer, under steady load,
//! while faults are injected one after the other: SIGKILL and restart of a server instance,
//! of Redis and of Postgres, and network faults from a TCP proxy (added latency, a blackhole,
//! connection resets, a slow reader) between the SDKs and the servers and between the servers
//! and their stores. Every SDK client reaches its instance through a proxy of its own, and
//! every instance reaches Postgres and Redis through a shared one.
//!
//! For each fault it reports what the targets are about: evaluation errors the SDKs saw (the
//! last values, source STALE, are expected instead), acknowledged admin writes lost,
//! acknowledged events not stored or stored twice (read from Postgres), the time from healing
//! to every client holding a write made after it, and how often each client reconnected.
//! Exits 1 when a target is missed. Run through `scripts/chaos.sh` (which builds it and gives
//! it the services script); `--smoke` runs a short subset.

mod clients;
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tonic::transport::{Channel, Endpoint};
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_testing::{ServerProcess, authed, bool_flag_request, drop_postgres_database};

use clients::{RustSdk, SdkClient, TesteeSdk};
use proxy::{Fault, Proxy};

const INSTANCES: usize = 3;
const CLIENTS_PER_INSTANCE: usize = 2;
/// Shared by the instances, so that a token any of them issued is accepted by all.
const JWT_SECRET: &str = "chaos-suite-signing-secret-0123456789";
/// The flag every client evaluates in a loop.
const EVALUATED_FLAG: &str = "chaos-evaluated";
/// How long an admin call may take before it counts as refused.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, after healing, everything has to converge before the fault is reported as not
/// converged.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(90);

/// What a phase does to the system.
#[derive(Clone, Copy, Debug)]
enum Injection {
    Nothing,
    KillInstance(usize),
    KillRedis,
    KillPostgres,
    /// A proxy fault between every SDK client and its instance.
    ClientLink(Fault),
    /// A proxy fault between the instances and Postgres and Redis both.
    StoreLinks(Fault),
    PostgresLink(Fault),
    RedisLink(Fault),
}

struct Phase {
    name: &'static str,
    injection: Injection,
}

fn phases(smoke: bool) -> Vec<Phase> {
    let phase = |name, injection| Phase { name, injection };
    if smoke {
        return vec![
            phase("steady (no fault)", Injection::Nothing),
            phase("SIGKILL instance 1, restart", Injection::KillInstance(1)),
            phase("SDK ↔ server: resets", Injection::ClientLink(Fault::Reset)),
        ];
    }
    vec![
        phase("steady (no fault)", Injection::Nothing),
        phase("SIGKILL instance 1, restart", Injection::KillInstance(1)),
        phase("SIGKILL Redis, restart", Injection::KillRedis),
        phase("SIGKILL Postgres, restart", Injection::KillPostgres),
        phase(
            "SDK ↔ server: +200 ms latency",
            Injection::ClientLink(Fault::Latency(Duration::from_millis(200))),
        ),
        phase(
            "SDK ↔ server: blackhole",
            Injection::ClientLink(Fault::Blackhole),
        ),
        phase("SDK ↔ server: resets", Injection::ClientLink(Fault::Reset)),
        phase(
            "SDK ↔ server: slow reader",
            Injection::ClientLink(Fault::SlowReader),
        ),
        phase(
            "server ↔ stores: +100 ms latency",
            Injection::StoreLinks(Fault::Latency(Duration::from_millis(100))),
        ),
        phase(
            "server ↔ Postgres: blackhole",
            Injection::PostgresLink(Fault::Blackhole),
        ),
        phase(
            "server ↔ Postgres: resets",
            Injection::PostgresLink(Fault::Reset),
        ),
        phase(
            "server ↔ Redis: blackhole",
            Injection::RedisLink(Fault::Blackhole),
        ),
        phase("server ↔ Redis: resets", Injection::RedisLink(Fault::Reset)),
    ]
}

// ----- stores ---------------------------------------------------------------------------

/// Postgres and Redis of the suite's own, run by the project's services script in a folder
/// and on ports of their own, so that killing them touches nothing else.
struct Services {
    script: PathBuf,
    dir: PathBuf,
    postgres_port: u16,
    redis_port: u16,
}

impl Services {
    fn run(&self, verb: &str) -> anyhow::Result<()> {
        let output = Command::new(&self.script)
            .arg(verb)
            .env("VEXIL_CACHE_DIR", &self.dir)
            .env("VEXIL_PG_PORT", self.postgres_port.to_string())
            .env("VEXIL_REDIS_PORT", self.redis_port.to_string())
            // An acknowledged commit must survive a killed Postgres (the test default trades
            // that for speed). fsync stays off: the machine itself does not crash here.
            .env("VEXIL_PG_SYNCHRONOUS_COMMIT", "on")
            .stdout(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.script.display()))?;
        if !output.status.success() {
            bail!(
                "services {verb} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts what is not running (after a kill: starts it again).
    fn start(&self) -> anyhow::Result<()> {
        // A killed Postgres's backends take a moment to notice; a start that comes too early
        // finds its shared memory still in use, and is tried again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.run("start") {
                Ok(()) => return Ok(()),
                Err(err) if attempt >= 10 => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    fn kill_postgres(&self) -> anyhow::Result<()> {
        kill_pid_file(&self.dir.join("pg").join("postmaster.pid"))
    }

    fn kill_redis(&self) -> anyhow::Result<()> {
        kill_pid_file(&self.dir.join("redis").join("redis.pid"))
    }

    fn postgres(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.postgres_port))
    }

    fn redis(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.redis_port))
    }
}

/// SIGKILL to the process whose id is the first line of `path`.
fn kill_pid_file(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let pid = text.lines().next().unwrap_or_default().trim();
    let status = Command::new("kill").args(["-KILL", pid]).status()?;
    if !status.success() {
        bail!("kill -KILL {pid} failed");
    }
    Ok(())
}

// ----- SDK clients ----------------------------------------------------------------------

/// What one client had counted when a phase began.
#[derive(Clone, Copy)]
struct ClientMark {
    evaluations: u64,
    errors: u64,
    stale: u64,
    tracked: u64,
    accepted: u64,
    dropped: u64,
}

fn mark(client: &SdkClient) -> ClientMark {
    let counters = &client.counters;
    ClientMark {
        evaluations: counters.evaluations.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        stale: counters.stale.load(Ordering::Relaxed),
        tracked: counters.tracked.load(Ordering::Relaxed),
        accepted: client.proxy.accepted(),
        dropped: counters.dropped.load(Ordering::Relaxed),
    }
}

// ----- admin writes ---------------------------------------------------------------------

/// The admin writer: creates a new flag every `WRITE_PERIOD` on the instances in turn and
/// remembers which creations were acknowledged.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<String>,
    refused: u64,
}

const WRITE_PERIOD: Duration = Duration::from_millis(500);

async fn create_flag(admin: &mut AdminServiceClient<Channel>, token: &str, key: &str) -> bool {
    let mut request = authed(bool_flag_request(key, false), token);
    request.set_timeout(ADMIN_TIMEOUT);
    matches!(
        tokio::time::timeout(ADMIN_TIMEOUT, admin.create_flag(request)).await,
        Ok(Ok(_))
    )
}

async fn admin_clients(
    instances: &[ServerProcess],
) -> anyhow::Result<Vec<AdminServiceClient<Channel>>> {
    let mut clients = Vec::new();
    for instance in instances {
        // Lazy: a channel to an instance that is down connects again when it is back.
        let channel = Endpoint::from_shared(format!("http://{}", instance.grpc))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        clients.push(AdminServiceClient::new(channel));
    }
    Ok(clients)
}

// ----- the run --------------------------------------------------------------------------

struct Row {
    name: &'static str,
    evaluations: u64,
    errors: u64,
    stale: u64,
    writes_acknowledged: usize,
    writes_refused: u64,
    writes_lost: usize,
    events: u64,
    events_lost: u64,
    events_twice: u64,
    events_dropped: u64,
    converged: Option<Duration>,
    reconnections_max: u64,
    reconnections_total: u64,
}

impl Row {
    fn meets_targets(&self) -> bool {
        self.errors == 0
            && self.writes_lost == 0
            && self.events_lost == 0
            && self.events_twice == 0
            && self.converged.is_some()
    }
}

struct Settings {
    smoke: bool,
    fault_duration: Duration,
    report: Option<PathBuf>,
    server: PathBuf,
    services: Services,
    /// Bindings driven through their conformance testee: a label and the command.
    testees: Vec<(String, Vec<String>)>,
}

fn settings() -> anyhow::Result<Settings> {
    let mut smoke = false;
    let mut report = None;
    let mut testees = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--report" => report = Some(PathBuf::from(args.next().context("--report FILE")?)),
            "--testee" => {
                let given = args.next().context("--testee LABEL=COMMAND")?;
                let (label, command) = given.split_once('=').context("--testee LABEL=COMMAND")?;
                let command = command.split_whitespace().map(str::to_owned).collect();
                testees.push((label.to_owned(), command));
            }
            other => bail!(
                "unknown argument {other:?} (expected --smoke, --report FILE, --testee LABEL=COMMAND)"
            ),
        }
    }
    let server = match std::env::var_os("VEXIL_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        // target/<profile>/examples/chaos → target/<profile>/vexil-server
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("the example's folder")?
            .join("vexil-server"),
    };
    let script = PathBuf::from(
        std::env::var_os("VEXIL_CHAOS_SERVICES")
            .context("VEXIL_CHAOS_SERVICES (scripts/services.sh)")?,
    );
    let dir = PathBuf::from(
        std::env::var_os("VEXIL_CHAOS_DIR").context("VEXIL_CHAOS_DIR (the stores' folder)")?,
    );
    let port = |name: &str, default: u16| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    Ok(Settings {
        smoke,
        fault_duration: Duration::from_secs(if smoke { 4 } else { 15 }),
        report,
        server,
        services: Services {
            script,
            dir,
            postgres_port: port("VEXIL_CHAOS_PG_PORT", 55_532),
            redis_port: port("VEXIL_CHAOS_REDIS_PORT", 56_479),
        },
        testees,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = settings()?;
    settings.services.start()?;
    let admin_url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        settings.services.postgres_port
    );
    let database = format!("vexil_chaos_{}", std::process::id());
    let outcome = run(&settings, &admin_url, &database).await;
    drop_postgres_database(&admin_url, &database).await;
    let _ = settings.services.run("stop");
    let rows = outcome?;
    let table = report_table(&settings, &rows);
    println!("{table}");
    if let Some(path) = &settings.report {
        std::fs::write(path, &table)?;
    }
    let missed: Vec<&str> = rows
        .iter()
        .filter(|row| !row.meets_targets())
        .map(|row| row.name)
        .collect();
    if !missed.is_empty() {
        eprintln!("targets missed under: {}", missed.join(", "));
        std::process::exit(1);
    }
    Ok(())
}

async fn run(settings: &Settings, admin_url: &str, database: &str) -> anyhow::Result<Vec<Row>> {
    use sqlx::Connection;
    let mut admin = sqlx::postgres::PgConnection::connect(admin_url).await?;
    // Databases a run that was interrupted left behind (only this suite uses this Postgres).
    let leftovers: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'vexil_chaos_%'")
            .fetch_all(&mut admin)
            .await?;
    for leftover in leftovers {
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {leftover} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
    }
    sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let direct_url = format!(
        "postgres://postgres@127.0.0.1:{}/{database}",
        settings.services.postgres_port
    );

    // The instances reach the stores through proxies the suite controls.
    let postgres_link = Proxy::start(settings.services.postgres()).await?;
    let redis_link = Proxy::start(settings.services.redis()).await?;
    let work = tempfile::tempdir()?;
    let mut instances = Vec::new();
    for index in 0..INSTANCES {
        let mut instance = ServerProcess::new(
            &settings.server,
            work.path(),
            &format!("instance-{index}"),
            vec![
                "--database-url".into(),
                format!("postgres://postgres@{}/{database}", postgres_link.address),
                "--redis-url".into(),
                format!("redis://{}", redis_link.address),
                "--jwt-secret".into(),
                JWT_SECRET.into(),
                "--heartbeat-interval".into(),
                "1".into(),
                "--version-check-interval".into(),
                "1".into(),
            ],
        )?;
        // The first start creates the project and its keys; the others find them.
        instance.start().await?;
        instances.push(instance);
    }
    let credentials: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        instances[0].data_dir.join("credentials.json"),
    )?)?;
    let text = |pointer: &str| -> anyhow::Result<String> {
        credentials
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{pointer} in credentials.json"))
    };
    let token = text("/admin_token/token")?;
    let sdk_key = text("/sdk_keys/production/server")?;

    let mut admins = admin_clients(&instances).await?;
    if !create_flag(&mut admins[0], &token, EVALUATED_FLAG).await {
        bail!("could not create {EVALUATED_FLAG}");
    }

    // Two Rust clients per instance, and each testee's client on the instances in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let count = INSTANCES * CLIENTS_PER_INSTANCE + settings.testees.len();
    for index in 0..count {
        let proxy = Proxy::start(instances[index % INSTANCES].grpc).await?;
        let endpoint = format!("http://{}", proxy.address);
        let user = format!("user-{index}");
        let event_name = format!("chaos-client-{index}");
        let client = match index.checked_sub(INSTANCES * CLIENTS_PER_INSTANCE) {
            None => {
                let sdk = RustSdk::new(&sdk_key, endpoint, &user)?;
                SdkClient::start(event_name, proxy, sdk, stop.clone())
            }
            Some(testee) => {
                let (_, command) = &settings.testees[testee];
                let sdk = TesteeSdk::new(command, &sdk_key, endpoint, &user)?;
                SdkClient::start(event_name, proxy, sdk, stop.clone())
            }
        };
        clients.push(client);
    }

    // The writer runs for the whole suite, on the instances in turn.
    let writes = Arc::new(std::sync::Mutex::new(Writes::default()));
    let writer = {
        let (writes, stop, token) = (writes.clone(), stop.clone(), token.clone());
        let mut admins = admins.clone();
        tokio::spawn(async move {
            let mut number = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("chaos-write-{number}");
                let acknowledged = create_flag(&mut admins[number % INSTANCES], &token, &key).await;
                {
                    let mut writes = writes.lock().unwrap_or_else(|e| e.into_inner());
                    if acknowledged {
                        writes.acknowledged.push(key);
                    } else {
                        writes.refused += 1;
                    }
                }
                number += 1;
                tokio::time::sleep(WRITE_PERIOD).await;
            }
        })
    };

    let database = sqlx::postgres::PgPool::connect(&direct_url).await?;
    let mut rows = Vec::new();
    for (number, phase) in phases(settings.smoke).into_iter().enumerate() {
        eprintln!("chaos: {}", phase.name);
        let marks: Vec<ClientMark> = clients.iter().map(mark).collect();
        let writes_before = {
            let writes = writes.lock().unwrap_or_else(|e| e.into_inner());
            (writes.acknowledged.len(), writes.refused)
        };

        let links = [&postgres_link, &redis_link];
        inject(
            phase.injection,
            &mut instances,
            &settings.services,
            &clients,
            links,
        )?;
        tokio::time::sleep(settings.fault_duration).await;
        heal(phase.injection, &mut instances, settings, &clients, links).await?;
        let healed = Instant::now();

        // Converged: a flag created after healing is known to every client (each instance's
        // streams, since every instance serves two of them).
        let marker = format!("chaos-marker-{number}");
        let converged = converge(&mut admins, &token, &marker, &clients, healed).await;

        // Every event tracked so far acknowledged (a client does not track while it
        // flushes), then counted in the database.
        let mut flushed_at = Vec::new();
        for client in &clients {
            let deadline = Instant::now() + CONVERGENCE_LIMIT;
            let tracked = loop {
                let (delivered, tracked) = client.flush(Duration::from_secs(5));
                if delivered || Instant::now() > deadline {
                    break tracked;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            flushed_at.push(tracked);
        }
        let mut events = 0;
        let mut events_lost = 0;
        let mut events_twice = 0;
        let mut events_dropped = 0;
        for ((client, before), end) in clients.iter().zip(&marks).zip(&flushed_at) {
            let stored = stored_events(&database, &client.event_name, before.tracked, *end).await?;
            let dropped = client.counters.dropped.load(Ordering::Relaxed) - before.dropped;
            let expected = end - before.tracked;
            events += expected;
            events_dropped += dropped;
            let distinct = stored.len() as u64;
            events_lost += expected.saturating_sub(distinct).saturating_sub(dropped);
            events_twice += stored.values().filter(|&&count| count > 1).count() as u64;
        }

        let (acknowledged, refused) = {
            let writes = writes.lock().unwrap_or_else(|e| e.into_inner());
            (
                writes.acknowledged[writes_before.0..].to_vec(),
                writes.refused - writes_before.1,
            )
        };
        let stored: BTreeSet<String> =
            sqlx::query_scalar::<_, String>("SELECT key FROM flags WHERE key LIKE 'chaos-write-%'")
                .fetch_all(&database)
                .await?
                .into_iter()
                .collect();
        let writes_lost = acknowledged
            .iter()
            .filter(|key| !stored.contains(*key))
            .count();

        let reconnections: Vec<u64> = clients
            .iter()
            .zip(&marks)
            .map(|(client, before)| client.proxy.accepted() - before.accepted)
            .collect();
        let sum = |field: fn(&ClientMark) -> u64| -> u64 {
            clients
                .iter()
                .zip(&marks)
                .map(|(client, before)| field(&mark(client)) - field(before))
                .sum()
        };
        let row = Row {
            name: phase.name,
            evaluations: sum(|m| m.evaluations),
            errors: sum(|m| m.errors),
            stale: sum(|m| m.stale),
            writes_acknowledged: acknowledged.len(),
            writes_refused: refused,
            writes_lost,
            events,
            events_lost,
            events_twice,
            events_dropped,
            converged,
            reconnections_max: reconnections.iter().copied().max().unwrap_or(0),
            reconnections_total: reconnections.iter().sum(),
        };
        eprintln!("chaos: {}", row_text(&row));
        rows.push(row);
    }

    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    for client in &mut clients {
        client.join();
    }
    database.close().await;
    for instance in &mut instances {
        instance.kill();
    }
    Ok(rows)
}

fn inject(
    injection: Injection,
    instances: &mut [ServerProcess],
    services: &Services,
    clients: &[SdkClient],
    links: [&Proxy; 2],
) -> anyhow::Result<()> {
    match injection {
        Injection::KillInstance(index) => instances[index].kill(),
        Injection::KillRedis => services.kill_redis()?,
        Injection::KillPostgres => services.kill_postgres()?,
        _ => set_links(injection, false, clients, links),
    }
    Ok(())
}

async fn heal(
    injection: Injection,
    instances: &mut [ServerProcess],
    settings: &Settings,
    clients: &[SdkClient],
    links: [&Proxy; 2],
) -> anyhow::Result<()> {
    match injection {
        Injection::KillInstance(index) => instances[index].start().await?,
        Injection::KillRedis | Injection::KillPostgres => settings.services.start()?,
        _ => set_links(injection, true, clients, links),
    }
    Ok(())
}

/// Sets the proxy fault of a network injection on the proxies it names, or clears it when
/// `healing`. `links` are the Postgres and the Redis proxies.
fn set_links(injection: Injection, healing: bool, clients: &[SdkClient], links: [&Proxy; 2]) {
    let [postgres, redis] = links;
    let (proxies, fault): (Vec<&Proxy>, Fault) = match injection {
        Injection::ClientLink(fault) => {
            (clients.iter().map(|client| &client.proxy).collect(), fault)
        }
        Injection::StoreLinks(fault) => (vec![postgres, redis], fault),
        Injection::PostgresLink(fault) => (vec![postgres], fault),
        Injection::RedisLink(fault) => (vec![redis], fault),
        Injection::Nothing
        | Injection::KillInstance(_)
        | Injection::KillRedis
        | Injection::KillPostgres => return,
    };
    let fault = if healing { Fault::None } else { fault };
    for proxy in proxies {
        proxy.set(fault);
    }
}

/// Creates `marker` (retrying until acknowledged) and waits until every client knows it;
/// the time from `healed`, or `None` past [`CONVERGENCE_LIMIT`].
async fn converge(
    admins: &mut [AdminServiceClient<Channel>],
    token: &str,
    marker: &str,
    clients: &[SdkClient],
    healed: Instant,
) -> Option<Duration> {
    for client in clients {
        client.watch_marker(marker);
    }
    let mut attempt = 0;
    while !create_flag(&mut admins[attempt % INSTANCES], token, marker).await {
        attempt += 1;
        if healed.elapsed() > CONVERGENCE_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let known = clients.iter().all(SdkClient::knows_marker);
        if known {
            return Some(healed.elapsed());
        }
        if healed.elapsed() > CONVERGENCE_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many times each sequence number in `from..to` of a client's events is stored.
async fn stored_events(
    database: &sqlx::PgPool,
    name: &str,
    from: u64,
    to: u64,
) -> anyhow::Result<BTreeMap<i64, i64>> {
    let rows: Vec<(f64, i64)> = sqlx::query_as(
        "SELECT value, COUNT(*) FROM track_events WHERE name = $1 AND value >= $2 AND value < $3 GROUP BY value",
    )
    .bind(name)
    .bind(from as f64)
    .bind(to as f64)
    .fetch_all(database)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(value, count)| (value as i64, count))
        .collect())
}

// ----- the report -----------------------------------------------------------------------

fn row_text(row: &Row) -> String {
    let converged = match row.converged {
        Some(duration) => format!("{} ms", duration.as_millis()),
        None => "not within 90 s".into(),
    };
    format!(
        "| {} | {} | **{}** | {} | {} / {} | **{}** | {} | **{}** | **{}** | {} | {} | {} ({}) |",
        row.name,
        row.evaluations,
        row.errors,
        row.stale,
        row.writes_acknowledged,
        row.writes_refused,
        row.writes_lost,
        row.events,
        row.events_lost,
        row.events_twice,
        row.events_dropped,
        converged,
        row.reconnections_max,
        row.reconnections_total,
    )
}

fn report_table(settings: &Settings, rows: &[Row]) -> String {
    let bindings: String = settings
        .testees
        .iter()
        .map(|(label, _)| format!(" and one {label} client"))
        .collect();
    let mut table = format!(
        "{} instances; {} Rust SDK clients{} (local evaluation, each through a proxy of its own \
         to one instance); one admin writer (a flag created every {} ms, on the instances in \
         turn). Each fault held {} s, then healed.\n\n",
        INSTANCES,
        INSTANCES * CLIENTS_PER_INSTANCE,
        bindings,
        WRITE_PERIOD.as_millis(),
        settings.fault_duration.as_secs(),
    );
    table.push_str(
        "| fault | evaluations | evaluation errors | STALE answers | writes acknowledged / refused | acknowledged writes lost | events tracked | acknowledged events lost | stored twice | dropped by the SDK (queue full) | healed → converged | reconnections per client, max (all) |\n",
    );
    table.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        table.push_str(&row_text(row));
        table.push('\n');
    }
    table
}
