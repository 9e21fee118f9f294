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
mod projects;
mod ramps;
mod results;
mod schedule;
mod segments;
mod transfer;
mod usage;

use std::process::ExitCode;

use clap::Subcommand;
use tonic::Code;

pub use client::{Connection, EnvironmentArg};

use client::{Client, Failure, Outcome};

/// The commands that talk to the server, as `vexil`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Remote {
    /// Manage the project's flags on a server.
    Flags(flags::FlagsArgs),
    /// Manage the project's environments, the web origins allowed to use their client keys
    /// and how long their raw events are kept.
    Environments(environments::EnvironmentsArgs),
    /// Manage an environment's segments on a server.
    Segments(segments::SegmentsArgs),
    /// Manage an environment's SDK keys on a server.
    Keys(keys::KeysArgs),
    /// Read the project's audit log on a server.
    Audit(audit::AuditArgs),
    /// Erase what the server stores about a context (personal data in events).
    Contexts(contexts::ContextsArgs),
    /// Print an environment as the engine's ruleset JSON.
    Export(transfer::ExportArgs),
    /// Import a ruleset file into an environment: the flags and segments it names are
    /// created or replaced; others are left as they are.
    Import(transfer::ImportArgs),
    /// Design, run and read experiments in an environment.
    Experiments(Box<experiments::ExperimentsArgs>),
    /// Define the project's metrics, measured by experiments.
    Metrics(metrics::MetricsArgs),
    /// Manage the server's projects.
    Projects(projects::ProjectsArgs),
    /// Manage the admin tokens that may call the server, and their roles per project.
    Tokens(projects::TokensArgs),
}

/// The environment a command works in, and whether it was named on the command line (the
/// audit log and erasure filter by it only then).
pub struct Environment<'a> {
    pub name: &'a str,
    pub given: bool,
}

/// Runs a remote command against the server `conn` names, in `environment` where the
/// command works in one; every failure is printed on standard error and exits 1.
pub fn run(conn: Connection, environment: Environment<'_>, command: Remote) -> ExitCode {
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
    match runtime.block_on(dispatch(&conn, environment, command)) {
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

async fn dispatch(conn: &Connection, env: Environment<'_>, command: Remote) -> Outcome {
    let client = Client::connect(conn).await?;
    let (environment, filter) = (env.name, env.given.then_some(env.name));
    match command {
        Remote::Flags(a) => flags::flags(client, environment, a.command).await,
        Remote::Environments(a) => environments::environments(client, a.command).await,
        Remote::Segments(a) => segments::segments(client, environment, a.command).await,
        Remote::Keys(a) => keys::keys(client, environment, a.command).await,
        Remote::Audit(a) => audit::audit(client, filter, a.command).await,
        Remote::Contexts(a) => contexts::contexts(client, filter, a.command).await,
        Remote::Export(a) => transfer::export(client, environment, a.output.as_deref()).await,
        Remote::Import(a) => {
            transfer::import(client, environment, &a.file, a.expected_version).await
        }
        Remote::Experiments(a) => experiments::experiments(client, environment, *a).await,
        Remote::Metrics(a) => metrics::metrics(client, a).await,
        Remote::Projects(a) => projects::projects(client, a.command).await,
        Remote::Tokens(a) => projects::tokens(client, a.command).await,
    }
}
