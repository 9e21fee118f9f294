//! `vexil segments`.

use std::path::PathBuf;

use clap::Subcommand;
use vexil_proto::v1 as pb;

use super::client::{Client, InEnvironment, Outcome, all_pages};
use super::history::{HistoryCommand, Versioned, history};
use super::output::{print_deleted, print_json, print_json_or, print_list};
use crate::convert::{self};

/// `vexil segments`.
pub type SegmentsArgs = InEnvironment<SegmentsCommand>;

#[derive(Debug, Subcommand)]
pub enum SegmentsCommand {
    /// List the environment's segments.
    List,
    /// Show one segment.
    Get {
        /// The segment's key.
        key: String,
    },
    /// Create a segment from a segment file (canonical segment JSON, plus optional "name"
    /// and "description").
    Create {
        /// The segment file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a segment from a segment file; its key names the segment.
    Update {
        /// The segment file.
        #[arg(long)]
        file: PathBuf,
        /// The segment version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    #[command(flatten)]
    History(HistoryCommand),
    /// Delete a segment (refused while a flag or segment refers to it).
    Delete {
        /// The segment's key.
        key: String,
        /// The segment version the deletion is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

pub(crate) async fn segments(
    mut c: Client,
    environment: &str,
    command: SegmentsCommand,
) -> Outcome {
    match command {
        SegmentsCommand::List => {
            let all = all_pages!(c, c.admin, list_segments, segments, |page| {
                pb::ListSegmentsRequest {
                    project_key: c.project.clone(),
                    environment_key: environment.to_owned(),
                    page: Some(page),
                }
            })
            .await?;
            let count = |lists: &[pb::SegmentTarget]| {
                lists
                    .iter()
                    .map(|l| l.values.len())
                    .sum::<usize>()
                    .to_string()
            };
            print_list(
                c.json,
                &all,
                convert::segment_json,
                &["KEY", "INCLUDED", "EXCLUDED", "RULES", "VERSION", "NAME"],
                |s| {
                    vec![
                        s.key.clone(),
                        count(&s.included),
                        count(&s.excluded),
                        s.rules.len().to_string(),
                        s.version.to_string(),
                        s.name.clone(),
                    ]
                },
            );
            if all.is_empty() && !c.json {
                println!("(no segments in {environment})");
            }
        }
        SegmentsCommand::History(command) => {
            history(&mut c, environment, Versioned::Segment, command).await?;
        }
        SegmentsCommand::Get { key } => {
            let segment = get_segment(&mut c, environment, &key).await?;
            print_json(&convert::segment_json(&segment));
        }
        SegmentsCommand::Create { file } => {
            let segment = convert::read_file(&file, convert::segment_file)?;
            let request = c.req(pb::CreateSegmentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                segment: Some(segment),
            })?;
            let segment = c.admin.create_segment(request).await?.into_inner();
            print_json_or(
                c.json,
                &convert::segment_json(&segment),
                format_args!("created segment {} in {environment}", segment.key),
            );
        }
        SegmentsCommand::Update {
            file,
            expected_version,
        } => {
            let segment = convert::read_file(&file, convert::segment_file)?;
            let expected_version =
                version_or_current(&mut c, expected_version, &segment.key, environment).await?;
            let request = c.req(pb::UpdateSegmentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                expected_version,
                segment: Some(segment),
            })?;
            let segment = c.admin.update_segment(request).await?.into_inner();
            print_json_or(
                c.json,
                &convert::segment_json(&segment),
                format_args!(
                    "updated segment {} in {environment} (version {})",
                    segment.key, segment.version
                ),
            );
        }
        SegmentsCommand::Delete {
            key,
            expected_version,
        } => {
            let expected_version =
                version_or_current(&mut c, expected_version, &key, environment).await?;
            let request = c.req(pb::DeleteSegmentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: key.clone(),
                expected_version,
            })?;
            c.admin.delete_segment(request).await?;
            print_deleted(
                c.json,
                &key,
                format_args!("segment {key} from {environment}"),
            );
        }
    }
    Ok(())
}

/// The version a change of the segment `key` expects: `given`, else its current one.
pub(super) async fn version_or_current(
    c: &mut Client,
    given: Option<i64>,
    key: &str,
    environment: &str,
) -> Outcome<i64> {
    match given {
        Some(version) => Ok(version),
        None => Ok(get_segment(c, environment, key).await?.version),
    }
}

async fn get_segment(c: &mut Client, environment: &str, key: &str) -> Outcome<pb::Segment> {
    let request = c.req(pb::GetSegmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(c.admin.get_segment(request).await?.into_inner())
}
