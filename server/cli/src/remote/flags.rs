//! `vexil flags`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use vexil_proto::v1 as pb;

use super::client::{Client, FlagPart, InEnvironment, Outcome, all_pages};
use super::history::{HistoryCommand, Versioned, history};
use super::output::{on_off, print_deleted, print_json, print_json_or, print_list, time};
use super::ramps::{RampCommand, ramp};
use super::schedule::{ScheduleCommand, schedule};
use crate::convert::{self, FlagFile};

/// `vexil flags`.
pub type FlagsArgs = InEnvironment<FlagsCommand>;

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// List the project's flags, with their state in the environment.
    List {
        /// Only flags whose key or name contains this text.
        #[arg(long)]
        query: Option<String>,
        /// Only flags carrying this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Also list archived flags.
        #[arg(long, conflicts_with = "only_archived")]
        archived: bool,
        /// Only list archived flags.
        #[arg(long)]
        only_archived: bool,
    },
    /// Show a flag with its configuration in the environment.
    Get {
        /// The flag's key.
        key: String,
        /// Print the flag in the environment as a flag file (canonical JSON), the form that
        /// `create` and `update` read.
        #[arg(long)]
        file_form: bool,
    },
    /// Create a flag from a flag file (canonical flag JSON); its targets, rules,
    /// prerequisites and on/off state are set in the environment.
    Create {
        /// The flag file; may also carry "name", "description" and "tags".
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        meta: FlagMeta,
    },
    /// Replace a flag from a flag file: its project-level fields and its configuration in
    /// the environment.
    Update {
        /// The flag file; its key names the flag.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        meta: FlagMeta,
        /// The configuration version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Turn a flag on or off in the environment.
    Toggle {
        /// The flag's key.
        key: String,
        /// The new state.
        state: OnOff,
        /// The configuration version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Archive a flag (it leaves every environment's ruleset), or restore it.
    Archive {
        /// The flag's key.
        key: String,
        /// Restore an archived flag instead.
        #[arg(long)]
        restore: bool,
        /// The flag version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Evaluations per flag and variation per hour, as SDKs reported them.
    Usage {
        /// Only this flag.
        key: Option<String>,
        /// From this time (RFC 3339, a date, or epoch seconds); 24 hours ago when not given.
        #[arg(long)]
        since: Option<String>,
        /// Up to this time; now when not given.
        #[arg(long)]
        until: Option<String>,
    },
    /// Flags not evaluated, or serving a single variation to everyone, for N days (only flags
    /// created more than N days ago are judged).
    Stale {
        /// The period looked back, in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    #[command(flatten)]
    History(HistoryCommand),
    #[command(flatten)]
    Schedule(ScheduleCommand),
    /// Progressive rollouts of the flag's fallthrough: start, list, pause, resume, cancel.
    Ramp {
        #[command(subcommand)]
        command: RampCommand,
    },
    /// Delete a flag and its configuration in every environment.
    Delete {
        /// The flag's key.
        key: String,
        /// The flag version the deletion is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

/// People-facing fields given as options; they win over the file's.
#[derive(Debug, Args)]
pub(crate) struct FlagMeta {
    /// The flag's name.
    #[arg(long)]
    name: Option<String>,
    /// The flag's description.
    #[arg(long)]
    description: Option<String>,
    /// A tag (repeatable); replaces the file's tags.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

fn print_flag(flag: &pb::Flag) {
    println!("key:         {}", flag.key);
    println!("name:        {}", flag.name);
    if !flag.description.is_empty() {
        println!("description: {}", flag.description);
    }
    println!("kind:        {}", convert::kind_name(flag.kind));
    let variations: Vec<String> = flag
        .variations
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{i}={}", vexil_proto::model::value_to_json(v)))
        .collect();
    println!("variations:  {}", variations.join(", "));
    if !flag.tags.is_empty() {
        println!("tags:        {}", flag.tags.join(", "));
    }
    println!("client side: {}", flag.client_side);
    println!("archived:    {}", flag.archived);
    println!("version:     {}", flag.version);
    println!("updated:     {}", time(flag.updated_at.as_ref()));
    for config in &flag.configurations {
        println!();
        println!(
            "environment {}: {} (configuration version {})",
            config.environment_key,
            on_off(config.on),
            config.version
        );
        let mut body = serde_json::Map::new();
        let full = convert::configuration_json(config);
        for field in [
            "off_variation",
            "targets",
            "rules",
            "fallthrough",
            "prerequisites",
            "salt",
        ] {
            if let Some(value) = full.get(field) {
                body.insert(field.to_owned(), value.clone());
            }
        }
        let text = serde_json::to_string_pretty(&Value::Object(body)).unwrap_or_default();
        for line in text.lines() {
            println!("  {line}");
        }
    }
}

fn read_flag_file(path: &Path, meta: &FlagMeta) -> Outcome<FlagFile> {
    let mut file = convert::read_file(path, convert::flag_file)?;
    if let Some(name) = &meta.name {
        file.name = Some(name.clone());
    }
    if let Some(description) = &meta.description {
        file.description = Some(description.clone());
    }
    if !meta.tags.is_empty() {
        file.tags = Some(meta.tags.clone());
    }
    Ok(file)
}

pub(crate) async fn flags(mut c: Client, environment: &str, command: FlagsCommand) -> Outcome {
    match command {
        FlagsCommand::Usage { key, since, until } => {
            super::usage::usage(&c, environment, key, since, until).await?;
        }
        FlagsCommand::Stale { days } => {
            super::usage::stale(&c, environment, days).await?;
        }
        FlagsCommand::History(command) => {
            history(&mut c, environment, Versioned::Flag, command).await?;
        }
        FlagsCommand::Schedule(command) => schedule(&mut c, environment, command).await?,
        FlagsCommand::Ramp { command } => ramp(&mut c, environment, command).await?,
        FlagsCommand::List {
            query,
            tags,
            archived,
            only_archived,
        } => list(&mut c, environment, query, tags, archived, only_archived).await?,
        FlagsCommand::Get { key, file_form } => {
            let (flag, config) = c.flag_in(&key, environment).await?;
            if file_form {
                print_json(&convert::flag_file_json(&flag, &config));
            } else if c.json {
                print_json(&convert::flag_json(&flag));
            } else {
                print_flag(&flag);
            }
        }
        FlagsCommand::Create { file, meta } => create(&mut c, environment, &file, &meta).await?,
        FlagsCommand::Update {
            file,
            meta,
            expected_version,
        } => update(&mut c, environment, &file, &meta, expected_version).await?,
        FlagsCommand::Toggle {
            key,
            state,
            expected_version,
        } => {
            let expected_version = c
                .version_or_current(expected_version, FlagPart::Configuration, &key, environment)
                .await?;
            let on = matches!(state, OnOff::On);
            let request = c.req(pb::ToggleFlagRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: key.clone(),
                expected_version,
                on,
            })?;
            let config = c.admin.toggle_flag(request).await?.into_inner();
            print_json_or(
                c.json,
                &convert::configuration_json(&config),
                format_args!(
                    "flag {key} is {} in {environment} (configuration version {})",
                    on_off(config.on),
                    config.version
                ),
            );
        }
        FlagsCommand::Archive {
            key,
            restore,
            expected_version,
        } => {
            let expected_version = c
                .version_or_current(expected_version, FlagPart::Flag, &key, environment)
                .await?;
            let request = c.req(pb::ArchiveFlagRequest {
                project_key: c.project.clone(),
                key: key.clone(),
                expected_version,
                archived: !restore,
            })?;
            let flag = c.admin.archive_flag(request).await?.into_inner();
            let done = if flag.archived {
                "archived"
            } else {
                "restored"
            };
            print_json_or(
                c.json,
                &convert::flag_json(&flag),
                format_args!("{done} flag {key}"),
            );
        }
        FlagsCommand::Delete {
            key,
            expected_version,
        } => {
            let expected_version = c
                .version_or_current(expected_version, FlagPart::Flag, &key, environment)
                .await?;
            let request = c.req(pb::DeleteFlagRequest {
                project_key: c.project.clone(),
                key: key.clone(),
                expected_version,
            })?;
            c.admin.delete_flag(request).await?;
            print_deleted(c.json, &key, format_args!("flag {key}"));
        }
    }
    Ok(())
}

/// `vexil flags list`: the project's flags and their state in the environment, as a table or
/// JSON.
async fn list(
    c: &mut Client,
    environment: &str,
    query: Option<String>,
    tags: Vec<String>,
    archived: bool,
    only_archived: bool,
) -> Outcome {
    let filter = if only_archived {
        pb::ArchivedFilter::Only
    } else if archived {
        pb::ArchivedFilter::Include
    } else {
        pb::ArchivedFilter::Unspecified
    };
    let all = all_pages!(c, c.admin, list_flags, flags, |page| pb::ListFlagsRequest {
        project_key: c.project.clone(),
        page: Some(page),
        tags: tags.clone(),
        query: query.clone().unwrap_or_default(),
        kind: pb::FlagKind::Unspecified as i32,
        archived: filter as i32,
        environment_key: environment.to_owned(),
    })
    .await?;
    print_list(
        c.json,
        &all,
        convert::flag_json,
        &["KEY", "KIND", environment, "VERSION", "NAME", "TAGS"],
        |f| {
            let state = f
                .configurations
                .iter()
                .find(|c| c.environment_key == environment)
                .map_or("-", |c| on_off(c.on));
            let mut state = state.to_owned();
            if f.archived {
                state.push_str(" (archived)");
            }
            vec![
                f.key.clone(),
                convert::kind_name(f.kind).to_owned(),
                state,
                f.version.to_string(),
                f.name.clone(),
                f.tags.join(","),
            ]
        },
    );
    if all.is_empty() && !c.json {
        println!("(no flags in project {})", c.project);
    }
    Ok(())
}

/// `vexil flags create`: the flag, then its configuration in the environment; a configuration the
/// server refuses takes the new flag away again.
async fn create(c: &mut Client, environment: &str, file: &Path, meta: &FlagMeta) -> Outcome {
    let file = read_flag_file(file, meta)?;
    let request = c.req(pb::CreateFlagRequest {
        project_key: c.project.clone(),
        key: file.key.clone(),
        name: file.name.clone().unwrap_or_default(),
        description: file.description.clone().unwrap_or_default(),
        kind: file.kind,
        variations: file.variations.clone(),
        tags: file.tags.clone().unwrap_or_default(),
        client_side: file.client_side,
        off_variation: file.configuration.off_variation,
        fallthrough: file.configuration.fallthrough.clone(),
    })?;
    let created = c.admin.create_flag(request).await?.into_inner();
    if file.has_configuration()
        && let Err(failure) = configure(c, environment, &file, None).await
    {
        // Leave nothing half made: the flag goes again, and the reason is reported.
        if let Ok(request) = c.req(pb::DeleteFlagRequest {
            project_key: c.project.clone(),
            key: created.key.clone(),
            expected_version: created.version,
        }) {
            let _ = c.admin.delete_flag(request).await;
        }
        return Err(failure);
    }
    let (flag, _) = c.flag_in(&created.key, environment).await?;
    print_json_or(
        c.json,
        &convert::flag_json(&flag),
        format_args!(
            "created flag {} in project {} ({} in {environment})",
            flag.key,
            c.project,
            on_off(flag.configurations.first().is_some_and(|c| c.on))
        ),
    );
    Ok(())
}

/// `vexil flags update`: the configuration in the environment, then the project-level fields
/// that changed.
async fn update(
    c: &mut Client,
    environment: &str,
    file: &Path,
    meta: &FlagMeta,
    expected_version: Option<i64>,
) -> Outcome {
    let file = read_flag_file(file, meta)?;
    let (current, _) = c.flag_in(&file.key, environment).await?;
    if current.kind != file.kind {
        return Err(anyhow::anyhow!(
            "kind: a flag's kind cannot change (flag {:?} is {})",
            file.key,
            convert::kind_name(current.kind)
        )
        .into());
    }
    configure(c, environment, &file, expected_version).await?;
    let name = file.name.clone().unwrap_or_else(|| current.name.clone());
    let description = file
        .description
        .clone()
        .unwrap_or_else(|| current.description.clone());
    let tags = file.tags.clone().unwrap_or_else(|| current.tags.clone());
    if name != current.name
        || description != current.description
        || tags != current.tags
        || file.variations != current.variations
        || file.client_side != current.client_side
    {
        let request = c.req(pb::UpdateFlagRequest {
            project_key: c.project.clone(),
            key: file.key.clone(),
            expected_version: current.version,
            name,
            description,
            variations: file.variations.clone(),
            tags,
            client_side: file.client_side,
        })?;
        c.admin.update_flag(request).await?;
    }
    let (flag, config) = c.flag_in(&file.key, environment).await?;
    print_json_or(
        c.json,
        &convert::flag_json(&flag),
        format_args!(
            "updated flag {} in {environment} (configuration version {})",
            flag.key, config.version
        ),
    );
    Ok(())
}

/// Replaces the flag's configuration in `environment` with the file's.
async fn configure(
    c: &mut Client,
    environment: &str,
    file: &FlagFile,
    expected_version: Option<i64>,
) -> Outcome<pb::FlagConfiguration> {
    let expected_version = c
        .version_or_current(
            expected_version,
            FlagPart::Configuration,
            &file.key,
            environment,
        )
        .await?;
    let request = c.req(pb::UpdateFlagConfigurationRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: file.key.clone(),
        expected_version,
        configuration: Some(file.configuration.clone()),
    })?;
    Ok(c.admin
        .update_flag_configuration(request)
        .await?
        .into_inner())
}
