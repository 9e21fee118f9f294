//! `vexil-server`: the Vexil gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use std::time::Duration;

use vexil_server::live::LiveSettings;
use vexil_server::overload::{DEFAULT_MAX_INFLIGHT_REQUESTS, StreamLimits};
use vexil_server::rate_limit::AdminRateLimit;
use vexil_server::server::{self, ServeOptions, Settings, TlsFiles};
use vexil_server::services::admin::{DEFAULT_RAMP_GUARD_INTERVAL, DEFAULT_SCHEDULE_INTERVAL};
use vexil_server::services::experiments::DEFAULT_WATCH_INTERVAL;

/// The Vexil feature-flag server.
///
/// With no options it listens on 127.0.0.1:50051 and keeps its data in SQLite under
/// ./vexil-data. On its first start it creates the project `default` with the environments
/// `development` and `production`, an admin token and SDK keys, and writes them to
/// <data-dir>/credentials.json (readable by the owner only).
#[derive(Debug, Parser)]
#[command(name = "vexil-server", version, about, long_about)]
struct Options {
    /// Address to listen on.
    #[arg(long, env = "VEXIL_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,

    /// Directory for the embedded SQLite database, the token-signing secret and the
    /// first-start credentials.
    #[arg(long, env = "VEXIL_DATA_DIR", default_value = "./vexil-data")]
    data_dir: PathBuf,

    /// Database to use instead of the embedded SQLite file in the data directory:
    /// postgres://user:password@host:port/db (or sqlite:path).
    #[arg(long, env = "VEXIL_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// A Postgres streaming replica of --database-url, read for what tolerates lag:
    /// loading rulesets, the change-log catch-up and analytics. Writes and the checks
    /// they make stay on the primary; a replica that lags or fails is read around.
    #[arg(
        long,
        env = "VEXIL_DATABASE_REPLICA_URL",
        hide_env_values = true,
        requires = "database_url"
    )]
    database_replica_url: Option<String>,

    /// Secret that signs admin tokens (at least 16 characters). Every instance sharing a
    /// database must use the same one. Default: generated at first start and kept in
    /// <data-dir>/jwt-secret.
    #[arg(long, env = "VEXIL_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "VEXIL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of the TLS certificate (needs --tls-cert).
    #[arg(long, env = "VEXIL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Address of the HTTP endpoints: the snapshot for CDNs (/v1/snapshot), /healthz,
    /// /readyz and /metrics.
    #[arg(long, env = "VEXIL_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,

    /// Redis shared by every instance: change notices between instances and cached
    /// rulesets (redis://host:port), or a Redis Cluster given by several seed nodes
    /// separated by commas (redis://a:7000,redis://b:7000,…; Redis 7 or later, for its
    /// sharded pub/sub). Without it the instance works alone.
    #[arg(long, env = "VEXIL_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,

    /// Prefix of Vexil's Redis keys and channel, for deployments sharing a Redis.
    #[arg(long, env = "VEXIL_REDIS_PREFIX", default_value = "vexil")]
    redis_prefix: String,

    /// Seconds between comparisons of the versions held in memory with the database (the
    /// safety net for lost change notices).
    #[arg(long, env = "VEXIL_VERSION_CHECK_INTERVAL", default_value_t = 3.0, value_parser = positive_seconds)]
    version_check_interval: f64,

    /// Seconds between heartbeats on idle Sync and Watch streams.
    #[arg(long, env = "VEXIL_HEARTBEAT_INTERVAL", default_value_t = 15.0, value_parser = positive_seconds)]
    heartbeat_interval: f64,

    /// Requests per second each admin token may make to this instance (admin and
    /// experiment APIs); over it, calls get RESOURCE_EXHAUSTED. 0 turns the limit off.
    #[arg(long, env = "VEXIL_ADMIN_REQUESTS_PER_SECOND", default_value_t = 100.0, value_parser = non_negative)]
    admin_requests_per_second: f64,

    /// Requests an admin token may make at once, above the sustained rate.
    #[arg(long, env = "VEXIL_ADMIN_BURST", default_value_t = 1000.0, value_parser = non_negative)]
    admin_burst: f64,

    /// Calls (all but streams and health checks) this instance serves at once; more are
    /// refused at once with RESOURCE_EXHAUSTED instead of queueing. 0 turns the limit off.
    #[arg(long, env = "VEXIL_MAX_INFLIGHT_REQUESTS", default_value_t = DEFAULT_MAX_INFLIGHT_REQUESTS)]
    max_inflight_requests: usize,

    /// Sync and Watch streams this instance keeps open; more get RESOURCE_EXHAUSTED (SDKs
    /// retry with backoff, keeping their values). 0 turns the limit off.
    #[arg(long, env = "VEXIL_MAX_STREAMS", default_value_t = StreamLimits::default().total)]
    max_streams: usize,

    /// Streams one SDK key may keep open on this instance. 0 turns the limit off.
    #[arg(long, env = "VEXIL_MAX_STREAMS_PER_KEY", default_value_t = StreamLimits::default().per_key)]
    max_streams_per_key: usize,

    /// Seconds between two watches of the running experiments (their results computed for
    /// alerts: guardrail regressions, significance, sample-ratio mismatches), done by one
    /// instance of the fleet at a time. 0: this instance never takes the watch.
    #[arg(long, env = "VEXIL_EXPERIMENT_WATCH_INTERVAL", default_value_t = DEFAULT_WATCH_INTERVAL.as_secs_f64(), value_parser = non_negative)]
    experiment_watch_interval: f64,

    /// Seconds between two looks for due scheduled changes on this instance (whichever
    /// instance finds one first applies it). 0 leaves them to other instances.
    #[arg(long, env = "VEXIL_SCHEDULE_INTERVAL", default_value_t = DEFAULT_SCHEDULE_INTERVAL.as_secs_f64(), value_parser = non_negative)]
    schedule_interval: f64,

    /// Seconds a guarded ramp's guardrails may go unread between its steps (they are also
    /// read before each step). One instance with a scheduler reads them each time.
    #[arg(long, env = "VEXIL_RAMP_GUARD_INTERVAL", default_value_t = DEFAULT_RAMP_GUARD_INTERVAL.as_secs_f64(), value_parser = positive_seconds)]
    ramp_guard_interval: f64,

    /// Log format. Levels are set with RUST_LOG (default: info).
    #[arg(long, env = "VEXIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        _ => Err(format!(
            "expected a number of seconds above 0 and at most 86400, got `{text}`"
        )),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(number) if number.is_finite() && number >= 0.0 => Ok(number),
        _ => Err(format!("expected a number of at least 0, got `{text}`")),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for sigterm");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested, finishing calls in flight");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    init_logging(options.log_format);
    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: std::fs::read(cert)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", cert.display()))?,
            key: std::fs::read(key)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", key.display()))?,
        }),
        _ => None,
    };
    let prepared = server::prepare(&Settings {
        data_dir: options.data_dir,
        database_url: options.database_url,
        database_replica_url: options.database_replica_url,
        jwt_secret: options.jwt_secret,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", options.listen))?;
    let http = tokio::net::TcpListener::bind(options.http_listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", options.http_listen))?;
    let live = LiveSettings {
        redis_url: options.redis_url,
        redis_prefix: options.redis_prefix,
        version_check_interval: Duration::from_secs_f64(options.version_check_interval),
        heartbeat_interval: Duration::from_secs_f64(options.heartbeat_interval),
        stream_limits: StreamLimits {
            total: options.max_streams,
            per_key: options.max_streams_per_key,
        },
    };
    server::serve_with(
        prepared,
        listener,
        Some(http),
        ServeOptions {
            tls,
            live,
            admin_rate_limit: AdminRateLimit {
                per_second: options.admin_requests_per_second,
                burst: options.admin_burst,
            },
            max_inflight_requests: options.max_inflight_requests,
            experiment_watch_interval: (options.experiment_watch_interval > 0.0)
                .then(|| Duration::from_secs_f64(options.experiment_watch_interval)),
            schedule_interval: (options.schedule_interval > 0.0)
                .then(|| Duration::from_secs_f64(options.schedule_interval)),
            ramp_guard_interval: Duration::from_secs_f64(options.ramp_guard_interval),
        },
        shutdown_signal(),
    )
    .await
}
