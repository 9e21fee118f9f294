//! `vexil contexts`: the personal data the server holds about one context.

use clap::Subcommand;
use serde_json::json;
use vexil_proto::v1 as pb;

use super::client::{Client, InProject, Outcome};
use super::output::{print_json, table};

/// `vexil contexts`.
pub type ContextsArgs = InProject<ContextsCommand>;

#[derive(Debug, Subcommand)]
pub enum ContextsCommand {
    /// Erase everything stored about a context from the project's events: its exposures and
    /// track events (multi-kind contexts it is part of included) and its experiment units,
    /// so that no experiment counts it any more. Needs the admin role; running it again is
    /// harmless. Events an SDK sends for it later are stored again.
    Erase {
        /// The context's key.
        key: String,
        /// The context's kind.
        #[arg(long, default_value = "user")]
        kind: String,
    },
}

/// `environment`: only this one, when `-e` was given on the command line (no default, and
/// VEXIL_ENVIRONMENT is not read: every environment of the project).
pub(crate) async fn contexts(
    mut c: Client,
    environment: Option<&str>,
    command: ContextsCommand,
) -> Outcome {
    let ContextsCommand::Erase { key, kind } = command;
    let request = c.req(pb::EraseContextRequest {
        project_key: c.project.clone(),
        environment_key: environment.unwrap_or_default().to_owned(),
        context_kind: kind,
        context_key: key,
    })?;
    let erased = c.admin.erase_context(request).await?.into_inner();
    if c.json {
        print_json(&json!({
            "environments": erased.environment_keys,
            "exposures": erased.exposures,
            "track_events": erased.track_events,
            "experiment_units": erased.experiment_units,
            "rollup_rows": erased.rollup_rows,
        }));
    } else {
        table(
            &[
                "ENVIRONMENTS",
                "EXPOSURES",
                "TRACK EVENTS",
                "EXPERIMENT UNITS",
                "ROLL-UP ROWS",
            ],
            &[vec![
                erased.environment_keys.join(" "),
                erased.exposures.to_string(),
                erased.track_events.to_string(),
                erased.experiment_units.to_string(),
                erased.rollup_rows.to_string(),
            ]],
        );
    }
    Ok(())
}
