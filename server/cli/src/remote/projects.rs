//! `vexil projects` and `vexil tokens`: the server's projects, and the admin tokens that
//! may call it, with their role per project.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, InProject, Naming, Outcome, Renaming, all_pages};
use super::output::{print_deleted, print_json, print_json_or, print_list, print_one, time};
use crate::convert;

/// `vexil projects`.
pub type ProjectsArgs = InProject<ProjectsCommand>;

/// `vexil tokens`.
pub type TokensArgs = InProject<TokensCommand>;

/// `vexil projects …`.
#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List the projects the token may see.
    List,
    /// Show one project.
    Get {
        /// The project's key.
        key: String,
    },
    /// Create a project (needs the admin role on every project).
    Create {
        /// The new project's key.
        key: String,
        #[command(flatten)]
        naming: Naming,
    },
    /// Change a project's name or description; what is not given stays as it is.
    Update {
        /// The project's key.
        key: String,
        #[command(flatten)]
        renaming: Renaming,
    },
    /// Delete a project with everything in it.
    Delete {
        /// The project's key.
        key: String,
        /// The project version the deletion is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

/// `vexil tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List the admin tokens.
    List {
        /// Also list revoked tokens.
        #[arg(long)]
        revoked: bool,
    },
    /// Create an admin token; its secret is printed once and never stored.
    Create {
        /// Who the token is for (recorded as the actor of its changes).
        principal: String,
        /// A role on a project, as PROJECT=ROLE (viewer, editor or admin; `*` for every
        /// project); repeat for several.
        #[arg(long = "role", value_name = "PROJECT=ROLE", required = true)]
        roles: Vec<String>,
        /// Free text for people.
        #[arg(long, default_value = "")]
        description: String,
        /// When it stops working (RFC 3339, a date, or epoch seconds); never when not given.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Replace a token's roles.
    Roles {
        /// The token's id.
        id: String,
        /// A role as PROJECT=ROLE; repeat for several.
        #[arg(long = "role", value_name = "PROJECT=ROLE", required = true)]
        roles: Vec<String>,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

fn project_json(p: &pb::Project) -> Value {
    json!({
        "key": p.key,
        "name": p.name,
        "description": p.description,
        "version": p.version,
        "created_at": time(p.created_at.as_ref()),
        "updated_at": time(p.updated_at.as_ref()),
    })
}

const PROJECT_HEADERS: [&str; 4] = ["KEY", "NAME", "VERSION", "UPDATED"];

fn project_row(p: &pb::Project) -> Vec<String> {
    vec![
        p.key.clone(),
        p.name.clone(),
        p.version.to_string(),
        time(p.updated_at.as_ref()),
    ]
}

async fn get_project(c: &mut Client, key: String) -> Outcome<pb::Project> {
    let request = c.req(pb::GetProjectRequest { key })?;
    Ok(c.admin.get_project(request).await?.into_inner())
}

pub(crate) async fn projects(mut c: Client, command: ProjectsCommand) -> Outcome {
    let one = match command {
        ProjectsCommand::List => {
            let all = all_pages!(c, c.admin, list_projects, projects, |page| {
                pb::ListProjectsRequest { page: Some(page) }
            })
            .await?;
            print_list(c.json, &all, project_json, &PROJECT_HEADERS, project_row);
            return Ok(());
        }
        ProjectsCommand::Get { key } => get_project(&mut c, key).await?,
        ProjectsCommand::Create { key, naming } => {
            let request = c.req(pb::CreateProjectRequest {
                key,
                name: naming.name,
                description: naming.description,
            })?;
            c.admin.create_project(request).await?.into_inner()
        }
        ProjectsCommand::Update { key, renaming } => {
            let current = get_project(&mut c, key.clone()).await?;
            let naming = renaming.applied_to(current.name, current.description);
            let request = c.req(pb::UpdateProjectRequest {
                key,
                expected_version: current.version,
                name: naming.name,
                description: naming.description,
            })?;
            c.admin.update_project(request).await?.into_inner()
        }
        ProjectsCommand::Delete {
            key,
            expected_version,
        } => {
            let expected_version = match expected_version {
                Some(v) => v,
                None => get_project(&mut c, key.clone()).await?.version,
            };
            let request = c.req(pb::DeleteProjectRequest {
                key: key.clone(),
                expected_version,
            })?;
            c.admin.delete_project(request).await?;
            print_deleted(c.json, &key, format_args!("project {key}"));
            return Ok(());
        }
    };
    print_one(c.json, &one, project_json, &PROJECT_HEADERS, project_row);
    Ok(())
}

/// `PROJECT=ROLE` pairs as role bindings.
fn role_bindings(roles: &[String]) -> anyhow::Result<Vec<pb::RoleBinding>> {
    roles
        .iter()
        .map(|text| {
            let (project, role) = text
                .split_once('=')
                .ok_or_else(|| anyhow!("--role {text:?}: expected PROJECT=ROLE"))?;
            let role = match role {
                "viewer" => pb::Role::Viewer,
                "editor" => pb::Role::Editor,
                "admin" => pb::Role::Admin,
                other => {
                    return Err(anyhow!(
                        "--role {text:?}: {other:?} is not a role (viewer, editor or admin)"
                    ));
                }
            };
            Ok(pb::RoleBinding {
                project_key: project.to_owned(),
                role: role as i32,
            })
        })
        .collect()
}

fn role_name(role: i32) -> String {
    convert::enum_value_name(role, pb::Role::as_str_name, "none")
}

fn roles_text(t: &pb::AdminToken) -> String {
    t.roles
        .iter()
        .map(|r| format!("{}={}", r.project_key, role_name(r.role)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn token_json(t: &pb::AdminToken) -> Value {
    json!({
        "id": t.id,
        "principal": t.principal,
        "description": t.description,
        "roles": t.roles.iter().map(|r| json!({
            "project": r.project_key, "role": role_name(r.role)
        })).collect::<Vec<_>>(),
        "created_at": time(t.created_at.as_ref()),
        "expires_at": convert::time_json(t.expires_at.as_ref()),
        "revoked_at": convert::time_json(t.revoked_at.as_ref()),
    })
}

fn print_token(c: &Client, t: &pb::AdminToken) {
    print_json_or(
        c.json,
        &token_json(t),
        format_args!("token {} of {}: {}", t.id, t.principal, roles_text(t)),
    );
}

pub(crate) async fn tokens(mut c: Client, command: TokensCommand) -> Outcome {
    match command {
        TokensCommand::List { revoked } => {
            let request = c.req(pb::ListAdminTokensRequest {
                include_revoked: revoked,
            })?;
            let tokens = c
                .admin
                .list_admin_tokens(request)
                .await?
                .into_inner()
                .tokens;
            print_list(
                c.json,
                &tokens,
                token_json,
                &["ID", "PRINCIPAL", "ROLES", "EXPIRES", "REVOKED"],
                |t| {
                    vec![
                        t.id.clone(),
                        t.principal.clone(),
                        roles_text(t),
                        time(t.expires_at.as_ref()),
                        time(t.revoked_at.as_ref()),
                    ]
                },
            );
        }
        TokensCommand::Create {
            principal,
            roles,
            description,
            expires_at,
        } => {
            let expires_at = convert::parse_optional_time("--expires-at", expires_at.as_deref())?;
            let request = c.req(pb::CreateAdminTokenRequest {
                principal,
                description,
                roles: role_bindings(&roles)?,
                expires_at,
            })?;
            let created = c.admin.create_admin_token(request).await?.into_inner();
            let token = created.token.unwrap_or_default();
            if c.json {
                let mut shown = token_json(&token);
                shown["secret"] = Value::String(created.secret);
                print_json(&shown);
            } else {
                print_token(&c, &token);
                println!("secret (shown once): {}", created.secret);
            }
        }
        TokensCommand::Roles { id, roles } => {
            let request = c.req(pb::SetAdminTokenRolesRequest {
                id,
                roles: role_bindings(&roles)?,
            })?;
            let token = c.admin.set_admin_token_roles(request).await?.into_inner();
            print_token(&c, &token);
        }
        TokensCommand::Revoke { id } => {
            let request = c.req(pb::RevokeAdminTokenRequest { id })?;
            let token = c.admin.revoke_admin_token(request).await?.into_inner();
            print_json_or(
                c.json,
                &token_json(&token),
                format_args!("revoked token {} of {}", token.id, token.principal),
            );
        }
    }
    Ok(())
}
