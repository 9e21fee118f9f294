//! Scheduled changes: the calls of `vexil.v1.AdminService` that schedule, list and cancel
//! them, and the task every instance runs to apply those that are due.
//!
//! A change is checked when it is scheduled (against the environment as it is then) and
//! again when it runs (as it is then): a change that no longer validates is not applied but
//! marked failed, with the engine's reason, in its record, the audit log
//! (`scheduled_change.fail`) and `vexil_scheduled_changes_total{outcome="failed"}`.
//! Whichever instance finds a change due first applies it; the storage makes that exactly
//! once (see `storage/scheduled.rs`).

use std::time::Duration;

use tonic::{Code, Response, Status};
use vexil_proto::model;
use vexil_proto::v1 as pb;

use super::{Admin, Reply, invalid_field, next_token};
use crate::auth::Caller;
use crate::convert;
use crate::metrics::Metrics;
use crate::ruleset_changes::RulesetChange;
use crate::storage::{
    EnvGuards, Millis, NewScheduledChange, Role, ScheduleState, ScheduledChange, ScheduledEdit,
    StorageError, now_millis,
};

/// How often each instance looks for due changes by default.
pub const DEFAULT_SCHEDULE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a guarded ramp's guardrails may go unread between steps by default.
pub const DEFAULT_RAMP_GUARD_INTERVAL: Duration = Duration::from_secs(60);

/// Due changes one round applies at most (the rest wait for the next round).
const DUE_PER_ROUND: i64 = 100;

/// What became of a due change in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// It no longer validates: marked failed.
    Failed,
    /// Another instance applied it first, or it was cancelled meanwhile.
    Taken,
}

fn state_to_proto(state: ScheduleState) -> i32 {
    (match state {
        ScheduleState::Pending => pb::ScheduledChangeState::Pending,
        ScheduleState::Applied => pb::ScheduledChangeState::Applied,
        ScheduleState::Failed => pb::ScheduledChangeState::Failed,
        ScheduleState::Cancelled => pb::ScheduledChangeState::Cancelled,
    }) as i32
}

fn scheduled_to_proto(x: &ScheduledChange) -> pb::ScheduledChange {
    let edit = match &x.edit {
        ScheduledEdit::On(on) => pb::scheduled_change::Edit::On(*on),
        ScheduledEdit::Configuration(c) => {
            pb::scheduled_change::Edit::Configuration(model::configuration_to_proto(c))
        }
    };
    pb::ScheduledChange {
        id: x.id,
        project_key: x.project_key.clone(),
        environment_key: x.environment_key.clone(),
        flag_key: x.flag_key.clone(),
        run_at: Some(convert::timestamp(x.run_at)),
        edit: Some(edit),
        comment: x.comment.clone(),
        created_by: x.created_by.clone(),
        created_at: Some(convert::timestamp(x.created_at)),
        state: state_to_proto(x.state),
        finished_at: x.finished_at.map(convert::timestamp),
        applied_version: x.applied_version.unwrap_or(0),
        outcome: x.outcome.clone(),
    }
}

impl Admin {
    pub(super) async fn schedule(
        &self,
        caller: Caller,
        req: pb::ScheduleChangeRequest,
    ) -> Reply<pb::ScheduledChange> {
        caller.require(&req.project_key, Role::Editor)?;
        let Some(run_at) = req.run_at.as_ref().map(convert::millis) else {
            return Err(Status::invalid_argument("run_at: a time is required"));
        };
        crate::limits::text("comment", &req.comment, crate::limits::MAX_DESCRIPTION_LEN)?;
        let edit = match &req.edit {
            Some(pb::schedule_change_request::Edit::On(on)) => ScheduledEdit::On(*on),
            Some(pb::schedule_change_request::Edit::Configuration(configuration)) => {
                super::check_config_sizes(configuration)?;
                ScheduledEdit::Configuration(Box::new(
                    model::configuration_from_proto(configuration, "configuration")
                        .map_err(invalid_field)?,
                ))
            }
            None => {
                return Err(Status::invalid_argument(
                    "edit: `on` or a configuration is required",
                ));
            }
        };
        let new = NewScheduledChange {
            environment_key: req.environment_key.clone(),
            flag_key: req.key.clone(),
            run_at,
            edit,
            comment: req.comment.clone(),
        };
        // Refused now if it would not validate now.
        let (flag, config) = self
            .flag_in(&req.project_key, &req.environment_key, &req.key)
            .await?;
        if flag.archived {
            return Err(Status::failed_precondition(format!(
                "flag `{}` is archived: restore it first",
                flag.key
            )));
        }
        let change = RulesetChange::upsert_flag(
            flag.model(&new.edit.apply_to(&config.configuration), config.version),
        );
        self.checker
            .check(&req.project_key, &req.environment_key, &change)
            .await?;
        let stored = self
            .storage
            .schedule_change(caller.actor(), &req.project_key, &new)
            .await?;
        Ok(Response::new(scheduled_to_proto(&stored)))
    }

    pub(super) async fn list_scheduled(
        &self,
        caller: Caller,
        req: pb::ListScheduledChangesRequest,
    ) -> Reply<pb::ListScheduledChangesResponse> {
        caller.require(&req.project_key, Role::Viewer)?;
        let flag = convert::given(&req.key);
        let page = self
            .storage
            .list_scheduled_changes(
                &req.project_key,
                &req.environment_key,
                flag,
                req.pending_only,
                &convert::page_request(req.page.as_ref()),
            )
            .await?;
        Ok(Response::new(pb::ListScheduledChangesResponse {
            changes: page.items.iter().map(scheduled_to_proto).collect(),
            next_page_token: next_token(page.next_cursor),
        }))
    }

    pub(super) async fn cancel_scheduled(
        &self,
        caller: Caller,
        req: pb::CancelScheduledChangeRequest,
    ) -> Reply<pb::ScheduledChange> {
        caller.require(&req.project_key, Role::Editor)?;
        let cancelled = self
            .storage
            .cancel_scheduled_change(caller.actor(), &req.project_key, req.id)
            .await?;
        Ok(Response::new(scheduled_to_proto(&cancelled)))
    }

    /// Applies the due changes and takes the due ramp steps every `interval`, and reads the
    /// guardrails of guarded ramps not read for `guard_every`, until the task is dropped.
    pub async fn run_scheduled_changes(
        self,
        metrics: Metrics,
        interval: Duration,
        guard_every: Duration,
    ) {
        let guard_every = Millis::try_from(guard_every.as_millis()).unwrap_or(Millis::MAX);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.apply_due_changes(&metrics, now_millis()).await {
                tracing::warn!(error = %err, "scheduled changes round failed");
            }
            if let Err(err) = self.advance_due_ramps(&metrics, now_millis()).await {
                tracing::warn!(error = %err, "ramp round failed");
            }
            if let Err(err) = self.guard_ramps(&metrics, now_millis(), guard_every).await {
                tracing::warn!(error = %err, "ramp guard round failed");
            }
        }
    }

    /// One round: applies every change due at `now`; returns what became of each.
    pub async fn apply_due_changes(
        &self,
        metrics: &Metrics,
        now: Millis,
    ) -> Result<Vec<(i64, Applied)>, Status> {
        let mut outcomes = Vec::new();
        for change in self
            .storage
            .due_scheduled_changes(now, DUE_PER_ROUND)
            .await?
        {
            match self.apply_one(&change).await {
                Ok(outcome) => {
                    let label = match outcome {
                        Applied::Applied => "applied",
                        Applied::Failed => "failed",
                        Applied::Taken => "taken",
                    };
                    metrics.scheduled_changes.with_label_values(&[label]).inc();
                    outcomes.push((change.id, outcome));
                }
                // Left pending: the next round tries again.
                Err(err) => tracing::warn!(
                    id = change.id, flag = %change.flag_key, error = %err,
                    "cannot apply scheduled change now"
                ),
            }
        }
        Ok(outcomes)
    }

    async fn apply_one(&self, change: &ScheduledChange) -> Result<Applied, Status> {
        let project = change.project_key.as_str();
        let mut attempt = 0;
        loop {
            let (flag, config) = self
                .flag_in(project, &change.environment_key, &change.flag_key)
                .await?;
            let checked = if flag.archived {
                Err(Status::failed_precondition(format!(
                    "flag `{}` is archived",
                    flag.key
                )))
            } else {
                let model =
                    flag.model(&change.edit.apply_to(&config.configuration), config.version);
                self.checker
                    .check(
                        project,
                        &change.environment_key,
                        &RulesetChange::upsert_flag(model),
                    )
                    .await
            };
            let version = match checked {
                Ok(version) => version,
                Err(status)
                    if matches!(
                        status.code(),
                        Code::InvalidArgument | Code::FailedPrecondition
                    ) =>
                {
                    let failed = self
                        .storage
                        .fail_scheduled_change(change, status.message())
                        .await?;
                    tracing::warn!(
                        id = change.id, flag = %change.flag_key, reason = status.message(),
                        "scheduled change no longer validates: not applied"
                    );
                    return Ok(if failed {
                        Applied::Failed
                    } else {
                        Applied::Taken
                    });
                }
                Err(status) => return Err(status),
            };
            let guards = EnvGuards::from([(change.environment_key.clone(), version)]);
            match self
                .storage
                .guarded(guards)
                .apply_scheduled_change(change)
                .await
            {
                Ok(_) => {
                    self.settle(project).await;
                    return Ok(Applied::Applied);
                }
                Err(StorageError::FailedPrecondition(_)) => return Ok(Applied::Taken),
                Err(err) if self.checker.moved(&err, attempt, project).await => attempt += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }
}
