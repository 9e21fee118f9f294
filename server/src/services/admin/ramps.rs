//! Progressive rollouts: the calls of `vexil.v1.AdminService` that start, list, pause,
//! resume and cancel them, and the step each instance's scheduler takes when one is due.
//!
//! Every step is checked like any write before it is stored; a step that no longer validates
//! (the flag's variations changed under the ramp) pauses the ramp, audited, rather than
//! writing a broken flag.

use tonic::{Code, Response, Status};
use vexil_proto::v1 as pb;

use super::{Admin, Reply, next_token};
use crate::auth::Caller;
use crate::convert;
use crate::metrics::Metrics;
use crate::ruleset_changes::RulesetChange;
use crate::storage::{
    EnvGuards, Millis, NewRamp, Ramp, RampMove, RampState, RampStep, Role, StorageError, now_millis,
};

/// The actor of what the scheduler does to a ramp on its own (pausing a step that no longer
/// validates).
pub const RAMP_ACTOR: &str = "vexil:ramp";

/// Steps a ramp may have at most.
const MAX_STEPS: usize = 100;

fn state_to_proto(state: RampState) -> i32 {
    (match state {
        RampState::Running => pb::RampState::Running,
        RampState::Paused => pb::RampState::Paused,
        RampState::Completed => pb::RampState::Completed,
        RampState::Cancelled => pb::RampState::Cancelled,
    }) as i32
}

fn duration(ms: Millis) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn ramp_to_proto(r: &Ramp) -> pb::Ramp {
    let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    pb::Ramp {
        id: r.id,
        project_key: r.project_key.clone(),
        environment_key: r.environment_key.clone(),
        flag_key: r.flag_key.clone(),
        variation: index(r.variation),
        baseline: index(r.baseline),
        steps: r
            .steps
            .iter()
            .map(|s| pb::RampStep {
                percent: s.percent,
                duration: Some(duration(s.duration_ms)),
            })
            .collect(),
        state: state_to_proto(r.state),
        step: index(r.step),
        step_started_at: Some(convert::timestamp(r.step_started_at)),
        next_step_at: r.next_step_at().map(convert::timestamp),
        created_by: r.created_by.clone(),
        created_at: Some(convert::timestamp(r.created_at)),
        updated_at: Some(convert::timestamp(r.updated_at)),
    }
}

fn steps_from_proto(steps: &[pb::RampStep]) -> Result<Vec<RampStep>, Status> {
    crate::limits::count("steps", steps.len(), MAX_STEPS)?;
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let ms = match &step.duration {
                Some(d) => d
                    .seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(d.nanos) / 1_000_000),
                None => 0,
            };
            if !step.percent.is_finite() {
                return Err(Status::invalid_argument(format!(
                    "steps[{i}].percent: must be a number"
                )));
            }
            Ok(RampStep {
                percent: step.percent,
                duration_ms: ms,
            })
        })
        .collect()
}

impl Admin {
    pub(super) async fn start_ramp_call(
        &self,
        caller: Caller,
        req: pb::StartRampRequest,
    ) -> Reply<pb::Ramp> {
        caller.require(&req.project_key, Role::Editor)?;
        let new = NewRamp {
            environment_key: req.environment_key.clone(),
            flag_key: req.key.clone(),
            variation: req.variation as usize,
            baseline: req.baseline as usize,
            steps: steps_from_proto(&req.steps)?,
        };
        new.check()?;
        let (flag, config) = self
            .flag_in(&req.project_key, &req.environment_key, &req.key)
            .await?;
        let mut first = config.configuration.clone();
        first.fallthrough =
            crate::storage::serve_at(new.variation, new.baseline, new.steps[0].percent);
        let change = RulesetChange::upsert_flag(flag.model(&first, req.expected_version));
        let mut attempt = 0;
        let ramp = loop {
            let checked = self
                .checker
                .check(&req.project_key, &req.environment_key, &change)
                .await?;
            match self
                .storage
                .guarded(EnvGuards::from([(req.environment_key.clone(), checked)]))
                .start_ramp(
                    caller.actor(),
                    &req.project_key,
                    &new,
                    req.expected_version,
                    now_millis(),
                )
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, &req.project_key).await => {
                    attempt += 1
                }
                started => break started?.0,
            }
        };
        self.settle(&req.project_key).await;
        Ok(Response::new(ramp_to_proto(&ramp)))
    }

    pub(super) async fn list_ramps_call(
        &self,
        caller: Caller,
        req: pb::ListRampsRequest,
    ) -> Reply<pb::ListRampsResponse> {
        caller.require(&req.project_key, Role::Viewer)?;
        let flag = (!req.key.is_empty()).then_some(req.key.as_str());
        let page = self
            .storage
            .list_ramps(
                &req.project_key,
                &req.environment_key,
                flag,
                &convert::page_request(req.page.as_ref()),
            )
            .await?;
        Ok(Response::new(pb::ListRampsResponse {
            ramps: page.items.iter().map(ramp_to_proto).collect(),
            next_page_token: next_token(page.next_cursor),
        }))
    }

    pub(super) async fn set_ramp_state_call(
        &self,
        caller: Caller,
        req: pb::SetRampStateRequest,
    ) -> Reply<pb::Ramp> {
        caller.require(&req.project_key, Role::Editor)?;
        let how = match pb::RampState::try_from(req.state) {
            Ok(pb::RampState::Paused) => RampMove::Pause,
            Ok(pb::RampState::Running) => RampMove::Resume,
            Ok(pb::RampState::Cancelled) => RampMove::Cancel,
            _ => {
                return Err(Status::invalid_argument(
                    "state: PAUSED, RUNNING or CANCELLED is required",
                ));
            }
        };
        let ramp = self
            .storage
            .move_ramp(caller.actor(), &req.project_key, req.id, how, now_millis())
            .await?;
        Ok(Response::new(ramp_to_proto(&ramp)))
    }

    /// One round: takes the next step of every ramp due at `now`; returns the ramps moved
    /// (advanced, or paused because the step no longer validates).
    pub async fn advance_due_ramps(
        &self,
        metrics: &Metrics,
        now: Millis,
    ) -> Result<Vec<Ramp>, Status> {
        let mut moved = Vec::new();
        for ramp in self.storage.due_ramps(now).await? {
            match self.advance_one(&ramp, now).await {
                Ok(Some((outcome, after))) => {
                    metrics.ramp_steps.with_label_values(&[outcome]).inc();
                    moved.push(after);
                }
                Ok(None) => metrics.ramp_steps.with_label_values(&["taken"]).inc(),
                // Left as it is: the next round tries again.
                Err(err) => tracing::warn!(
                    ramp = ramp.id, flag = %ramp.flag_key, error = %err,
                    "cannot take the ramp's next step now"
                ),
            }
        }
        Ok(moved)
    }

    async fn advance_one(
        &self,
        ramp: &Ramp,
        now: Millis,
    ) -> Result<Option<(&'static str, Ramp)>, Status> {
        let project = ramp.project_key.as_str();
        let mut attempt = 0;
        loop {
            let (flag, config) = self
                .flag_in(project, &ramp.environment_key, &ramp.flag_key)
                .await?;
            let mut next = config.configuration.clone();
            next.fallthrough = ramp.serve_at(ramp.step + 1);
            let change = RulesetChange::upsert_flag(flag.model(&next, config.version));
            let checked = match self
                .checker
                .check(project, &ramp.environment_key, &change)
                .await
            {
                Ok(version) => version,
                Err(status) if status.code() == Code::InvalidArgument => {
                    tracing::warn!(
                        ramp = ramp.id, flag = %ramp.flag_key, reason = status.message(),
                        "the ramp's next step no longer validates: paused"
                    );
                    return match self
                        .storage
                        .move_ramp(RAMP_ACTOR, project, ramp.id, RampMove::Pause, now)
                        .await
                    {
                        Ok(paused) => Ok(Some(("paused", paused))),
                        Err(StorageError::FailedPrecondition(_)) => Ok(None),
                        Err(err) => Err(err.into()),
                    };
                }
                Err(status) => return Err(status),
            };
            match self
                .storage
                .guarded(EnvGuards::from([(ramp.environment_key.clone(), checked)]))
                .advance_ramp(ramp, now)
                .await
            {
                Ok((advanced, _)) => {
                    self.settle(project).await;
                    return Ok(Some(("advanced", advanced)));
                }
                Err(StorageError::FailedPrecondition(_)) => return Ok(None),
                Err(err) if self.checker.moved(&err, attempt, project).await => attempt += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }
}
