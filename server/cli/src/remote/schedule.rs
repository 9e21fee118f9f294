//! `vexil flags schedule|scheduled|unschedule`: changes of a flag's configuration applied at
//! a time by the server.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, Outcome, all_pages};
use super::flags::OnOff;
use super::output::{on_off, print_json_or, print_list, time};
use crate::convert;

/// The scheduling commands of `vexil flags`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Schedule a change of a flag in the environment: turning it on or off, or replacing
    /// its configuration with a flag file's. Checked now and again when it runs.
    Schedule {
        /// The flag's key.
        key: String,
        /// When to apply it (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        at: String,
        /// Turn the flag on or off then.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        state: Option<OnOff>,
        /// Replace the flag's configuration then with this flag file's (canonical flag
        /// JSON; its targets, rules, fallthrough, prerequisites and on/off state).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Free text for people.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List the environment's scheduled changes (of one flag when a key is given).
    Scheduled {
        /// Only this flag's.
        key: Option<String>,
        /// Only those still pending.
        #[arg(long)]
        pending: bool,
    },
    /// Cancel a pending scheduled change.
    Unschedule {
        /// The change's id (from `vexil flags scheduled`).
        id: i64,
    },
}

fn state_name(state: i32) -> String {
    convert::enum_value_name(state, pb::ScheduledChangeState::as_str_name, "unknown")
}

fn edit_text(edit: Option<&pb::scheduled_change::Edit>) -> String {
    match edit {
        Some(pb::scheduled_change::Edit::On(on)) => format!("turn {}", on_off(*on)),
        Some(pb::scheduled_change::Edit::Configuration(c)) => {
            format!("replace configuration ({})", on_off(c.on))
        }
        None => "-".into(),
    }
}

fn change_json(x: &pb::ScheduledChange) -> Value {
    let edit = match &x.edit {
        Some(pb::scheduled_change::Edit::On(on)) => json!({ "on": on }),
        Some(pb::scheduled_change::Edit::Configuration(c)) => {
            json!({ "configuration": convert::configuration_json(c) })
        }
        None => Value::Null,
    };
    json!({
        "id": x.id,
        "environment": x.environment_key,
        "flag": x.flag_key,
        "run_at": time(x.run_at.as_ref()),
        "edit": edit,
        "comment": x.comment,
        "created_by": x.created_by,
        "state": state_name(x.state),
        "finished_at": convert::time_json(x.finished_at.as_ref()),
        "applied_version": (x.applied_version > 0).then_some(x.applied_version),
        "outcome": x.outcome,
    })
}

fn print_change(c: &Client, x: &pb::ScheduledChange) {
    print_json_or(
        c.json,
        &change_json(x),
        format_args!(
            "scheduled change {}: {} flag {} in {} at {} ({})",
            x.id,
            edit_text(x.edit.as_ref()),
            x.flag_key,
            x.environment_key,
            time(x.run_at.as_ref()),
            state_name(x.state)
        ),
    );
}

pub(crate) async fn schedule(
    c: &mut Client,
    environment: &str,
    command: ScheduleCommand,
) -> Outcome {
    match command {
        ScheduleCommand::Schedule {
            key,
            at,
            state,
            file,
            comment,
        } => {
            let run_at = convert::parse_time_option("--at", &at)?;
            let edit = match (state, file) {
                (Some(state), _) => {
                    pb::schedule_change_request::Edit::On(matches!(state, OnOff::On))
                }
                (None, Some(path)) => {
                    let file = convert::read_file(&path, convert::flag_file)?;
                    if file.key != key {
                        return Err(anyhow!(
                            "{} is the flag file of {:?}, not {key:?}",
                            path.display(),
                            file.key
                        )
                        .into());
                    }
                    pb::schedule_change_request::Edit::Configuration(file.configuration)
                }
                (None, None) => return Err(anyhow!("on, off or --file is required").into()),
            };
            let request = c.req(pb::ScheduleChangeRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key,
                run_at: Some(run_at),
                edit: Some(edit),
                comment,
            })?;
            let scheduled = c.admin.schedule_change(request).await?.into_inner();
            print_change(c, &scheduled);
        }
        ScheduleCommand::Scheduled { key, pending } => {
            let all = all_pages!(c, c.admin, list_scheduled_changes, changes, |page| {
                pb::ListScheduledChangesRequest {
                    project_key: c.project.clone(),
                    environment_key: environment.to_owned(),
                    key: key.clone().unwrap_or_default(),
                    pending_only: pending,
                    page: Some(page),
                }
            })
            .await?;
            print_list(
                c.json,
                &all,
                change_json,
                &["ID", "FLAG", "RUN AT", "CHANGE", "STATE", "OUTCOME"],
                |x| {
                    vec![
                        x.id.to_string(),
                        x.flag_key.clone(),
                        time(x.run_at.as_ref()),
                        edit_text(x.edit.as_ref()),
                        state_name(x.state),
                        x.outcome.clone(),
                    ]
                },
            );
        }
        ScheduleCommand::Unschedule { id } => {
            let request = c.req(pb::CancelScheduledChangeRequest {
                project_key: c.project.clone(),
                id,
            })?;
            let cancelled = c.admin.cancel_scheduled_change(request).await?.into_inner();
            print_change(c, &cancelled);
        }
    }
    Ok(())
}
