//! `vexil export` and `vexil import`: a whole environment as a ruleset file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, Outcome};
use super::output::{print_json, print_json_or};
use crate::convert::{self};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write the ruleset to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A ruleset file: {"flags": [...], "segments": [...]}.
    pub(crate) file: PathBuf,
    /// The environment version the import is based on; any when not given.
    #[arg(long)]
    pub(crate) expected_version: Option<i64>,
}

pub(crate) async fn export(mut c: Client, environment: &str, output: Option<&Path>) -> Outcome {
    let request = c.req(pb::ExportEnvironmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
    })?;
    let exported = c.admin.export_environment(request).await?.into_inner();
    let ruleset: Value = serde_json::from_str(&exported.ruleset_json)
        .context("the server's export is not valid JSON")?;
    let text = serde_json::to_string_pretty(&ruleset).context("cannot print the ruleset")?;
    match output {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            if c.json {
                print_json(
                    &json!({"file": path.display().to_string(), "version": exported.version}),
                );
            } else {
                eprintln!(
                    "exported {}/{environment} at version {} to {}",
                    c.project,
                    exported.version,
                    path.display()
                );
            }
        }
        None => println!("{text}"),
    }
    Ok(())
}

pub(crate) async fn import(
    mut c: Client,
    environment: &str,
    file: &Path,
    expected_version: Option<i64>,
) -> Outcome {
    let ruleset = convert::read_json(file)?;
    if !ruleset.is_object() {
        return Err(anyhow::anyhow!(
            "{}: expected a ruleset object {{\"flags\": [...], \"segments\": [...]}}",
            file.display()
        )
        .into());
    }
    let request = c.req(pb::ImportEnvironmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        ruleset_json: ruleset.to_string(),
        expected_version,
    })?;
    let done = c.admin.import_environment(request).await?.into_inner();
    print_json_or(
        c.json,
        &json!({
            "version": done.version,
            "created_flags": done.created_flags,
            "updated_flags": done.updated_flags,
            "segments": done.segments,
        }),
        format_args!(
            "imported into {}/{environment}: {} flags created, {} flags updated, {} segments; environment version {}",
            c.project,
            done.created_flags.len(),
            done.updated_flags.len(),
            done.segments.len(),
            done.version
        ),
    );
    Ok(())
}
