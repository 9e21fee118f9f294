//! `vexil-server`: the Vexil gRPC server.
//!
//! For now it opens (and migrates) the storage and exits; the gRPC services are built on top
//! of [`vexil_server::storage`].

use std::path::PathBuf;

use clap::Parser;
use vexil_server::storage::Storage;

/// The Vexil feature-flag server.
#[derive(Debug, Parser)]
#[command(name = "vexil-server", version, about)]
struct Options {
    /// Address to listen on.
    #[arg(long, env = "VEXIL_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,

    /// Directory for the embedded SQLite database and the first-start credentials.
    #[arg(long, env = "VEXIL_DATA_DIR", default_value = "./vexil-data")]
    data_dir: PathBuf,

    /// Database to use instead of the embedded SQLite: postgres://user@host:port/db
    #[arg(long, env = "VEXIL_DATABASE_URL")]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let options = Options::parse();
    let storage = match &options.database_url {
        Some(url) => Storage::connect(url).await?,
        None => {
            std::fs::create_dir_all(&options.data_dir)?;
            Storage::open_sqlite(&options.data_dir.join("vexil.db")).await?
        }
    };
    tracing::info!(backend = ?storage.backend(), listen = %options.listen, "storage opened");
    storage.close().await;
    Ok(())
}
