//! `vexil keys`: SDK keys.

use clap::{Subcommand, ValueEnum};
use serde_json::Value;
use vexil_proto::v1 as pb;

use super::client::{Client, InEnvironment, Outcome};
use super::output::{print_json, print_json_or, print_list, time};
use crate::convert::{self};

/// `vexil keys`.
pub type KeysArgs = InEnvironment<KeysCommand>;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the environment's SDK keys (never their secrets).
    List {
        /// Every environment of the project.
        #[arg(long)]
        all_environments: bool,
        /// Also list revoked and expired keys.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Issue an SDK key for the environment; its secret is printed once.
    Issue {
        /// What the key may do.
        #[arg(long, value_enum)]
        kind: KeyKind,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke an SDK key at once.
    Revoke {
        /// The key's id (see `keys list`).
        id: i64,
    },
    /// Issue a replacement for an SDK key; the old one stops working at once or at a time.
    Rotate {
        /// The key's id (see `keys list`).
        id: i64,
        /// When the old key stops working (RFC 3339, a date, or epoch seconds); at once
        /// when not given.
        #[arg(long)]
        old_key_expires_at: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyKind {
    Server,
    Client,
    Mobile,
}

fn print_issued(c: &Client, issued: &pb::IssueSdkKeyResponse) {
    let Some(key) = &issued.key else {
        println!("{}", issued.secret);
        return;
    };
    if c.json {
        let mut value = convert::sdk_key_json(key);
        value["secret"] = Value::from(issued.secret.as_str());
        print_json(&value);
    } else {
        println!(
            "issued {} key {} for {}/{}",
            convert::sdk_key_kind_name(key.kind),
            key.id,
            key.project_key,
            key.environment_key
        );
        println!("secret (shown only this once): {}", issued.secret);
    }
}

pub(crate) async fn keys(mut c: Client, environment: &str, command: KeysCommand) -> Outcome {
    match command {
        KeysCommand::List {
            all_environments,
            include_revoked,
        } => {
            let request = c.req(pb::ListSdkKeysRequest {
                project_key: c.project.clone(),
                environment_key: if all_environments {
                    String::new()
                } else {
                    environment.to_owned()
                },
                include_revoked,
            })?;
            let keys = c.admin.list_sdk_keys(request).await?.into_inner().keys;
            let headers = [
                "ID",
                "ENVIRONMENT",
                "KIND",
                "PREFIX",
                "NAME",
                "CREATED",
                "STATE",
            ];
            print_list(c.json, &keys, convert::sdk_key_json, &headers, |k| {
                let state = if k.revoked_at.is_some() {
                    format!("revoked {}", time(k.revoked_at.as_ref()))
                } else if k.expires_at.is_some() {
                    format!("expires {}", time(k.expires_at.as_ref()))
                } else {
                    "valid".to_owned()
                };
                vec![
                    k.id.to_string(),
                    k.environment_key.clone(),
                    convert::sdk_key_kind_name(k.kind),
                    format!("{}…", k.prefix),
                    k.name.clone(),
                    time(k.created_at.as_ref()),
                    state,
                ]
            });
        }
        KeysCommand::Issue { kind, name } => {
            let kind = match kind {
                KeyKind::Server => pb::SdkKeyKind::Server,
                KeyKind::Client => pb::SdkKeyKind::Client,
                KeyKind::Mobile => pb::SdkKeyKind::Mobile,
            };
            let request = c.req(pb::IssueSdkKeyRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                kind: kind as i32,
                name,
            })?;
            let issued = c.admin.issue_sdk_key(request).await?.into_inner();
            print_issued(&c, &issued);
        }
        KeysCommand::Revoke { id } => {
            let request = c.req(pb::RevokeSdkKeyRequest {
                project_key: c.project.clone(),
                id,
            })?;
            let key = c.admin.revoke_sdk_key(request).await?.into_inner();
            print_json_or(
                c.json,
                &convert::sdk_key_json(&key),
                format_args!("revoked key {}", key.id),
            );
        }
        KeysCommand::Rotate {
            id,
            old_key_expires_at,
        } => {
            let old_key_expires_at = convert::parse_optional_time(
                "--old-key-expires-at",
                old_key_expires_at.as_deref(),
            )?;
            let request = c.req(pb::RotateSdkKeyRequest {
                project_key: c.project.clone(),
                id,
                old_key_expires_at,
            })?;
            let issued = c.admin.rotate_sdk_key(request).await?.into_inner();
            print_issued(&c, &issued);
        }
    }
    Ok(())
}
