//! The subcommands that talk to a Vexil server: each command in a module of its own, over
//! the connection in `client` and the printers in `output`. This module only dispatches.

mod audit;
mod client;
mod contexts;
mod environments;
mod experiments;
mod flags;
mod history;
mod keys;
mod metrics;
mod output;
mod ramps;
mod results;
mod schedule;
mod segments;
mod transfer;
mod usage;

pub use audit::AuditArgs;
pub use contexts::ContextsArgs;
pub use environments::EnvironmentsArgs;
pub use experiments::ExperimentsArgs;
pub use flags::FlagsArgs;
pub use keys::KeysArgs;
pub use metrics::MetricsArgs;
pub use segments::SegmentsArgs;
pub use transfer::{ExportArgs, ImportArgs};

use std::process::ExitCode;

use tonic::Code;

use client::{Client, Failure, Outcome};

/// A command that talks to the server.
#[derive(Debug)]
pub enum Remote {
    Flags(flags::FlagsArgs),
    Environments(environments::EnvironmentsArgs),
    Segments(segments::SegmentsArgs),
    Keys(keys::KeysArgs),
    Audit(audit::AuditArgs),
    Contexts(contexts::ContextsArgs),
    Export(transfer::ExportArgs),
    Import(transfer::ImportArgs),
    Experiments(Box<experiments::ExperimentsArgs>),
    Metrics(metrics::MetricsArgs),
}

/// Runs a remote command; every failure is printed on standard error and exits 1.
pub fn run(command: Remote) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vexil: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let conn = match &command {
        Remote::Flags(a) => a.conn.clone(),
        Remote::Environments(a) => a.conn.clone(),
        Remote::Segments(a) => a.conn.clone(),
        Remote::Keys(a) => a.conn.clone(),
        Remote::Audit(a) => a.conn.clone(),
        Remote::Contexts(a) => a.conn.clone(),
        Remote::Export(a) => a.conn.clone(),
        Remote::Import(a) => a.conn.clone(),
        Remote::Experiments(a) => a.conn.clone(),
        Remote::Metrics(a) => a.conn.clone(),
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Status(status)) => {
            let message = status.message().trim();
            let message = if message.is_empty() {
                "(no message)"
            } else {
                message
            };
            eprintln!(
                "vexil: {}: {message}",
                vexil_proto::code_name(status.code())
            );
            let no_token = conn.token.as_deref().is_none_or(|t| t.trim().is_empty());
            if status.code() == Code::Unauthenticated && no_token {
                eprintln!("vexil: no admin token was given; use --token or set VEXIL_TOKEN");
            }
            if status.code() == Code::Unavailable {
                eprintln!("vexil: is a Vexil server running at {}?", conn.server);
            }
            ExitCode::FAILURE
        }
        Err(Failure::Other(error)) => {
            eprintln!("vexil: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Remote) -> Outcome {
    match command {
        Remote::Flags(a) => {
            let client = Client::connect(&a.conn).await?;
            flags::flags(client, &a.env.environment, a.command).await
        }
        Remote::Environments(a) => {
            let client = Client::connect(&a.conn).await?;
            environments::environments(client, a.command).await
        }
        Remote::Segments(a) => {
            let client = Client::connect(&a.conn).await?;
            segments::segments(client, &a.env.environment, a.command).await
        }
        Remote::Keys(a) => {
            let client = Client::connect(&a.conn).await?;
            keys::keys(client, &a.env.environment, a.command).await
        }
        Remote::Audit(a) => {
            let client = Client::connect(&a.conn).await?;
            audit::audit(client, a.command).await
        }
        Remote::Contexts(a) => {
            let client = Client::connect(&a.conn).await?;
            contexts::contexts(client, a.command).await
        }
        Remote::Export(a) => {
            let client = Client::connect(&a.conn).await?;
            transfer::export(client, &a.env.environment, a.output.as_deref()).await
        }
        Remote::Import(a) => {
            let client = Client::connect(&a.conn).await?;
            transfer::import(client, &a.env.environment, &a.file, a.expected_version).await
        }
        Remote::Experiments(a) => {
            let client = Client::connect(&a.conn).await?;
            experiments::experiments(client, *a).await
        }
        Remote::Metrics(a) => {
            let client = Client::connect(&a.conn).await?;
            metrics::metrics(client, a).await
        }
    }
}
