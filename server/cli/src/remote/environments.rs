//! `vexil environments`: the project's environments, the web origins allowed to use their
//! client keys, and how long their raw events are kept.

use clap::Subcommand;
use vexil_proto::v1 as pb;

use super::client::{Client, InProject, Naming, Outcome, Renaming};
use super::output::{print_list, print_one, time};
use crate::convert;

/// `vexil environments`.
pub type EnvironmentsArgs = InProject<EnvironmentsCommand>;

#[derive(Debug, Subcommand)]
pub enum EnvironmentsCommand {
    /// List the project's environments.
    List,
    /// Show one environment.
    Get {
        /// The environment's key.
        key: String,
    },
    /// Create an environment (every flag starts off in it).
    Create {
        /// The new environment's key.
        key: String,
        #[command(flatten)]
        naming: Naming,
        /// A web origin whose pages may use the environment's client keys
        /// (`https://app.example.com`, `https://*.example.com` or `*`); repeat for several.
        /// None: this machine's pages only.
        #[arg(long = "allowed-origin", value_name = "ORIGIN")]
        allowed_origins: Vec<String>,
        /// Days raw events (exposures, track events, evaluation summaries) are kept; 0 keeps
        /// them forever. Experiment results and evaluation counts are kept regardless.
        #[arg(long, value_name = "DAYS", default_value_t = 0)]
        event_retention_days: u32,
    },
    /// Change an environment's name, description, allowed web origins or retention of raw
    /// events; what is not given stays as it is.
    Update {
        /// The environment's key.
        key: String,
        #[command(flatten)]
        renaming: Renaming,
        /// Replace the allowed web origins with these; repeat for several.
        #[arg(
            long = "allowed-origin",
            value_name = "ORIGIN",
            conflicts_with = "local_pages_only"
        )]
        allowed_origins: Vec<String>,
        /// Remove every allowed origin: only this machine's pages may use the client keys.
        #[arg(long)]
        local_pages_only: bool,
        /// Days raw events are kept; 0 keeps them forever.
        #[arg(long, value_name = "DAYS")]
        event_retention_days: Option<u32>,
    },
    /// Restore every flag configuration and segment of an environment as it was at a time,
    /// in one change. Flags and segments created since, flags archived since and flags
    /// whose variations changed since are left as they are, and listed.
    Rollback {
        /// The environment's key.
        key: String,
        /// The time restored (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        at: String,
        /// Only say what would be restored; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The environment version the rollback is based on; any when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

const ENVIRONMENT_HEADERS: [&str; 6] = [
    "KEY",
    "NAME",
    "VERSION",
    "ALLOWED ORIGINS",
    "EVENTS KEPT",
    "UPDATED",
];

fn environment_row(e: &pb::Environment) -> Vec<String> {
    let origins = if e.allowed_origins.is_empty() {
        "(this machine's pages)".to_owned()
    } else {
        e.allowed_origins.join(" ")
    };
    let retention = match e.event_retention_days {
        0 => "forever".to_owned(),
        days => format!("{days} d"),
    };
    vec![
        e.key.clone(),
        e.name.clone(),
        e.version.to_string(),
        origins,
        retention,
        time(e.updated_at.as_ref()),
    ]
}

async fn get(c: &mut Client, key: String) -> Outcome<pb::Environment> {
    let request = c.req(pb::GetEnvironmentRequest {
        project_key: c.project.clone(),
        key,
    })?;
    Ok(c.admin.get_environment(request).await?.into_inner())
}

pub(crate) async fn environments(mut c: Client, command: EnvironmentsCommand) -> Outcome {
    let environment = match command {
        EnvironmentsCommand::List => {
            let request = c.req(pb::ListEnvironmentsRequest {
                project_key: c.project.clone(),
            })?;
            let environments = c.admin.list_environments(request).await?.into_inner();
            print_list(
                c.json,
                &environments.environments,
                convert::environment_json,
                &ENVIRONMENT_HEADERS,
                environment_row,
            );
            return Ok(());
        }
        EnvironmentsCommand::Get { key } => get(&mut c, key).await?,
        EnvironmentsCommand::Create {
            key,
            naming,
            allowed_origins,
            event_retention_days,
        } => {
            let request = c.req(pb::CreateEnvironmentRequest {
                project_key: c.project.clone(),
                key,
                name: naming.name,
                description: naming.description,
                allowed_origins,
                event_retention_days,
            })?;
            c.admin.create_environment(request).await?.into_inner()
        }
        EnvironmentsCommand::Update {
            key,
            renaming,
            allowed_origins,
            local_pages_only,
            event_retention_days,
        } => {
            // Read, change, write at the version read: a change made in between is refused
            // (ABORTED) rather than overwritten.
            let current = get(&mut c, key).await?;
            let naming = renaming.applied_to(current.name, current.description);
            let allowed_origins =
                (local_pages_only || !allowed_origins.is_empty()).then_some(pb::AllowedOrigins {
                    origins: allowed_origins,
                });
            let request = c.req(pb::UpdateEnvironmentRequest {
                project_key: c.project.clone(),
                key: current.key,
                expected_version: current.version,
                name: naming.name,
                description: naming.description,
                allowed_origins,
                event_retention_days,
            })?;
            c.admin.update_environment(request).await?.into_inner()
        }
        EnvironmentsCommand::Rollback {
            key,
            at,
            dry_run,
            expected_version,
        } => {
            return super::history::rollback_environment(
                &mut c,
                key,
                &at,
                dry_run,
                expected_version,
            )
            .await;
        }
    };
    print_one(
        c.json,
        &environment,
        convert::environment_json,
        &ENVIRONMENT_HEADERS,
        environment_row,
    );
    Ok(())
}
