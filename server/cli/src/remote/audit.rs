//! `vexil audit`: the audit log.

use clap::Subcommand;
use vexil_proto::v1 as pb;

use super::client::{Client, InProject, Outcome};
use super::output::{print_list, short, time};
use crate::convert::{self};

/// `vexil audit`.
pub type AuditArgs = InProject<AuditCommand>;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries of the project, newest first.
    List {
        /// Only entries about a resource: a kind (flag, flag_config, segment, sdk_key,
        /// environment, project, admin_token, context) or kind:key, such as flag:checkout.
        #[arg(long)]
        resource: Option<String>,
        /// Only entries by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries at or after this time (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        until: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// `environment`: only entries of this one, when `-e` was given on the command line (no
/// default, and VEXIL_ENVIRONMENT is not read: every environment).
pub(crate) async fn audit(
    mut c: Client,
    environment: Option<&str>,
    command: AuditCommand,
) -> Outcome {
    let AuditCommand::List {
        resource,
        actor,
        since,
        until,
        limit,
    } = command;
    let (resource_kind, resource_key) = match resource.as_deref() {
        None => (String::new(), String::new()),
        Some(text) => match text.split_once(':') {
            Some((kind, key)) => (kind.to_owned(), key.to_owned()),
            None => (text.to_owned(), String::new()),
        },
    };
    let since = convert::parse_optional_time("--since", since.as_deref())?;
    let until = convert::parse_optional_time("--until", until.as_deref())?;
    let mut entries = Vec::new();
    let mut page_token = String::new();
    while entries.len() < limit as usize {
        let want = (limit as usize - entries.len()).min(1000) as u32;
        let request = c.req(pb::ListAuditEntriesRequest {
            page: Some(pb::PageRequest {
                page_size: want,
                page_token: page_token.clone(),
            }),
            project_key: c.project.clone(),
            environment_key: environment.unwrap_or_default().to_owned(),
            resource_kind: resource_kind.clone(),
            resource_key: resource_key.clone(),
            actor: actor.clone().unwrap_or_default(),
            since,
            until,
        })?;
        let page = c.admin.list_audit_entries(request).await?.into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    entries.truncate(limit as usize);
    let headers = [
        "ID",
        "TIME",
        "ACTOR",
        "ACTION",
        "RESOURCE",
        "ENVIRONMENT",
        "AFTER",
    ];
    print_list(c.json, &entries, convert::audit_json, &headers, |a| {
        let resource = if a.resource_key.is_empty() {
            a.resource_kind.clone()
        } else {
            format!("{}:{}", a.resource_kind, a.resource_key)
        };
        vec![
            a.id.to_string(),
            time(a.time.as_ref()),
            a.actor.clone(),
            a.action.clone(),
            resource,
            if a.environment_key.is_empty() {
                "-".to_owned()
            } else {
                a.environment_key.clone()
            },
            a.after.as_ref().map_or_else(String::new, |v| {
                short(&vexil_proto::model::value_to_json(v))
            }),
        ]
    });
    Ok(())
}
