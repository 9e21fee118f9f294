//! Progressive rollouts ("ramps"): a flag's fallthrough in one environment moved from a
//! baseline variation to another in steps of percentage and duration.
//!
//! Each step is a percentage rollout listing the new variation first, so a context's bucket
//! decides once for all steps: a context served the new variation at p % keeps it at every
//! larger percentage (its bucket is below p, hence below the next one), provided the flag's
//! salt and the rollout's bucketing attribute stay as they are, which a ramp never changes.
//!
//! Advancing a step is one transaction that moves the ramp's step with a conditional update
//! and writes the flag, so whichever instance finds it due first advances it, once.
//!
//! A guarded ramp also tags its rollout as an experiment ([`Ramp::experiment_key`]), so that
//! SDKs report which contexts were served which side; the server compares guardrail metrics
//! between the two sides and rolls the flag back to the baseline on a regression
//! ([`Storage::roll_back_ramp`]). The tag changes no context's bucket.

use serde::{Deserialize, Serialize};

use super::db::{Row, Tx, args};
use super::flags::{fetch_config, rewrite_config};
use super::history::Stamp;
use super::projects::page_from_rows;
use super::{
    ExperimentMetric, FlagConfig, Millis, Page, PageRequest, ResourceKind, Result, Serve, Storage,
    StorageError, bump_env, from_text, not_found, to_text,
};
use vexil_engine::model::{Experiment as ServedExperiment, Rollout, WeightedVariation};

/// The prefix of the experiment key under which SDKs report the exposures of a guarded ramp,
/// followed by the ramp's id. Experiments cannot take keys with it.
pub const RAMP_EXPERIMENT_PREFIX: &str = "vexil-ramp-";

/// Guardrail metrics a ramp may watch at most.
pub const MAX_GUARD_METRICS: usize = 10;

/// What a guarded ramp watches: project metrics that must not get significantly worse for
/// the contexts served the new variation than for those still on the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampGuard {
    pub metrics: Vec<ExperimentMetric>,
    /// The false-alarm rate of the whole guard, shared equally by its metrics.
    pub alpha: f64,
}

/// One step of a ramp: this percentage of contexts get the new variation for this long.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RampStep {
    pub percent: f64,
    pub duration_ms: Millis,
}

/// The weight of a whole rollout, in the engine's units.
const WHOLE: i64 = 100_000;

/// Where a ramp stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RampState {
    Running,
    Paused,
    Completed,
    Cancelled,
    /// A guardrail regressed: the flag serves the baseline to every context again.
    RolledBack,
}

impl RampState {
    pub fn as_str(self) -> &'static str {
        match self {
            RampState::Running => "running",
            RampState::Paused => "paused",
            RampState::Completed => "completed",
            RampState::Cancelled => "cancelled",
            RampState::RolledBack => "rolled_back",
        }
    }

    fn parse(name: &str) -> Result<RampState> {
        Ok(match name {
            "running" => RampState::Running,
            "paused" => RampState::Paused,
            "completed" => RampState::Completed,
            "cancelled" => RampState::Cancelled,
            "rolled_back" => RampState::RolledBack,
            other => {
                return Err(StorageError::Corrupt(format!(
                    "unknown ramp state `{other}`"
                )));
            }
        })
    }
}

/// A ramp, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ramp {
    pub id: i64,
    pub project_key: String,
    pub environment_key: String,
    pub flag_key: String,
    /// The variation rolled out.
    pub variation: usize,
    /// The variation every other context keeps.
    pub baseline: usize,
    pub steps: Vec<RampStep>,
    pub state: RampState,
    /// The index of the step in force.
    pub step: usize,
    pub step_started_at: Millis,
    /// While paused: how long the step in force had left.
    pub paused_remaining: Option<Millis>,
    /// The guardrails, when the ramp is guarded.
    pub guard: Option<RampGuard>,
    /// When an instance last compared the guardrails (the start, before the first look).
    pub guard_checked_at: Option<Millis>,
    /// Why the guard rolled the ramp back; empty otherwise.
    pub rollback_reason: String,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Ramp {
    /// When the step in force ends and the next one is due: `None` unless running with a
    /// step after this one.
    pub fn next_step_at(&self) -> Option<Millis> {
        if self.state != RampState::Running || self.step + 1 >= self.steps.len() {
            return None;
        }
        Some(self.step_started_at + self.steps[self.step].duration_ms)
    }

    /// What the flag's fallthrough serves at step `step`.
    pub fn serve_at(&self, step: usize) -> Serve {
        serve_at(
            self.variation,
            self.baseline,
            self.steps[step].percent,
            self.experiment_key().as_deref(),
        )
    }

    /// The experiment key under which SDKs report a guarded ramp's exposures.
    pub fn experiment_key(&self) -> Option<String> {
        self.guard
            .as_ref()
            .map(|_| format!("{RAMP_EXPERIMENT_PREFIX}{}", self.id))
    }

    /// The weight of the rolled-out variation at the step in force, in the engine's units.
    pub fn weight(&self) -> i64 {
        weight_of(self.steps[self.step.min(self.steps.len() - 1)].percent)
    }
}

fn weight_of(percent: f64) -> i64 {
    ((percent * 1000.0).round() as i64).clamp(0, WHOLE)
}

/// A rollout of `percent` % to `variation`, the rest to `baseline`, counted as experiment
/// `experiment` when given (every context in it: the tag only makes SDKs report exposures);
/// the variation alone at 100 %.
pub fn serve_at(
    variation: usize,
    baseline: usize,
    percent: f64,
    experiment: Option<&str>,
) -> Serve {
    let weight = weight_of(percent);
    if weight == WHOLE {
        return Serve::variation(variation);
    }
    Serve {
        variation: None,
        rollout: Some(Rollout {
            // The new variation first: a context's bucket below the percentage gets it, so
            // a growing percentage only ever adds contexts.
            variations: vec![
                WeightedVariation { variation, weight },
                WeightedVariation {
                    variation: baseline,
                    weight: WHOLE - weight,
                },
            ],
            bucket_by: Default::default(),
            algorithm: Default::default(),
        }),
        experiment: experiment.map(|key| ServedExperiment {
            key: key.to_owned(),
            traffic_allocation: WHOLE,
            layer: None,
            layer_offset: 0,
        }),
    }
}

/// What starting a ramp takes.
#[derive(Debug, Clone)]
pub struct NewRamp {
    pub environment_key: String,
    pub flag_key: String,
    pub variation: usize,
    pub baseline: usize,
    pub steps: Vec<RampStep>,
    pub guard: Option<RampGuard>,
}

impl NewRamp {
    /// Refuses steps a ramp cannot take, naming the field.
    pub fn check(&self) -> Result<()> {
        let invalid = |message: String| Err(StorageError::InvalidArgument(message));
        if self.steps.is_empty() {
            return invalid("steps: at least one step is required".into());
        }
        let mut previous = 0.0;
        for (i, step) in self.steps.iter().enumerate() {
            if !(step.percent > previous && step.percent <= 100.0) {
                return invalid(format!(
                    "steps[{i}].percent: {} must be above the step before ({previous}) and at \
                     most 100",
                    step.percent
                ));
            }
            if step.duration_ms < 0 {
                return invalid(format!("steps[{i}].duration: must not be negative"));
            }
            previous = step.percent;
        }
        if previous != 100.0 {
            return invalid(format!(
                "steps[{}].percent: the last step must be 100, not {previous}",
                self.steps.len() - 1
            ));
        }
        if self.variation == self.baseline {
            return invalid("baseline: must differ from the variation rolled out".into());
        }
        if let Some(guard) = &self.guard {
            if guard.metrics.is_empty() || guard.metrics.len() > MAX_GUARD_METRICS {
                return invalid(format!(
                    "guard.metrics: 1 to {MAX_GUARD_METRICS} metrics are required, not {}",
                    guard.metrics.len()
                ));
            }
            for (i, metric) in guard.metrics.iter().enumerate() {
                if guard.metrics[..i]
                    .iter()
                    .any(|m| m.metric_key == metric.metric_key)
                {
                    return invalid(format!(
                        "guard.metrics[{i}].metric_key: `{}` is listed twice",
                        metric.metric_key
                    ));
                }
            }
            if !(guard.alpha > 0.0 && guard.alpha <= 0.5) {
                return invalid(format!(
                    "guard.alpha: {} must be above 0 and at most 0.5",
                    guard.alpha
                ));
            }
        }
        Ok(())
    }
}

const COLUMNS: &str = "r.id, p.key, e.key, f.key, r.variation, r.baseline, r.steps, r.state, \
     r.step, r.step_started_at, r.paused_remaining, r.created_by, r.created_at, r.updated_at, \
     r.guard, r.guard_checked_at, r.rollback_reason";

const FROM: &str = "rollout_ramps r JOIN flags f ON f.id = r.flag_id \
     JOIN environments e ON e.id = r.environment_id JOIN projects p ON p.id = e.project_id";

fn index(value: i64, what: &str) -> Result<usize> {
    usize::try_from(value)
        .map_err(|_| StorageError::Corrupt(format!("{what} {value} out of range")))
}

fn from_row(row: &Row) -> Result<Ramp> {
    Ok(Ramp {
        id: row.get(0)?,
        project_key: row.get(1)?,
        environment_key: row.get(2)?,
        flag_key: row.get(3)?,
        variation: index(row.get(4)?, "ramp variation")?,
        baseline: index(row.get(5)?, "ramp baseline")?,
        steps: from_text(&row.get::<String>(6)?, "ramp steps")?,
        state: RampState::parse(&row.get::<String>(7)?)?,
        step: index(row.get(8)?, "ramp step")?,
        step_started_at: row.get(9)?,
        paused_remaining: row.get(10)?,
        created_by: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
        guard: match row.get::<Option<String>>(14)? {
            Some(text) => Some(from_text(&text, "ramp guard")?),
            None => None,
        },
        guard_checked_at: row.get(15)?,
        rollback_reason: row.get(16)?,
    })
}

async fn fetch(tx: &mut Tx, project: &str, id: i64) -> Result<Ramp> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1 AND p.key = $2");
    match tx.fetch_optional(&sql, args![id, project]).await? {
        Some(row) => from_row(&row),
        None => Err(not_found(ResourceKind::Ramp, &id.to_string())),
    }
}

/// How [`Storage::take_step`] moves a ramp.
struct Taken<'a> {
    step: usize,
    step_started_at: Millis,
    state: RampState,
    rollback_reason: &'a str,
    /// The flag's fallthrough from then on.
    fallthrough: Serve,
    stamp: Stamp<'a>,
}

/// How a ramp moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampMove {
    Pause,
    Resume,
    Cancel,
}

impl Storage {
    /// Starts a ramp: stores it and writes its first step into the flag's fallthrough, in one
    /// transaction (audited as `ramp.start`). Refused (ALREADY_EXISTS) while another ramp of
    /// the flag is in progress in the environment. Validating the flag with its new
    /// fallthrough is the caller's job.
    pub async fn start_ramp(
        &self,
        actor: &str,
        project: &str,
        new: &NewRamp,
        expected_version: i64,
        now: Millis,
    ) -> Result<(Ramp, FlagConfig)> {
        new.check()?;
        let env = new.environment_key.as_str();
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, now, self.guards()).await?;
        let (before, archived) = fetch_config(&mut tx, bumped.id, &new.flag_key).await?;
        super::check_version(
            ResourceKind::FlagConfig,
            &new.flag_key,
            expected_version,
            before.version,
        )?;
        // One ramp in progress per flag and environment, whatever the new one's steps (the
        // unique index covers only ramps stored in progress; a single step is stored done).
        let active = tx
            .fetch_optional(
                "SELECT r.id FROM rollout_ramps r JOIN flags f ON f.id = r.flag_id \
                 WHERE r.environment_id = $1 AND f.key = $2 AND r.state IN ('running', 'paused')",
                args![bumped.id, &new.flag_key],
            )
            .await?;
        if active.is_some() {
            return Err(StorageError::AlreadyExists {
                kind: ResourceKind::Ramp,
                key: new.flag_key.clone(),
            });
        }
        let row = tx
            .fetch_optional(
                "INSERT INTO rollout_ramps (environment_id, flag_id, variation, baseline, steps, \
                 state, step, step_started_at, created_by, created_at, updated_at, guard, \
                 guard_checked_at) \
                 SELECT $1, f.id, $3, $4, $5, $8, 0, $6, $7, $6, $6, $9, $6 FROM flags f \
                 JOIN environments e ON e.project_id = f.project_id \
                 WHERE e.id = $1 AND f.key = $2 RETURNING id",
                args![
                    bumped.id,
                    &new.flag_key,
                    i64::try_from(new.variation).unwrap_or(i64::MAX),
                    i64::try_from(new.baseline).unwrap_or(i64::MAX),
                    to_text(&new.steps),
                    now,
                    actor,
                    // A single step (100 % at once) is done as soon as it is written.
                    if new.steps.len() == 1 {
                        RampState::Completed.as_str()
                    } else {
                        RampState::Running.as_str()
                    },
                    new.guard.as_ref().map(to_text)
                ],
            )
            .await
            .map_err(StorageError::on_write(ResourceKind::Ramp, &new.flag_key))?;
        let id: i64 = match row {
            Some(row) => row.get(0)?,
            None => return Err(StorageError::Corrupt("insert returned no id".into())),
        };
        let ramp = fetch(&mut tx, project, id).await?;
        let stamp = Stamp::new(actor, "ramp.start", now);
        let mut update = before.configuration.clone();
        update.fallthrough = ramp.serve_at(0);
        rewrite_config(&mut tx, &bumped, &new.flag_key, &update, archived, stamp).await?;
        let (after, _) = fetch_config(&mut tx, bumped.id, &new.flag_key).await?;
        audit(&mut tx, stamp, &ramp, None).await?;
        self.commit_and_notify(tx, project, std::slice::from_ref(&bumped))
            .await?;
        Ok((ramp, after))
    }

    /// Returns one ramp of a project.
    pub async fn get_ramp(&self, project: &str, id: i64) -> Result<Ramp> {
        let mut tx = self.read().await?;
        fetch(&mut tx, project, id).await
    }

    /// Lists an environment's ramps (of one flag when `flag` is given), by id.
    pub async fn list_ramps(
        &self,
        project: &str,
        env: &str,
        flag: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Ramp>> {
        let limit = page.effective_limit();
        let after = page.number_cursor(0)?;
        let mut tx = self.read().await?;
        super::projects::fetch_env(&mut tx, project, env).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE p.key = $1 AND e.key = $2 AND r.id > $3 \
             AND ($4 = '' OR f.key = $4) ORDER BY r.id LIMIT $5"
        );
        let rows = tx
            .fetch_all(
                &sql,
                args![project, env, after, flag.unwrap_or(""), limit + 1],
            )
            .await?;
        page_from_rows(&rows, from_row, limit, |r| r.id.to_string())
    }

    /// The running ramps whose next step is due at `now` (in every project).
    pub async fn due_ramps(&self, now: Millis) -> Result<Vec<Ramp>> {
        let mut tx = self.read().await?;
        let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE r.state = 'running' ORDER BY r.id");
        let rows = tx.fetch_all(&sql, args![]).await?;
        let mut due = Vec::new();
        for row in &rows {
            let ramp = from_row(row)?;
            if ramp.next_step_at().is_some_and(|at| at <= now) {
                due.push(ramp);
            }
        }
        Ok(due)
    }

    /// Moves a due ramp to its next step and writes that step into the flag's fallthrough, in
    /// one transaction (audited as `ramp.advance`, on behalf of who started it); the last
    /// step completes it. Refused (FAILED_PRECONDITION), writing nothing, when the ramp is no
    /// longer at `ramp.step` and running: another instance advanced it, or someone paused or
    /// cancelled it.
    pub async fn advance_ramp(&self, ramp: &Ramp, now: Millis) -> Result<(Ramp, FlagConfig)> {
        let next = ramp.step + 1;
        let state = if next + 1 >= ramp.steps.len() {
            RampState::Completed
        } else {
            RampState::Running
        };
        let taken = Taken {
            step: next,
            step_started_at: now,
            state,
            rollback_reason: "",
            fallthrough: ramp.serve_at(next),
            stamp: Stamp::new(&ramp.created_by, "ramp.advance", now),
        };
        self.take_step(ramp, taken).await
    }

    /// Stops a running ramp whose guardrail regressed and serves its baseline to every
    /// context, in one transaction (audited as `ramp.rollback` by `actor`, with `reason`).
    /// Refused (FAILED_PRECONDITION), writing nothing, when the ramp is no longer at
    /// `ramp.step` and running.
    pub async fn roll_back_ramp(
        &self,
        actor: &str,
        ramp: &Ramp,
        reason: &str,
        now: Millis,
    ) -> Result<(Ramp, FlagConfig)> {
        let taken = Taken {
            step: ramp.step,
            step_started_at: ramp.step_started_at,
            state: RampState::RolledBack,
            rollback_reason: reason,
            fallthrough: Serve::variation(ramp.baseline),
            stamp: Stamp::new(actor, "ramp.rollback", now),
        };
        self.take_step(ramp, taken).await
    }

    /// Moves a running ramp as `taken` says and writes its fallthrough, if it is still at
    /// `ramp.step` and running.
    async fn take_step(&self, ramp: &Ramp, taken: Taken<'_>) -> Result<(Ramp, FlagConfig)> {
        let (project, env, key) = (
            ramp.project_key.as_str(),
            ramp.environment_key.as_str(),
            ramp.flag_key.as_str(),
        );
        let now = taken.stamp.at;
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, now, self.guards()).await?;
        let moved = tx
            .execute(
                "UPDATE rollout_ramps SET step = $2, step_started_at = $3, state = $4, \
                 rollback_reason = $5, guard_checked_at = $6, updated_at = $6 \
                 WHERE id = $1 AND step = $7 AND state = 'running'",
                args![
                    ramp.id,
                    i64::try_from(taken.step).unwrap_or(i64::MAX),
                    taken.step_started_at,
                    taken.state.as_str(),
                    taken.rollback_reason,
                    now,
                    i64::try_from(ramp.step).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        if moved != 1 {
            return Err(StorageError::FailedPrecondition(format!(
                "ramp {} is no longer running at step {}",
                ramp.id, ramp.step
            )));
        }
        let (before, archived) = fetch_config(&mut tx, bumped.id, key).await?;
        let mut update = before.configuration.clone();
        update.fallthrough = taken.fallthrough;
        rewrite_config(&mut tx, &bumped, key, &update, archived, taken.stamp).await?;
        let (after, _) = fetch_config(&mut tx, bumped.id, key).await?;
        let moved = fetch(&mut tx, project, ramp.id).await?;
        audit(&mut tx, taken.stamp, &moved, Some(ramp)).await?;
        self.commit_and_notify(tx, project, std::slice::from_ref(&bumped))
            .await?;
        Ok((moved, after))
    }

    /// The running guarded ramps whose guardrails were last compared at `now - every` or
    /// before (in every project).
    pub async fn ramps_to_guard(&self, now: Millis, every: Millis) -> Result<Vec<Ramp>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE r.state = 'running' AND r.guard IS NOT NULL \
             AND COALESCE(r.guard_checked_at, 0) <= $1 ORDER BY r.id"
        );
        let rows = tx.fetch_all(&sql, args![now - every]).await?;
        rows.iter().map(from_row).collect()
    }

    /// Records that this instance compares a ramp's guardrails at `now`: false when another
    /// instance recorded a comparison since `ramp` was read, or the ramp moved (then there
    /// is nothing to compare for now).
    pub async fn claim_guard_check(&self, ramp: &Ramp, now: Millis) -> Result<bool> {
        let mut tx = self.write().await?;
        let claimed = tx
            .execute(
                "UPDATE rollout_ramps SET guard_checked_at = $2 WHERE id = $1 \
                 AND state = 'running' AND step = $3 AND COALESCE(guard_checked_at, -1) = $4",
                args![
                    ramp.id,
                    now,
                    i64::try_from(ramp.step).unwrap_or(i64::MAX),
                    ramp.guard_checked_at.unwrap_or(-1)
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(claimed == 1)
    }

    /// Pauses a running ramp (keeping how long its step had left), resumes a paused one, or
    /// cancels one in progress (the flag keeps the step it is at). Anything else is refused
    /// with FAILED_PRECONDITION.
    pub async fn move_ramp(
        &self,
        actor: &str,
        project: &str,
        id: i64,
        how: RampMove,
        now: Millis,
    ) -> Result<Ramp> {
        let mut tx = self.write().await?;
        let before = fetch(&mut tx, project, id).await?;
        let step_length = before.steps[before.step.min(before.steps.len() - 1)].duration_ms;
        let (from, to, started, remaining, action) = match (how, before.state) {
            (RampMove::Pause, RampState::Running) => {
                let left = before
                    .next_step_at()
                    .map(|at| (at - now).max(0))
                    .unwrap_or(0);
                (
                    "running",
                    RampState::Paused,
                    before.step_started_at,
                    Some(left),
                    "ramp.pause",
                )
            }
            (RampMove::Resume, RampState::Paused) => {
                let left = before.paused_remaining.unwrap_or(0);
                let started = now - (step_length - left);
                ("paused", RampState::Running, started, None, "ramp.resume")
            }
            (RampMove::Cancel, RampState::Running | RampState::Paused) => (
                before.state.as_str(),
                RampState::Cancelled,
                before.step_started_at,
                before.paused_remaining,
                "ramp.cancel",
            ),
            (_, state) => {
                return Err(StorageError::FailedPrecondition(format!(
                    "ramp {id} is {}",
                    state.as_str()
                )));
            }
        };
        let moved = tx
            .execute(
                "UPDATE rollout_ramps SET state = $2, step_started_at = $3, \
                 paused_remaining = $4, updated_at = $5 WHERE id = $1 AND state = $6 \
                 AND step = $7",
                args![
                    id,
                    to.as_str(),
                    started,
                    remaining,
                    now,
                    from,
                    i64::try_from(before.step).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        if moved != 1 {
            return Err(StorageError::FailedPrecondition(format!(
                "ramp {id} moved on meanwhile: try again"
            )));
        }
        let after = fetch(&mut tx, project, id).await?;
        let stamp = Stamp::new(actor, action, now);
        audit(&mut tx, stamp, &after, Some(&before)).await?;
        tx.commit().await?;
        Ok(after)
    }
}

async fn audit(tx: &mut Tx, stamp: Stamp<'_>, after: &Ramp, before: Option<&Ramp>) -> Result<()> {
    let key = after.id.to_string();
    let entry = stamp.entry(
        ResourceKind::Ramp,
        &key,
        &after.project_key,
        &after.environment_key,
    );
    entry.write(tx, before, Some(after)).await
}
