//! Progressive rollouts: the calls of `vexil.v1.AdminService` that start, list, pause,
//! resume and cancel them, and the step each instance's scheduler takes when one is due.
//!
//! Every step is checked like any write before it is stored; a step that no longer validates
//! (the flag's variations changed under the ramp) pauses the ramp, audited, rather than
//! writing a broken flag.
//!
//! A guarded ramp's guardrails are compared before each step and, between steps, by one
//! instance every guard interval (the instance that records the look first takes it); a
//! regression rolls the flag back to the baseline instead of taking the step.

use tonic::{Code, Response, Status};
use vexil_proto::v1 as pb;

use super::{Admin, Reply, next_token};
use crate::auth::Caller;
use crate::convert;
use crate::experiment_results::{guard_definitions, ramp_regression, ramp_results};
use crate::metrics::Metrics;
use crate::ruleset_changes::RulesetChange;
use crate::storage::{
    EnvGuards, MAX_GUARD_METRICS, Millis, NewRamp, RAMP_EXPERIMENT_PREFIX, Ramp, RampGuard,
    RampMove, RampState, RampStep, Role, Serve, StorageError, now_millis,
};

/// The actor of what the scheduler does to a ramp on its own (pausing a step that no longer
/// validates, rolling back a ramp whose guardrail regressed).
pub const RAMP_ACTOR: &str = "vexil:ramp";

/// A guard's false-alarm rate when the request leaves it at 0.
const DEFAULT_GUARD_ALPHA: f64 = 0.05;

/// What a scheduler write does to a ramp.
#[derive(Clone, Copy)]
enum RampWrite<'a> {
    /// Takes its next step.
    Advance,
    /// Stops it and serves its baseline to everyone, for this reason.
    RollBack { reason: &'a str },
}

/// What the guard found.
enum Verdict {
    /// No guardrail regressed (or the ramp is unguarded).
    Healthy,
    /// A guardrail regressed: why, for people.
    Regressed(String),
}

/// Steps a ramp may have at most.
const MAX_STEPS: usize = 100;

fn state_to_proto(state: RampState) -> i32 {
    (match state {
        RampState::Running => pb::RampState::Running,
        RampState::Paused => pb::RampState::Paused,
        RampState::Completed => pb::RampState::Completed,
        RampState::Cancelled => pb::RampState::Cancelled,
        RampState::RolledBack => pb::RampState::RolledBack,
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
        guard: r.guard.as_ref().map(|g| pb::RampGuard {
            metrics: g.metrics.iter().map(convert::experiment_metric).collect(),
            alpha: g.alpha,
        }),
        guard_checked_at: r.guard_checked_at.map(convert::timestamp),
        rollback_reason: r.rollback_reason.clone(),
        experiment_key: r.experiment_key().unwrap_or_default(),
    }
}

fn guard_from_proto(guard: &pb::RampGuard) -> Result<RampGuard, Status> {
    crate::limits::count("guard.metrics", guard.metrics.len(), MAX_GUARD_METRICS)?;
    let metrics = guard
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| convert::experiment_metric_from_proto(m, &format!("guard.metrics[{i}]")))
        .collect::<Result<Vec<_>, Status>>()?;
    if !guard.alpha.is_finite() {
        return Err(Status::invalid_argument("guard.alpha: must be a number"));
    }
    Ok(RampGuard {
        metrics,
        alpha: if guard.alpha == 0.0 {
            DEFAULT_GUARD_ALPHA
        } else {
            guard.alpha
        },
    })
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
            guard: req.guard.as_ref().map(guard_from_proto).transpose()?,
        };
        new.check()?;
        if let Some(guard) = &new.guard {
            guard_definitions(&self.storage, &req.project_key, guard).await?;
        }
        let (flag, config) = self
            .flag_in(&req.project_key, &req.environment_key, &req.key)
            .await?;
        let mut first = config.configuration.clone();
        // The experiment key carries the ramp's id, not known yet: a key of the same shape is
        // checked, which is all the check looks at (it is unique to the ramp).
        let placeholder = format!("{RAMP_EXPERIMENT_PREFIX}0");
        first.fallthrough = crate::storage::serve_at(
            new.variation,
            new.baseline,
            new.steps[0].percent,
            new.guard.as_ref().map(|_| placeholder.as_str()),
        );
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
        let flag = convert::given(&req.key);
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

    pub(super) async fn get_ramp_results_call(
        &self,
        caller: Caller,
        req: pb::GetRampResultsRequest,
    ) -> Reply<pb::ExperimentResults> {
        caller.require(&req.project_key, Role::Viewer)?;
        let ramp = self.storage.get_ramp(&req.project_key, req.id).await?;
        let Some(guard) = &ramp.guard else {
            return Err(Status::failed_precondition(format!(
                "ramp {} has no guard",
                ramp.id
            )));
        };
        let definitions = guard_definitions(&self.storage, &ramp.project_key, guard).await?;
        let results = ramp_results(&self.storage, &ramp, &definitions, now_millis()).await?;
        Ok(Response::new(results))
    }

    /// Compares a ramp's guardrails as of `now`.
    async fn verdict(&self, ramp: &Ramp, now: Millis) -> Result<Verdict, Status> {
        let Some(guard) = &ramp.guard else {
            return Ok(Verdict::Healthy);
        };
        let definitions = guard_definitions(&self.storage, &ramp.project_key, guard).await?;
        let results = ramp_results(&self.storage, ramp, &definitions, now).await?;
        Ok(match ramp_regression(&results) {
            Some(reason) => Verdict::Regressed(reason),
            None => Verdict::Healthy,
        })
    }

    /// One round of the guard between steps: compares the guardrails of every running guarded
    /// ramp not looked at for `every`, and rolls back those that regressed; returns the ramps
    /// moved (rolled back, or paused when the rollback no longer validates).
    pub async fn guard_ramps(
        &self,
        metrics: &Metrics,
        now: Millis,
        every: Millis,
    ) -> Result<Vec<Ramp>, Status> {
        let mut rolled_back = Vec::new();
        for ramp in self.storage.ramps_to_guard(now, every).await? {
            // Another instance looked since, or the ramp moved: nothing to do.
            if !self.storage.claim_guard_check(&ramp, now).await? {
                continue;
            }
            match self.verdict(&ramp, now).await {
                Ok(Verdict::Healthy) => {}
                Ok(Verdict::Regressed(reason)) => {
                    if let Some((_, after)) = self.roll_back(metrics, &ramp, &reason, now).await? {
                        rolled_back.push(after);
                    }
                }
                Err(err) => tracing::warn!(
                    ramp = ramp.id, flag = %ramp.flag_key, error = %err,
                    "cannot compare the ramp's guardrails now"
                ),
            }
        }
        Ok(rolled_back)
    }

    /// Stops a ramp whose guardrail regressed and serves its baseline to every context;
    /// `None` when another instance moved it first. A rollback that no longer validates (the
    /// flag's variations changed under the ramp) pauses the ramp instead.
    async fn roll_back(
        &self,
        metrics: &Metrics,
        ramp: &Ramp,
        reason: &str,
        now: Millis,
    ) -> Result<Option<(&'static str, Ramp)>, Status> {
        let written = self
            .write_ramp(ramp, RampWrite::RollBack { reason }, now)
            .await?;
        if let Some(("rolled_back", _)) = &written {
            let environment = format!("{}/{}", ramp.project_key, ramp.environment_key);
            metrics
                .ramp_rollbacks
                .with_label_values(&[environment.as_str()])
                .inc();
            tracing::warn!(
                ramp = ramp.id, flag = %ramp.flag_key, environment = %environment,
                reason, "ramp rolled back: a guardrail regressed"
            );
        }
        Ok(written)
    }

    /// Writes a ramp's next step or its rollback, checked like any write; returns the
    /// outcome (`advanced`, `rolled_back`, or `paused` when the write no longer validates)
    /// and the ramp after it, or `None` when another instance moved it first.
    async fn write_ramp(
        &self,
        ramp: &Ramp,
        how: RampWrite<'_>,
        now: Millis,
    ) -> Result<Option<(&'static str, Ramp)>, Status> {
        let project = ramp.project_key.as_str();
        let mut attempt = 0;
        loop {
            let (flag, config) = self
                .flag_in(project, &ramp.environment_key, &ramp.flag_key)
                .await?;
            let mut next = config.configuration.clone();
            next.fallthrough = match how {
                RampWrite::Advance => ramp.serve_at(ramp.step + 1),
                RampWrite::RollBack { .. } => Serve::variation(ramp.baseline),
            };
            let change = RulesetChange::upsert_flag(flag.model(&next, config.version));
            let checked = match self
                .checker
                .check(project, &ramp.environment_key, &change)
                .await
            {
                Ok(version) => version,
                Err(status) if status.code() == Code::InvalidArgument => {
                    return Ok(self
                        .pause_invalid(ramp, status.message(), now)
                        .await?
                        .map(|paused| ("paused", paused)));
                }
                Err(status) => return Err(status),
            };
            let storage = self
                .storage
                .guarded(EnvGuards::from([(ramp.environment_key.clone(), checked)]));
            let written = match how {
                RampWrite::Advance => storage.advance_ramp(ramp, now).await,
                RampWrite::RollBack { reason } => {
                    storage.roll_back_ramp(RAMP_ACTOR, ramp, reason, now).await
                }
            };
            match written {
                Ok((after, _)) => {
                    self.settle(project).await;
                    let outcome = match how {
                        RampWrite::Advance => "advanced",
                        RampWrite::RollBack { .. } => "rolled_back",
                    };
                    return Ok(Some((outcome, after)));
                }
                Err(StorageError::FailedPrecondition(_)) => return Ok(None),
                Err(err) if self.checker.moved(&err, attempt, project).await => attempt += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Pauses a ramp whose next write no longer validates; `None` when it moved meanwhile.
    async fn pause_invalid(
        &self,
        ramp: &Ramp,
        reason: &str,
        now: Millis,
    ) -> Result<Option<Ramp>, Status> {
        tracing::warn!(
            ramp = ramp.id, flag = %ramp.flag_key, reason,
            "the ramp's next write no longer validates: paused"
        );
        match self
            .storage
            .move_ramp(RAMP_ACTOR, &ramp.project_key, ramp.id, RampMove::Pause, now)
            .await
        {
            Ok(paused) => Ok(Some(paused)),
            Err(StorageError::FailedPrecondition(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// One round: takes the next step of every ramp due at `now`; returns the ramps moved
    /// (advanced, rolled back because a guardrail regressed, or paused because the step no
    /// longer validates).
    pub async fn advance_due_ramps(
        &self,
        metrics: &Metrics,
        now: Millis,
    ) -> Result<Vec<Ramp>, Status> {
        let mut moved = Vec::new();
        for ramp in self.storage.due_ramps(now).await? {
            match self.advance_one(metrics, &ramp, now).await {
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
        metrics: &Metrics,
        ramp: &Ramp,
        now: Millis,
    ) -> Result<Option<(&'static str, Ramp)>, Status> {
        // A guarded ramp widens only while its guardrails hold.
        if let Verdict::Regressed(reason) = self.verdict(ramp, now).await? {
            return self.roll_back(metrics, ramp, &reason, now).await;
        }
        self.write_ramp(ramp, RampWrite::Advance, now).await
    }
}
