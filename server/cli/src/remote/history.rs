//! `vexil flags|segments history|version|diff|rollback` and `vexil environments rollback`:
//! the recorded versions of a flag's configuration or of a segment, and restoring them.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};
use vexil_proto::model::value_to_json;
use vexil_proto::v1 as pb;

use super::client::{Client, FlagPart, Outcome, all_pages};
use super::output::{print_json, print_json_or, print_list, short, table, time};
use super::segments;
use crate::convert;

/// The history commands, the same for flags and segments.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// List the recorded versions in the environment, newest first.
    History {
        /// The key.
        key: String,
    },
    /// Show one recorded version: by number, or the one in force at a time.
    Version {
        /// The key.
        key: String,
        /// The version number.
        #[arg(required_unless_present = "at", conflicts_with = "at")]
        number: Option<i64>,
        /// The version in force at this time (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        at: Option<String>,
    },
    /// Compare two recorded versions field by field.
    Diff {
        /// The key.
        key: String,
        /// The version compared from.
        from: i64,
        /// The version compared to; the newest when not given.
        to: Option<i64>,
    },
    /// Restore a recorded version (by number, or the one in force at a time) as a new
    /// version, validated and audited like any change.
    Rollback {
        /// The key.
        key: String,
        /// The version whose content is restored.
        #[arg(long, required_unless_present = "at", conflicts_with = "at")]
        to_version: Option<i64>,
        /// Restore the version in force at this time (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        at: Option<String>,
        /// The current version the rollback is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

/// Which kind of resource the commands are about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Versioned {
    Flag,
    Segment,
}

impl Versioned {
    fn noun(self) -> &'static str {
        match self {
            Versioned::Flag => "flag",
            Versioned::Segment => "segment",
        }
    }

    fn proto(self) -> pb::VersionedKind {
        match self {
            Versioned::Flag => pb::VersionedKind::Flag,
            Versioned::Segment => pb::VersionedKind::Segment,
        }
    }
}

fn kind_name(kind: i32) -> &'static str {
    match pb::VersionedKind::try_from(kind) {
        Ok(pb::VersionedKind::Segment) => "segment",
        _ => "flag",
    }
}

fn number(n: i64) -> pb::VersionSelector {
    pb::VersionSelector {
        selector: Some(pb::version_selector::Selector::Number(n)),
    }
}

fn selector(number_given: Option<i64>, at: Option<&str>) -> Outcome<pb::VersionSelector> {
    match (number_given, at) {
        (Some(n), _) => Ok(number(n)),
        (None, Some(text)) => Ok(pb::VersionSelector {
            selector: Some(pb::version_selector::Selector::At(
                convert::parse_time_option("--at", text)?,
            )),
        }),
        (None, None) => Err(anyhow!("a version number or --at is required").into()),
    }
}

/// A recorded version as the command's JSON output.
fn version_json(v: &pb::ResourceVersion) -> Value {
    let resource = v.resource.clone().unwrap_or_default();
    json!({
        "kind": kind_name(resource.kind),
        "key": resource.key,
        "environment": resource.environment_key,
        "version": v.version,
        "recorded_at": time(v.recorded_at.as_ref()),
        "actor": v.actor,
        "action": v.action,
        "archived": v.archived,
        "model": v.model.as_ref().map(value_to_json).unwrap_or(Value::Null),
    })
}

fn print_version(c: &Client, v: &pb::ResourceVersion) {
    if c.json {
        print_json(&version_json(v));
        return;
    }
    let resource = v.resource.clone().unwrap_or_default();
    println!(
        "{} {} in {}, version {}{}",
        kind_name(resource.kind),
        resource.key,
        resource.environment_key,
        v.version,
        if v.archived { " (archived)" } else { "" }
    );
    println!(
        "recorded {} by {} ({})",
        time(v.recorded_at.as_ref()),
        if v.actor.is_empty() { "-" } else { &v.actor },
        v.action
    );
    let model = v.model.as_ref().map(value_to_json).unwrap_or(Value::Null);
    println!(
        "{}",
        serde_json::to_string_pretty(&model).unwrap_or_default()
    );
}

pub(crate) async fn history(
    c: &mut Client,
    environment: &str,
    kind: Versioned,
    command: HistoryCommand,
) -> Outcome {
    let project = c.project.clone();
    let resource = |key: &str| pb::VersionedResource {
        project_key: project.clone(),
        environment_key: environment.to_owned(),
        kind: kind.proto() as i32,
        key: key.to_owned(),
    };
    match command {
        HistoryCommand::History { key } => {
            let resource = resource(&key);
            let all = all_pages!(c, c.admin, list_versions, versions, |page| {
                pb::ListVersionsRequest {
                    resource: Some(resource.clone()),
                    page: Some(page),
                }
            })
            .await?;
            print_list(
                c.json,
                &all,
                version_json,
                &["VERSION", "RECORDED", "ACTOR", "ACTION"],
                |v| {
                    vec![
                        v.version.to_string(),
                        time(v.recorded_at.as_ref()),
                        if v.actor.is_empty() {
                            "-".to_owned()
                        } else {
                            v.actor.clone()
                        },
                        v.action.clone(),
                    ]
                },
            );
        }
        HistoryCommand::Version { key, number, at } => {
            let request = c.req(pb::GetVersionRequest {
                resource: Some(resource(&key)),
                version: Some(selector(number, at.as_deref())?),
            })?;
            let version = c.admin.get_version(request).await?.into_inner();
            print_version(c, &version);
        }
        HistoryCommand::Diff { key, from, to } => {
            let to = match to {
                Some(to) => to,
                None => newest(c, resource(&key)).await?,
            };
            let request = c.req(pb::DiffVersionsRequest {
                resource: Some(resource(&key)),
                from: Some(number(from)),
                to: Some(number(to)),
            })?;
            let diff = c.admin.diff_versions(request).await?.into_inner();
            print_diff(c, &key, from, to, &diff);
        }
        HistoryCommand::Rollback {
            key,
            to_version,
            at,
            expected_version,
        } => {
            let expected_version = match kind {
                Versioned::Flag => {
                    c.version_or_current(
                        expected_version,
                        FlagPart::Configuration,
                        &key,
                        environment,
                    )
                    .await?
                }
                Versioned::Segment => {
                    segments::version_or_current(c, expected_version, &key, environment).await?
                }
            };
            let request = c.req(pb::RollbackRequest {
                resource: Some(resource(&key)),
                to: Some(selector(to_version, at.as_deref())?),
                expected_version,
            })?;
            let restored = c.admin.rollback(request).await?.into_inner();
            print_json_or(
                c.json,
                &version_json(&restored),
                format_args!(
                    "rolled back {} {key} in {environment}: version {} restores the content of \
                     the one chosen",
                    kind.noun(),
                    restored.version
                ),
            );
        }
    }
    Ok(())
}

fn print_diff(c: &Client, key: &str, from: i64, to: i64, diff: &pb::DiffVersionsResponse) {
    let shown = |v: &Option<prost_types::Value>| v.as_ref().map(value_to_json);
    if c.json {
        let differences: Vec<Value> = diff
            .differences
            .iter()
            .map(
                |d| json!({ "path": d.path, "before": shown(&d.before), "after": shown(&d.after) }),
            )
            .collect();
        print_json(&json!({ "key": key, "from": from, "to": to, "differences": differences }));
        return;
    }
    if diff.differences.is_empty() {
        println!("{key}: versions {from} and {to} hold the same content");
        return;
    }
    let rows: Vec<Vec<String>> = diff
        .differences
        .iter()
        .map(|d| {
            let cell = |v: &Option<prost_types::Value>| {
                shown(v).map_or_else(|| "(absent)".to_owned(), |v| short(&v))
            };
            vec![d.path.clone(), cell(&d.before), cell(&d.after)]
        })
        .collect();
    table(
        &[
            "FIELD",
            &format!("VERSION {from}"),
            &format!("VERSION {to}"),
        ],
        &rows,
    );
}

/// The newest recorded version of a resource.
async fn newest(c: &mut Client, resource: pb::VersionedResource) -> Outcome<i64> {
    let request = c.req(pb::ListVersionsRequest {
        resource: Some(resource),
        page: Some(pb::PageRequest {
            page_size: 1,
            page_token: String::new(),
        }),
    })?;
    let page = c.admin.list_versions(request).await?.into_inner();
    page.versions
        .first()
        .map(|v| v.version)
        .ok_or_else(|| anyhow!("no version is recorded").into())
}

/// `vexil environments rollback`.
pub(crate) async fn rollback_environment(
    c: &mut Client,
    environment: String,
    at: &str,
    dry_run: bool,
    expected_version: Option<i64>,
) -> Outcome {
    let request = c.req(pb::RollbackEnvironmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.clone(),
        at: Some(convert::parse_time_option("--at", at)?),
        expected_version,
        dry_run,
    })?;
    let summary = c.admin.rollback_environment(request).await?.into_inner();
    if c.json {
        let restored: Vec<Value> = summary
            .restored
            .iter()
            .map(|r| json!({ "kind": kind_name(r.kind), "key": r.key, "from_version": r.from_version }))
            .collect();
        let skipped: Vec<Value> = summary
            .skipped
            .iter()
            .map(|s| json!({ "kind": kind_name(s.kind), "key": s.key, "reason": s.reason }))
            .collect();
        print_json(&json!({
            "environment": environment,
            "dry_run": dry_run,
            "version": summary.version,
            "restored": restored,
            "skipped": skipped,
        }));
        return Ok(());
    }
    let verb = if dry_run { "would restore" } else { "restored" };
    if summary.restored.is_empty() {
        println!("{environment}: nothing differs from {at}");
    } else {
        println!(
            "{environment}: {verb} {} resource(s) as of {at}{}",
            summary.restored.len(),
            if dry_run {
                String::new()
            } else {
                format!(" (environment version {})", summary.version)
            }
        );
        let rows: Vec<Vec<String>> = summary
            .restored
            .iter()
            .map(|r| {
                vec![
                    kind_name(r.kind).to_owned(),
                    r.key.clone(),
                    r.from_version.to_string(),
                ]
            })
            .collect();
        table(&["KIND", "KEY", "FROM VERSION"], &rows);
    }
    for s in &summary.skipped {
        println!("skipped {} {}: {}", kind_name(s.kind), s.key, s.reason);
    }
    Ok(())
}
