//! The history calls of `vexil.v1.AdminService`: list, show and compare the recorded
//! versions of a flag's configuration or of a segment, and restore one (or a whole
//! environment as of a time) through the same checks as any write.

use tonic::{Response, Status};
use vexil_proto::v1 as pb;

use super::{Admin, Reply, next_token};
use crate::auth::Caller;
use crate::convert;
use crate::ruleset_changes::RulesetChange;
use crate::storage::{
    EnvGuards, EnvironmentAsOf, FlagVersion, ResourceKind, Role, SegmentVersion, VersionAt,
};
use crate::versions::{self, Difference};

/// A resource with a history, as named by a request.
struct Named<'a> {
    project: &'a str,
    env: &'a str,
    key: &'a str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Flag,
    Segment,
}

/// A recorded version of either kind.
enum Recorded {
    Flag(FlagVersion),
    Segment(SegmentVersion),
}

impl Recorded {
    fn document(&self) -> serde_json::Value {
        match self {
            Recorded::Flag(v) => versions::flag_document(v),
            Recorded::Segment(v) => versions::segment_document(v),
        }
    }

    fn to_proto(&self, resource: &pb::VersionedResource) -> pb::ResourceVersion {
        let (version, at, actor, action, archived) = match self {
            Recorded::Flag(v) => (v.version, v.recorded_at, &v.actor, &v.action, v.archived),
            Recorded::Segment(v) => (v.version, v.recorded_at, &v.actor, &v.action, false),
        };
        pb::ResourceVersion {
            resource: Some(resource.clone()),
            version,
            recorded_at: Some(convert::timestamp(at)),
            actor: actor.clone(),
            action: action.clone(),
            model: Some(convert::json_to_value(&self.document())),
            archived,
        }
    }
}

fn named(resource: Option<&pb::VersionedResource>) -> Result<Named<'_>, Status> {
    let Some(resource) = resource else {
        return Err(Status::invalid_argument("resource: is required"));
    };
    let kind = match pb::VersionedKind::try_from(resource.kind) {
        Ok(pb::VersionedKind::Flag) => Kind::Flag,
        Ok(pb::VersionedKind::Segment) => Kind::Segment,
        _ => {
            return Err(Status::invalid_argument(
                "resource.kind: a kind is required (flag or segment)",
            ));
        }
    };
    for (field, value) in [
        ("resource.project_key", &resource.project_key),
        ("resource.environment_key", &resource.environment_key),
        ("resource.key", &resource.key),
    ] {
        if value.is_empty() {
            return Err(Status::invalid_argument(format!("{field}: is required")));
        }
    }
    Ok(Named {
        project: &resource.project_key,
        env: &resource.environment_key,
        key: &resource.key,
        kind,
    })
}

fn selected(selector: Option<&pb::VersionSelector>, field: &str) -> Result<VersionAt, Status> {
    match selector.and_then(|s| s.selector.as_ref()) {
        Some(pb::version_selector::Selector::Number(n)) if *n > 0 => Ok(VersionAt::Number(*n)),
        Some(pb::version_selector::Selector::Number(n)) => Err(Status::invalid_argument(format!(
            "{field}.number: versions start at 1, not {n}"
        ))),
        Some(pb::version_selector::Selector::At(at)) => Ok(VersionAt::Time(convert::millis(at))),
        None => Err(Status::invalid_argument(format!(
            "{field}: a version number or a time is required"
        ))),
    }
}

fn difference(d: &Difference) -> pb::VersionDifference {
    pb::VersionDifference {
        path: d.path.clone(),
        before: d.before.as_ref().map(convert::json_to_value),
        after: d.after.as_ref().map(convert::json_to_value),
    }
}

fn versioned_kind(kind: ResourceKind) -> i32 {
    (match kind {
        ResourceKind::Segment => pb::VersionedKind::Segment,
        _ => pb::VersionedKind::Flag,
    }) as i32
}

impl Admin {
    async fn recorded(&self, name: &Named<'_>, at: VersionAt) -> Result<Recorded, Status> {
        Ok(match name.kind {
            Kind::Flag => Recorded::Flag(
                self.storage
                    .flag_version(name.project, name.env, name.key, at)
                    .await?,
            ),
            Kind::Segment => Recorded::Segment(
                self.storage
                    .segment_version(name.project, name.env, name.key, at)
                    .await?,
            ),
        })
    }

    pub(super) async fn list_resource_versions(
        &self,
        caller: Caller,
        req: pb::ListVersionsRequest,
    ) -> Reply<pb::ListVersionsResponse> {
        let name = named(req.resource.as_ref())?;
        caller.require(name.project, Role::Viewer)?;
        let page = convert::page_request(req.page.as_ref());
        let resource = req.resource.clone().unwrap_or_default();
        let (versions, next) = match name.kind {
            Kind::Flag => {
                let page = self
                    .storage
                    .list_flag_versions(name.project, name.env, name.key, &page)
                    .await?;
                let versions = page.items.into_iter().map(Recorded::Flag);
                (
                    versions.map(|v| v.to_proto(&resource)).collect(),
                    page.next_cursor,
                )
            }
            Kind::Segment => {
                let page = self
                    .storage
                    .list_segment_versions(name.project, name.env, name.key, &page)
                    .await?;
                let versions = page.items.into_iter().map(Recorded::Segment);
                (
                    versions.map(|v| v.to_proto(&resource)).collect(),
                    page.next_cursor,
                )
            }
        };
        Ok(Response::new(pb::ListVersionsResponse {
            versions,
            next_page_token: next_token(next),
        }))
    }

    pub(super) async fn get_resource_version(
        &self,
        caller: Caller,
        req: pb::GetVersionRequest,
    ) -> Reply<pb::ResourceVersion> {
        let name = named(req.resource.as_ref())?;
        caller.require(name.project, Role::Viewer)?;
        let at = selected(req.version.as_ref(), "version")?;
        let recorded = self.recorded(&name, at).await?;
        Ok(Response::new(recorded.to_proto(
            req.resource.as_ref().unwrap_or(&Default::default()),
        )))
    }

    pub(super) async fn diff_resource_versions(
        &self,
        caller: Caller,
        req: pb::DiffVersionsRequest,
    ) -> Reply<pb::DiffVersionsResponse> {
        let name = named(req.resource.as_ref())?;
        caller.require(name.project, Role::Viewer)?;
        let from = self
            .recorded(&name, selected(req.from.as_ref(), "from")?)
            .await?;
        let to = self
            .recorded(&name, selected(req.to.as_ref(), "to")?)
            .await?;
        let resource = req.resource.clone().unwrap_or_default();
        Ok(Response::new(pb::DiffVersionsResponse {
            differences: versions::differences(&from.document(), &to.document())
                .iter()
                .map(difference)
                .collect(),
            from: Some(from.to_proto(&resource)),
            to: Some(to.to_proto(&resource)),
        }))
    }

    pub(super) async fn rollback_resource(
        &self,
        caller: Caller,
        req: pb::RollbackRequest,
    ) -> Reply<pb::ResourceVersion> {
        let name = named(req.resource.as_ref())?;
        caller.require(name.project, Role::Editor)?;
        let target = self
            .recorded(&name, selected(req.to.as_ref(), "to")?)
            .await?;
        let change = match &target {
            Recorded::Flag(v) => {
                let flag = self.storage.get_flag(name.project, name.key).await?;
                RulesetChange::upsert_flag(flag.model(&v.configuration, req.expected_version))
            }
            Recorded::Segment(v) => {
                RulesetChange::upsert_segment(v.segment.model(req.expected_version))
            }
        };
        let mut attempt = 0;
        let version = loop {
            let checked = self.checker.check(name.project, name.env, &change).await?;
            let storage = self
                .storage
                .guarded(EnvGuards::from([(name.env.to_owned(), checked)]));
            let written = match &target {
                Recorded::Flag(v) => storage
                    .rollback_flag(
                        caller.actor(),
                        name.project,
                        name.env,
                        req.expected_version,
                        v,
                    )
                    .await
                    .map(|c| c.version),
                Recorded::Segment(v) => storage
                    .rollback_segment(
                        caller.actor(),
                        name.project,
                        name.env,
                        req.expected_version,
                        v,
                    )
                    .await
                    .map(|s| s.version),
            };
            match written {
                Err(err) if self.checker.moved(&err, attempt, name.project).await => attempt += 1,
                written => break written?,
            }
        };
        self.settle(name.project).await;
        let now = self.recorded(&name, VersionAt::Number(version)).await?;
        Ok(Response::new(now.to_proto(
            req.resource.as_ref().unwrap_or(&Default::default()),
        )))
    }

    pub(super) async fn rollback_whole_environment(
        &self,
        caller: Caller,
        req: pb::RollbackEnvironmentRequest,
    ) -> Reply<pb::RollbackEnvironmentResponse> {
        caller.require(&req.project_key, Role::Editor)?;
        let Some(at) = req.at.as_ref().map(convert::millis) else {
            return Err(Status::invalid_argument("at: a time is required"));
        };
        let (project, env) = (req.project_key.as_str(), req.environment_key.as_str());
        let mut attempt = 0;
        let (plan, version) = loop {
            let plan = self.storage.environment_as_of(project, env, at).await?;
            if let Some(expected) = req.expected_version
                && expected != plan.version
            {
                return Err(Status::aborted(format!(
                    "environment `{project}/{env}` is at version {}, not {expected}: it was \
                     changed meanwhile",
                    plan.version
                )));
            }
            if req.dry_run || plan.is_empty() {
                let version = plan.version;
                break (plan, version);
            }
            let change = RulesetChange {
                upsert_flags: plan.flags.iter().map(FlagVersion::model).collect(),
                upsert_segments: plan.segments.iter().map(SegmentVersion::model).collect(),
                ..RulesetChange::default()
            };
            let checked = self.checker.check(project, env, &change).await?;
            match self
                .storage
                .guarded(EnvGuards::from([(env.to_owned(), checked)]))
                .rollback_environment(caller.actor(), &plan)
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, project).await => attempt += 1,
                written => break (plan, written?),
            }
        };
        if !req.dry_run && !plan.is_empty() {
            self.settle(project).await;
        }
        Ok(Response::new(rollback_summary(&plan, version)))
    }
}

fn rollback_summary(plan: &EnvironmentAsOf, version: i64) -> pb::RollbackEnvironmentResponse {
    let flags = plan.flags.iter().map(|f| pb::RestoredResource {
        kind: pb::VersionedKind::Flag as i32,
        key: f.flag_key.clone(),
        from_version: f.version,
    });
    let segments = plan.segments.iter().map(|s| pb::RestoredResource {
        kind: pb::VersionedKind::Segment as i32,
        key: s.segment.key.clone(),
        from_version: s.version,
    });
    pb::RollbackEnvironmentResponse {
        version,
        restored: flags.chain(segments).collect(),
        skipped: plan
            .skipped
            .iter()
            .map(|s| pb::SkippedResource {
                kind: versioned_kind(s.kind),
                key: s.key.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
    }
}
