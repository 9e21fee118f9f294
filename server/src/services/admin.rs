//! `vexil.v1.AdminService`: projects, environments, flags, segments, keys, tokens, the audit
//! log, export and import.
//!
//! Every call is authenticated first, then authorized by role on the project it touches
//! (viewer reads; editor writes flags, flag configurations and segments; admin manages
//! environments, keys, tokens, projects and imports). Every write of a flag, configuration
//! or segment is first checked against the environment's whole ruleset
//! ([`crate::ruleset_changes`]): a problem refuses it with `INVALID_ARGUMENT` and nothing is
//! stored.

mod history;
mod ramps;
mod schedule;

pub use ramps::RAMP_ACTOR;
pub use schedule::{Applied, DEFAULT_RAMP_GUARD_INTERVAL, DEFAULT_SCHEDULE_INTERVAL};

use serde::Deserialize;
use serde_json::Value;
use tonic::{Request, Response, Status};
use vexil_proto::model::{self as model, FieldError};
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_server::AdminService;

use crate::auth::{Authenticator, Caller};
use crate::convert;
use crate::limits;
use crate::live::Hub;
use crate::origins;
use crate::ruleset_changes::{RulesetChange, RulesetChecker};
use crate::storage::{
    self, ArchivedFilter, AuditFilter, EnvGuards, EnvironmentUpdate, FlagFilter, NewAdminToken,
    NewEnvironment, NewFlag, NewProject, NewSdkKey, Role, RoleBinding, RulesetData, Serve, Storage,
    secrets,
};

/// The admin API over a storage.
#[derive(Debug, Clone)]
pub struct Admin {
    storage: Storage,
    auth: Authenticator,
    /// The instance's live rulesets, brought up to date before a write answers.
    hub: Option<Hub>,
    checker: RulesetChecker,
}

type Reply<T> = Result<Response<T>, Status>;

impl Admin {
    pub fn new(storage: Storage, auth: Authenticator) -> Admin {
        Admin {
            checker: RulesetChecker::new(storage.clone(), None),
            storage,
            auth,
            hub: None,
        }
    }

    /// Makes every write wait until this instance's rulesets hold it, so that a caller
    /// evaluating through the same instance right after a write sees it (other instances
    /// follow within milliseconds, through the change notices).
    pub fn with_hub(mut self, hub: Hub) -> Admin {
        self.checker = RulesetChecker::new(self.storage.clone(), Some(hub.clone()));
        self.hub = Some(hub);
        self
    }

    async fn settle(&self, project: &str) {
        if let Some(hub) = &self.hub {
            hub.refresh_project(project).await;
        }
    }

    async fn caller<T>(&self, request: Request<T>) -> Result<(Caller, T), Status> {
        let caller = self.auth.authenticate(request.metadata()).await?;
        Ok((caller, request.into_inner()))
    }

    /// A flag's project-level fields and its configuration in one environment: what a
    /// change of that configuration is checked against.
    async fn flag_in(
        &self,
        project: &str,
        env: &str,
        key: &str,
    ) -> Result<(storage::Flag, storage::FlagConfig), Status> {
        let flag = self.storage.get_flag(project, key).await?;
        let config = self.storage.get_flag_config(project, env, key).await?;
        Ok((flag, config))
    }

    async fn environment_keys(&self, project: &str) -> Result<Vec<String>, Status> {
        Ok(self
            .storage
            .list_environments(project)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }
}

fn check_config_sizes(config: &pb::FlagConfiguration) -> Result<(), Status> {
    limits::count(
        "configuration.targets",
        config.targets.len(),
        limits::MAX_ITEMS,
    )?;
    for (i, t) in config.targets.iter().enumerate() {
        limits::count(
            &format!("configuration.targets[{i}].values"),
            t.values.len(),
            limits::MAX_VALUES,
        )?;
    }
    limits::count("configuration.rules", config.rules.len(), limits::MAX_ITEMS)?;
    for (i, r) in config.rules.iter().enumerate() {
        check_clauses(&format!("configuration.rules[{i}]"), &r.clauses)?;
    }
    limits::count(
        "configuration.prerequisites",
        config.prerequisites.len(),
        limits::MAX_ITEMS,
    )
}

fn check_clauses(at: &str, clauses: &[pb::Clause]) -> Result<(), Status> {
    limits::count(&format!("{at}.clauses"), clauses.len(), limits::MAX_CLAUSES)?;
    for (j, c) in clauses.iter().enumerate() {
        limits::count(
            &format!("{at}.clauses[{j}].values"),
            c.values.len(),
            limits::MAX_VALUES,
        )?;
    }
    Ok(())
}

fn check_segment_sizes(segment: &pb::Segment) -> Result<(), Status> {
    limits::key("segment.key", &segment.key)?;
    limits::name_and_description(&segment.name, &segment.description)?;
    for (name, lists) in [
        ("included", &segment.included),
        ("excluded", &segment.excluded),
    ] {
        limits::count(&format!("segment.{name}"), lists.len(), limits::MAX_ITEMS)?;
        for (i, l) in lists.iter().enumerate() {
            limits::count(
                &format!("segment.{name}[{i}].values"),
                l.values.len(),
                limits::MAX_VALUES,
            )?;
        }
    }
    limits::count("segment.rules", segment.rules.len(), limits::MAX_ITEMS)?;
    for (i, r) in segment.rules.iter().enumerate() {
        check_clauses(&format!("segment.rules[{i}]"), &r.clauses)?;
    }
    Ok(())
}

fn check_variations(variations: &[prost_types::Value]) -> Result<Vec<Value>, Status> {
    limits::count("variations", variations.len(), limits::MAX_VARIATIONS)?;
    Ok(variations.iter().map(model::value_to_json).collect())
}

/// A message field the model cannot hold, as `INVALID_ARGUMENT` naming it.
pub(crate) fn invalid_field(err: FieldError) -> Status {
    Status::invalid_argument(err.to_string())
}

fn new_sdk_key(kind: storage::SdkKeyKind, name: &str) -> Result<(NewSdkKey, String), Status> {
    let generated = secrets::generate_sdk_key(kind).map_err(|err| {
        tracing::error!(error = %err, "random source failed");
        Status::internal("cannot generate a key")
    })?;
    Ok((
        NewSdkKey {
            kind,
            name: name.to_owned(),
            prefix: generated.prefix,
            hash: generated.hash,
        },
        generated.secret,
    ))
}

fn role_bindings(roles: &[pb::RoleBinding]) -> Result<Vec<RoleBinding>, Status> {
    limits::count("roles", roles.len(), limits::MAX_ITEMS)?;
    roles
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if b.project_key != "*" {
                limits::key(&format!("roles[{i}].project_key"), &b.project_key)?;
            }
            Ok(RoleBinding {
                project_key: b.project_key.clone(),
                role: convert::role_from_proto(b.role, &format!("roles[{i}].role"))?,
            })
        })
        .collect()
}

/// A caller may grant a role on a project only when it is an admin there.
fn require_grantable(caller: &Caller, roles: &[RoleBinding]) -> Result<(), Status> {
    for binding in roles {
        caller.require(&binding.project_key, Role::Admin)?;
    }
    Ok(())
}

fn next_token(cursor: Option<String>) -> String {
    cursor.unwrap_or_default()
}

#[tonic::async_trait]
impl AdminService for Admin {
    // ----- projects -------------------------------------------------------------------------

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Reply<pb::Project> {
        let (caller, req) = self.caller(request).await?;
        caller.require("*", Role::Admin)?;
        limits::key("key", &req.key)?;
        limits::name_and_description(&req.name, &req.description)?;
        let project = self
            .storage
            .create_project(
                caller.actor(),
                &NewProject {
                    key: req.key,
                    name: req.name,
                    description: req.description,
                },
            )
            .await?;
        Ok(Response::new(convert::project(&project)))
    }

    async fn get_project(&self, request: Request<pb::GetProjectRequest>) -> Reply<pb::Project> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.key, Role::Viewer)?;
        let project = self.storage.get_project(&req.key).await?;
        Ok(Response::new(convert::project(&project)))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Reply<pb::ListProjectsResponse> {
        let (caller, req) = self.caller(request).await?;
        let page = self
            .storage
            .list_projects(&convert::page_request(req.page.as_ref()))
            .await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: page
                .items
                .iter()
                .filter(|p| caller.has(&p.key, Role::Viewer))
                .map(convert::project)
                .collect(),
            next_page_token: next_token(page.next_cursor),
        }))
    }

    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Reply<pb::Project> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.key, Role::Admin)?;
        limits::name_and_description(&req.name, &req.description)?;
        let project = self
            .storage
            .update_project(
                caller.actor(),
                &req.key,
                req.expected_version,
                &req.name,
                &req.description,
            )
            .await?;
        Ok(Response::new(convert::project(&project)))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Reply<pb::DeleteProjectResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.key, Role::Admin)?;
        self.storage
            .delete_project(caller.actor(), &req.key, req.expected_version)
            .await?;
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }

    // ----- environments ---------------------------------------------------------------------

    async fn create_environment(
        &self,
        request: Request<pb::CreateEnvironmentRequest>,
    ) -> Reply<pb::Environment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        limits::key("key", &req.key)?;
        limits::name_and_description(&req.name, &req.description)?;
        let allowed_origins = origins::normalize("allowed_origins", &req.allowed_origins)
            .map_err(Status::invalid_argument)?;
        limits::retention_days("event_retention_days", req.event_retention_days)?;
        let env = self
            .storage
            .create_environment(
                caller.actor(),
                &req.project_key,
                &NewEnvironment {
                    key: req.key,
                    name: req.name,
                    description: req.description,
                    allowed_origins,
                    event_retention_days: req.event_retention_days,
                },
            )
            .await?;
        Ok(Response::new(convert::environment(&env)))
    }

    async fn get_environment(
        &self,
        request: Request<pb::GetEnvironmentRequest>,
    ) -> Reply<pb::Environment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let env = self
            .storage
            .get_environment(&req.project_key, &req.key)
            .await?;
        Ok(Response::new(convert::environment(&env)))
    }

    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Reply<pb::ListEnvironmentsResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let envs = self.storage.list_environments(&req.project_key).await?;
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: envs.iter().map(convert::environment).collect(),
        }))
    }

    async fn update_environment(
        &self,
        request: Request<pb::UpdateEnvironmentRequest>,
    ) -> Reply<pb::Environment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        limits::name_and_description(&req.name, &req.description)?;
        let allowed_origins = match &req.allowed_origins {
            Some(list) => Some(
                origins::normalize("allowed_origins.origins", &list.origins)
                    .map_err(Status::invalid_argument)?,
            ),
            None => None,
        };
        if let Some(days) = req.event_retention_days {
            limits::retention_days("event_retention_days", days)?;
        }
        let env = self
            .storage
            .update_environment(
                caller.actor(),
                &req.project_key,
                &req.key,
                req.expected_version,
                EnvironmentUpdate {
                    name: &req.name,
                    description: &req.description,
                    allowed_origins: allowed_origins.as_deref(),
                    event_retention_days: req.event_retention_days,
                },
            )
            .await?;
        Ok(Response::new(convert::environment(&env)))
    }

    async fn delete_environment(
        &self,
        request: Request<pb::DeleteEnvironmentRequest>,
    ) -> Reply<pb::DeleteEnvironmentResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        self.storage
            .delete_environment(
                caller.actor(),
                &req.project_key,
                &req.key,
                req.expected_version,
            )
            .await?;
        Ok(Response::new(pb::DeleteEnvironmentResponse {}))
    }

    // ----- flags ----------------------------------------------------------------------------

    async fn create_flag(&self, request: Request<pb::CreateFlagRequest>) -> Reply<pb::Flag> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        limits::key("key", &req.key)?;
        limits::name_and_description(&req.name, &req.description)?;
        limits::tags(&req.tags)?;
        let kind = convert::flag_kind_from_proto(req.kind, "kind")?;
        let variations = check_variations(&req.variations)?;
        let fallthrough = match &req.fallthrough {
            Some(serve) => {
                model::serve_from_proto(Some(serve), "fallthrough").map_err(invalid_field)?
            }
            None => Serve::variation(0),
        };
        let new = NewFlag {
            key: req.key,
            kind,
            variations,
            name: req.name,
            description: req.description,
            tags: req.tags,
            client_side: req.client_side,
            off_variation: req.off_variation.map(|v| v as usize),
            fallthrough,
        };
        // The flag starts with no rules, so it is checked on its own.
        let candidate = storage::Flag {
            project_key: req.project_key.clone(),
            key: new.key.clone(),
            kind: new.kind,
            variations: new.variations.clone(),
            name: String::new(),
            description: String::new(),
            tags: Vec::new(),
            client_side: new.client_side,
            archived: false,
            version: 1,
            created_at: 0,
            updated_at: 0,
        };
        let configuration = storage::FlagConfiguration {
            on: false,
            off_variation: new.off_variation,
            targets: Vec::new(),
            rules: Vec::new(),
            fallthrough: new.fallthrough.clone(),
            prerequisites: Vec::new(),
            salt: None,
        };
        self.checker.check_alone(RulesetData {
            version: 0,
            flags: vec![candidate.model(&configuration, 1)],
            segments: Vec::new(),
        })?;
        let flag = self
            .storage
            .create_flag(caller.actor(), &req.project_key, &new)
            .await?;
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::flag(&flag, &[])))
    }

    async fn get_flag(&self, request: Request<pb::GetFlagRequest>) -> Reply<pb::Flag> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let flag = self.storage.get_flag(&req.project_key, &req.key).await?;
        let configs = self
            .storage
            .list_flag_configs(&req.project_key, &req.key, &req.environment_keys)
            .await?;
        Ok(Response::new(convert::flag(&flag, &configs)))
    }

    async fn list_flags(
        &self,
        request: Request<pb::ListFlagsRequest>,
    ) -> Reply<pb::ListFlagsResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        limits::tags(&req.tags)?;
        limits::text("query", &req.query, limits::MAX_NAME_LEN)?;
        let archived = match pb::ArchivedFilter::try_from(req.archived) {
            Ok(pb::ArchivedFilter::Unspecified) => ArchivedFilter::Exclude,
            Ok(pb::ArchivedFilter::Only) => ArchivedFilter::Only,
            Ok(pb::ArchivedFilter::Include) => ArchivedFilter::Include,
            Err(_) => return Err(Status::invalid_argument("archived: unknown filter")),
        };
        let filter = FlagFilter {
            tags: req.tags,
            query: (!req.query.is_empty()).then_some(req.query),
            kind: convert::flag_kind_filter(req.kind)?,
            archived,
        };
        let page = self
            .storage
            .list_flags(
                &req.project_key,
                &filter,
                &convert::page_request(req.page.as_ref()),
            )
            .await?;
        let configs = if req.environment_key.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<String> = page.items.iter().map(|f| f.key.clone()).collect();
            self.storage
                .env_flag_configs(&req.project_key, &req.environment_key, &keys)
                .await?
        };
        let flags = page
            .items
            .iter()
            .map(|f| {
                let own: Vec<_> = configs
                    .iter()
                    .filter(|c| c.flag_key == f.key)
                    .cloned()
                    .collect();
                convert::flag(f, &own)
            })
            .collect();
        Ok(Response::new(pb::ListFlagsResponse {
            flags,
            next_page_token: next_token(page.next_cursor),
        }))
    }

    async fn update_flag(&self, request: Request<pb::UpdateFlagRequest>) -> Reply<pb::Flag> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        limits::name_and_description(&req.name, &req.description)?;
        limits::tags(&req.tags)?;
        let variations = check_variations(&req.variations)?;
        // An unknown flag is NOT_FOUND before anything else.
        self.storage.get_flag(&req.project_key, &req.key).await?;
        // New variations must fit every environment's configuration of the flag.
        let mut attempt = 0;
        let flag = loop {
            let mut guards = EnvGuards::new();
            for env in self.environment_keys(&req.project_key).await? {
                let version = self
                    .checker
                    .check_with(&req.project_key, &env, |ruleset| {
                        let mut flag = ruleset.flag(&req.key)?.clone();
                        flag.variations = variations.clone();
                        flag.client_side = req.client_side;
                        Some(RulesetChange::upsert_flag(flag))
                    })
                    .await?;
                guards.insert(env, version);
            }
            match self
                .storage
                .guarded(guards)
                .update_flag(
                    caller.actor(),
                    &req.project_key,
                    &req.key,
                    req.expected_version,
                    &storage::FlagUpdate {
                        name: req.name.clone(),
                        description: req.description.clone(),
                        variations: variations.clone(),
                        tags: req.tags.clone(),
                        client_side: req.client_side,
                    },
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        };
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::flag(&flag, &[])))
    }

    async fn toggle_flag(
        &self,
        request: Request<pb::ToggleFlagRequest>,
    ) -> Reply<pb::FlagConfiguration> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let config = self
            .storage
            .toggle_flag(
                caller.actor(),
                &req.project_key,
                &req.environment_key,
                &req.key,
                req.expected_version,
                req.on,
            )
            .await?;
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::flag_configuration(&config)))
    }

    async fn archive_flag(&self, request: Request<pb::ArchiveFlagRequest>) -> Reply<pb::Flag> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let mut attempt = 0;
        let flag = loop {
            let mut guards = EnvGuards::new();
            if req.archived {
                // Archiving takes the flag out of every ruleset: no other flag may depend on it.
                let change = RulesetChange::delete_flag(&req.key);
                for env in self.environment_keys(&req.project_key).await? {
                    let version = self.checker.check(&req.project_key, &env, &change).await?;
                    guards.insert(env, version);
                }
            } else {
                // Restoring puts the flag back in every ruleset, as configured there.
                let flag = self.storage.get_flag(&req.project_key, &req.key).await?;
                let configs = self
                    .storage
                    .list_flag_configs(&req.project_key, &req.key, &[])
                    .await?;
                for config in configs {
                    let change = RulesetChange::upsert_flag(
                        flag.model(&config.configuration, config.version),
                    );
                    let version = self
                        .checker
                        .check(&req.project_key, &config.environment_key, &change)
                        .await?;
                    guards.insert(config.environment_key.clone(), version);
                }
            }
            match self
                .storage
                .guarded(guards)
                .set_flag_archived(
                    caller.actor(),
                    &req.project_key,
                    &req.key,
                    req.expected_version,
                    req.archived,
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        };
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::flag(&flag, &[])))
    }

    async fn delete_flag(
        &self,
        request: Request<pb::DeleteFlagRequest>,
    ) -> Reply<pb::DeleteFlagResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let change = RulesetChange::delete_flag(&req.key);
        let mut attempt = 0;
        loop {
            let mut guards = EnvGuards::new();
            for env in self.environment_keys(&req.project_key).await? {
                let version = self.checker.check(&req.project_key, &env, &change).await?;
                guards.insert(env, version);
            }
            match self
                .storage
                .guarded(guards)
                .delete_flag(
                    caller.actor(),
                    &req.project_key,
                    &req.key,
                    req.expected_version,
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        }
        self.settle(&req.project_key).await;
        Ok(Response::new(pb::DeleteFlagResponse {}))
    }

    async fn update_flag_configuration(
        &self,
        request: Request<pb::UpdateFlagConfigurationRequest>,
    ) -> Reply<pb::FlagConfiguration> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let Some(configuration) = &req.configuration else {
            return Err(Status::invalid_argument("configuration: is required"));
        };
        check_config_sizes(configuration)?;
        if let Some(salt) = &configuration.salt {
            limits::text("configuration.salt", salt, limits::MAX_KEY_LEN)?;
        }
        let update = model::configuration_from_proto(configuration, "configuration")
            .map_err(invalid_field)?;
        let flag = self.storage.get_flag(&req.project_key, &req.key).await?;
        let change = RulesetChange::upsert_flag(flag.model(&update, req.expected_version));
        let mut attempt = 0;
        let config = loop {
            let version = self
                .checker
                .check(&req.project_key, &req.environment_key, &change)
                .await?;
            let guards = EnvGuards::from([(req.environment_key.clone(), version)]);
            match self
                .storage
                .guarded(guards)
                .update_flag_config(
                    caller.actor(),
                    &req.project_key,
                    &req.environment_key,
                    &req.key,
                    req.expected_version,
                    &update,
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        };
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::flag_configuration(&config)))
    }

    // ----- segments -------------------------------------------------------------------------

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Reply<pb::Segment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let Some(segment) = &req.segment else {
            return Err(Status::invalid_argument("segment: is required"));
        };
        check_segment_sizes(segment)?;
        let input = convert::segment_input(segment).map_err(invalid_field)?;
        let change = RulesetChange::upsert_segment(input.model(1));
        let mut attempt = 0;
        let stored = loop {
            let version = self
                .checker
                .check(&req.project_key, &req.environment_key, &change)
                .await?;
            let guards = EnvGuards::from([(req.environment_key.clone(), version)]);
            match self
                .storage
                .guarded(guards)
                .create_segment(
                    caller.actor(),
                    &req.project_key,
                    &req.environment_key,
                    &input,
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        };
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::segment(&stored)))
    }

    async fn get_segment(&self, request: Request<pb::GetSegmentRequest>) -> Reply<pb::Segment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let segment = self
            .storage
            .get_segment(&req.project_key, &req.environment_key, &req.key)
            .await?;
        Ok(Response::new(convert::segment(&segment)))
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Reply<pb::ListSegmentsResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let page = self
            .storage
            .list_segments(
                &req.project_key,
                &req.environment_key,
                &convert::page_request(req.page.as_ref()),
            )
            .await?;
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: page.items.iter().map(convert::segment).collect(),
            next_page_token: next_token(page.next_cursor),
        }))
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Reply<pb::Segment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let Some(segment) = &req.segment else {
            return Err(Status::invalid_argument("segment: is required"));
        };
        check_segment_sizes(segment)?;
        let input = convert::segment_input(segment).map_err(invalid_field)?;
        let change = RulesetChange::upsert_segment(input.model(req.expected_version));
        let mut attempt = 0;
        let stored = loop {
            let version = self
                .checker
                .check(&req.project_key, &req.environment_key, &change)
                .await?;
            let guards = EnvGuards::from([(req.environment_key.clone(), version)]);
            match self
                .storage
                .guarded(guards)
                .update_segment(
                    caller.actor(),
                    &req.project_key,
                    &req.environment_key,
                    req.expected_version,
                    &input,
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        };
        self.settle(&req.project_key).await;
        Ok(Response::new(convert::segment(&stored)))
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Reply<pb::DeleteSegmentResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let change = RulesetChange::delete_segment(&req.key);
        let mut attempt = 0;
        loop {
            let version = self
                .checker
                .check(&req.project_key, &req.environment_key, &change)
                .await?;
            let guards = EnvGuards::from([(req.environment_key.clone(), version)]);
            match self
                .storage
                .guarded(guards)
                .delete_segment(
                    caller.actor(),
                    &req.project_key,
                    &req.environment_key,
                    &req.key,
                    req.expected_version,
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                written => break written?,
            }
        }
        self.settle(&req.project_key).await;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }

    // ----- SDK keys -------------------------------------------------------------------------

    async fn issue_sdk_key(
        &self,
        request: Request<pb::IssueSdkKeyRequest>,
    ) -> Reply<pb::IssueSdkKeyResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        limits::text("name", &req.name, limits::MAX_NAME_LEN)?;
        let kind = convert::sdk_key_kind_from_proto(req.kind)?;
        let (new, secret) = new_sdk_key(kind, &req.name)?;
        let key = self
            .storage
            .issue_sdk_key(caller.actor(), &req.project_key, &req.environment_key, &new)
            .await?;
        Ok(Response::new(pb::IssueSdkKeyResponse {
            key: Some(convert::sdk_key(&key)),
            secret,
        }))
    }

    async fn list_sdk_keys(
        &self,
        request: Request<pb::ListSdkKeysRequest>,
    ) -> Reply<pb::ListSdkKeysResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        let env = convert::given(&req.environment_key);
        let keys = self
            .storage
            .list_sdk_keys(&req.project_key, env, req.include_revoked)
            .await?;
        Ok(Response::new(pb::ListSdkKeysResponse {
            keys: keys.iter().map(convert::sdk_key).collect(),
        }))
    }

    async fn revoke_sdk_key(&self, request: Request<pb::RevokeSdkKeyRequest>) -> Reply<pb::SdkKey> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        let key = self
            .storage
            .revoke_sdk_key(caller.actor(), &req.project_key, req.id)
            .await?;
        Ok(Response::new(convert::sdk_key(&key)))
    }

    async fn rotate_sdk_key(
        &self,
        request: Request<pb::RotateSdkKeyRequest>,
    ) -> Reply<pb::IssueSdkKeyResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        let old = self.storage.get_sdk_key(&req.project_key, req.id).await?;
        let (new, secret) = new_sdk_key(old.kind, "")?;
        let key = self
            .storage
            .rotate_sdk_key(
                caller.actor(),
                &req.project_key,
                req.id,
                &new,
                req.old_key_expires_at.as_ref().map(convert::millis),
            )
            .await?;
        Ok(Response::new(pb::IssueSdkKeyResponse {
            key: Some(convert::sdk_key(&key)),
            secret,
        }))
    }

    // ----- admin tokens ---------------------------------------------------------------------

    async fn create_admin_token(
        &self,
        request: Request<pb::CreateAdminTokenRequest>,
    ) -> Reply<pb::CreateAdminTokenResponse> {
        let (caller, req) = self.caller(request).await?;
        // Only an admin may create tokens, and only with roles it could use itself.
        if !caller.token().roles.iter().any(|b| b.role == Role::Admin) {
            return Err(Status::permission_denied(
                "creating admin tokens needs the admin role",
            ));
        }
        let roles = role_bindings(&req.roles)?;
        require_grantable(&caller, &roles)?;
        if req.principal.is_empty() {
            return Err(Status::invalid_argument("principal: is required"));
        }
        limits::text("principal", &req.principal, limits::MAX_NAME_LEN)?;
        limits::text("description", &req.description, limits::MAX_DESCRIPTION_LEN)?;
        let expires_at = req.expires_at.as_ref().map(convert::millis);
        let issued = self
            .auth
            .signer()
            .issue(&req.principal, expires_at)
            .map_err(|err| {
                tracing::error!(error = %err, "cannot sign a token");
                Status::internal("cannot sign a token")
            })?;
        let token = self
            .storage
            .create_admin_token(
                caller.actor(),
                &NewAdminToken {
                    id: issued.id.clone(),
                    principal: req.principal,
                    description: req.description,
                    hash: issued.hash.clone(),
                    roles,
                    expires_at,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateAdminTokenResponse {
            token: Some(convert::admin_token(&token)),
            secret: issued.token,
        }))
    }

    async fn list_admin_tokens(
        &self,
        request: Request<pb::ListAdminTokensRequest>,
    ) -> Reply<pb::ListAdminTokensResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require("*", Role::Admin)?;
        let tokens = self.storage.list_admin_tokens(req.include_revoked).await?;
        Ok(Response::new(pb::ListAdminTokensResponse {
            tokens: tokens.iter().map(convert::admin_token).collect(),
        }))
    }

    async fn set_admin_token_roles(
        &self,
        request: Request<pb::SetAdminTokenRolesRequest>,
    ) -> Reply<pb::AdminToken> {
        let (caller, req) = self.caller(request).await?;
        caller.require("*", Role::Admin)?;
        let roles = role_bindings(&req.roles)?;
        let token = self
            .storage
            .set_admin_token_roles(caller.actor(), &req.id, &roles)
            .await?;
        Ok(Response::new(convert::admin_token(&token)))
    }

    async fn revoke_admin_token(
        &self,
        request: Request<pb::RevokeAdminTokenRequest>,
    ) -> Reply<pb::AdminToken> {
        let (caller, req) = self.caller(request).await?;
        // Anyone may revoke their own token; other tokens need admin on every project.
        if req.id != caller.token().id {
            caller.require("*", Role::Admin)?;
        }
        let token = self
            .storage
            .revoke_admin_token(caller.actor(), &req.id)
            .await?;
        Ok(Response::new(convert::admin_token(&token)))
    }

    // ----- audit log ------------------------------------------------------------------------

    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Reply<pb::ListAuditEntriesResponse> {
        let (caller, req) = self.caller(request).await?;
        if req.project_key.is_empty() {
            caller.require("*", Role::Viewer)?;
        } else {
            caller.require(&req.project_key, Role::Viewer)?;
        }
        let some = |s: String| (!s.is_empty()).then_some(s);
        let filter = AuditFilter {
            project_key: some(req.project_key),
            environment_key: some(req.environment_key),
            resource_kind: some(req.resource_kind),
            resource_key: some(req.resource_key),
            actor: some(req.actor),
            since: req.since.as_ref().map(convert::millis),
            until: req.until.as_ref().map(convert::millis),
        };
        let page = self
            .storage
            .list_audit(&filter, &convert::page_request(req.page.as_ref()))
            .await?;
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries: page.items.iter().map(convert::audit_entry).collect(),
            next_page_token: next_token(page.next_cursor),
        }))
    }

    // ----- personal data --------------------------------------------------------------------

    async fn erase_context(
        &self,
        request: Request<pb::EraseContextRequest>,
    ) -> Reply<pb::EraseContextResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        let kind = if req.context_kind.is_empty() {
            "user"
        } else {
            req.context_kind.as_str()
        };
        // The same rules as the contexts SDKs send, so that any stored context can be named.
        vexil_engine::SingleContext::new(kind, &req.context_key).map_err(|err| match err {
            vexil_engine::ContextError::InvalidKey => {
                Status::invalid_argument("context_key: is required")
            }
            _ => Status::invalid_argument(format!(
                "context_kind: {kind:?} is not a context kind (1 to 64 of `A-Z a-z 0-9 . _ -`, \
                 not `kind` or `multi`)"
            )),
        })?;
        let environment = convert::given(&req.environment_key);
        let erased = self
            .storage
            .erase_context(
                caller.actor(),
                &req.project_key,
                environment,
                kind,
                &req.context_key,
            )
            .await?;
        Ok(Response::new(pb::EraseContextResponse {
            exposures: erased.exposures,
            track_events: erased.track_events,
            experiment_units: erased.experiment_units,
            rollup_rows: erased.rollup_rows,
            environment_keys: erased.environments,
        }))
    }

    // ----- export and import ----------------------------------------------------------------

    async fn export_environment(
        &self,
        request: Request<pb::ExportEnvironmentRequest>,
    ) -> Reply<pb::ExportEnvironmentResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let ruleset = self
            .storage
            .load_ruleset(&req.project_key, &req.environment_key)
            .await?;
        Ok(Response::new(pb::ExportEnvironmentResponse {
            // The model always serializes.
            ruleset_json: serde_json::to_string(&ruleset).unwrap_or_default(),
            version: i64::try_from(ruleset.version).unwrap_or(i64::MAX),
        }))
    }

    async fn import_environment(
        &self,
        request: Request<pb::ImportEnvironmentRequest>,
    ) -> Reply<pb::ImportEnvironmentResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Admin)?;
        limits::text("ruleset_json", &req.ruleset_json, limits::MAX_IMPORT_BYTES)?;
        let imported = imported_ruleset(&req.ruleset_json)?;
        // Every imported resource must be free of problems in the resulting ruleset.
        let change = RulesetChange {
            upsert_flags: imported.flags.clone(),
            upsert_segments: imported.segments.clone(),
            ..RulesetChange::default()
        };
        let validated_version = self
            .checker
            .check(&req.project_key, &req.environment_key, &change)
            .await?;
        // A change of the environment since the validation fails the import (ABORTED): an
        // import is rare enough for its caller to retry.
        let guards = EnvGuards::from([(req.environment_key.clone(), validated_version)]);
        let summary = self
            .storage
            .guarded(guards)
            .import_environment(
                caller.actor(),
                &req.project_key,
                &req.environment_key,
                &imported,
                req.expected_version,
            )
            .await?;
        self.settle(&req.project_key).await;
        Ok(Response::new(pb::ImportEnvironmentResponse {
            version: summary.version,
            created_flags: summary.created_flags,
            updated_flags: summary.updated_flags,
            segments: summary.segments,
        }))
    }

    // ----- history and rollback (see `history.rs`) -----------------------------------------

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Reply<pb::ListVersionsResponse> {
        let (caller, req) = self.caller(request).await?;
        self.list_resource_versions(caller, req).await
    }

    async fn get_version(
        &self,
        request: Request<pb::GetVersionRequest>,
    ) -> Reply<pb::ResourceVersion> {
        let (caller, req) = self.caller(request).await?;
        self.get_resource_version(caller, req).await
    }

    async fn diff_versions(
        &self,
        request: Request<pb::DiffVersionsRequest>,
    ) -> Reply<pb::DiffVersionsResponse> {
        let (caller, req) = self.caller(request).await?;
        self.diff_resource_versions(caller, req).await
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Reply<pb::ResourceVersion> {
        let (caller, req) = self.caller(request).await?;
        self.rollback_resource(caller, req).await
    }

    async fn rollback_environment(
        &self,
        request: Request<pb::RollbackEnvironmentRequest>,
    ) -> Reply<pb::RollbackEnvironmentResponse> {
        let (caller, req) = self.caller(request).await?;
        self.rollback_whole_environment(caller, req).await
    }

    // ----- scheduled changes (see `schedule.rs`) --------------------------------------------

    async fn schedule_change(
        &self,
        request: Request<pb::ScheduleChangeRequest>,
    ) -> Reply<pb::ScheduledChange> {
        let (caller, req) = self.caller(request).await?;
        self.schedule(caller, req).await
    }

    async fn list_scheduled_changes(
        &self,
        request: Request<pb::ListScheduledChangesRequest>,
    ) -> Reply<pb::ListScheduledChangesResponse> {
        let (caller, req) = self.caller(request).await?;
        self.list_scheduled(caller, req).await
    }

    async fn cancel_scheduled_change(
        &self,
        request: Request<pb::CancelScheduledChangeRequest>,
    ) -> Reply<pb::ScheduledChange> {
        let (caller, req) = self.caller(request).await?;
        self.cancel_scheduled(caller, req).await
    }

    // ----- progressive rollouts (see `ramps.rs`) --------------------------------------------

    async fn start_ramp(&self, request: Request<pb::StartRampRequest>) -> Reply<pb::Ramp> {
        let (caller, req) = self.caller(request).await?;
        self.start_ramp_call(caller, req).await
    }

    async fn list_ramps(
        &self,
        request: Request<pb::ListRampsRequest>,
    ) -> Reply<pb::ListRampsResponse> {
        let (caller, req) = self.caller(request).await?;
        self.list_ramps_call(caller, req).await
    }

    async fn set_ramp_state(&self, request: Request<pb::SetRampStateRequest>) -> Reply<pb::Ramp> {
        let (caller, req) = self.caller(request).await?;
        self.set_ramp_state_call(caller, req).await
    }

    async fn get_ramp_results(
        &self,
        request: Request<pb::GetRampResultsRequest>,
    ) -> Reply<pb::ExperimentResults> {
        let (caller, req) = self.caller(request).await?;
        self.get_ramp_results_call(caller, req).await
    }
}

/// The ruleset of an import. A file that is not a ruleset is refused with the parser's
/// message; a flag or segment the model cannot hold, with the engine's problem naming it and
/// its field.
fn imported_ruleset(text: &str) -> Result<RulesetData, Status> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| Status::invalid_argument(format!("ruleset_json: {err}")))?;
    match RulesetData::deserialize(&value) {
        Ok(data) => Ok(data),
        Err(err) => {
            let compiled = vexil_engine::Ruleset::from_value(&value)
                .map_err(|err| Status::invalid_argument(format!("ruleset_json: {err}")))?;
            let mut problems: Vec<String> =
                compiled.problems().iter().map(|p| p.to_string()).collect();
            if problems.is_empty() {
                problems.push(err.to_string());
            }
            Err(Status::invalid_argument(format!(
                "ruleset_json: invalid: {}",
                problems.join("; ")
            )))
        }
    }
}
