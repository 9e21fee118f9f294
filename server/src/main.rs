//! `vexil-server`: the Vexil gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vexil_server::server::{self, Settings, TlsFiles};

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
        jwt_secret: options.jwt_secret,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", options.listen))?;
    server::serve(prepared, listener, tls, shutdown_signal()).await
}
