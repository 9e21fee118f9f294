//! Scheduled changes: a write of a flag's configuration in an environment, stored now and
//! applied at a time by whichever instance finds it due first.
//!
//! Applying is one transaction that locks the environment, moves the row from `pending` to
//! `applied` (a conditional update: an instance that comes second finds nothing to move and
//! writes nothing) and writes the configuration. A crash before the commit leaves the row
//! pending for another instance; after it, the change is applied and marked so. Hence a
//! change is applied exactly once.

use serde::{Deserialize, Serialize};

use super::db::{Row, Tx, args};
use super::flags::{fetch_config, rewrite_config};
use super::history::Stamp;
use super::projects::page_from_rows;
use super::{
    FlagConfig, FlagConfiguration, Millis, Page, PageRequest, ResourceKind, Result, Storage,
    StorageError, bump_env, from_text, not_found, now_millis, to_text,
};

/// What a scheduled change does to the flag's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledEdit {
    /// Turns the flag on or off, keeping the rest of its configuration as it is then.
    On(bool),
    /// Replaces the configuration.
    Configuration(Box<FlagConfiguration>),
}

impl ScheduledEdit {
    /// The configuration this edit makes of `current`.
    pub fn apply_to(&self, current: &FlagConfiguration) -> FlagConfiguration {
        match self {
            ScheduledEdit::On(on) => FlagConfiguration {
                on: *on,
                ..current.clone()
            },
            ScheduledEdit::Configuration(configuration) => (**configuration).clone(),
        }
    }
}

/// Where a scheduled change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleState {
    Pending,
    Applied,
    Failed,
    Cancelled,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Pending => "pending",
            ScheduleState::Applied => "applied",
            ScheduleState::Failed => "failed",
            ScheduleState::Cancelled => "cancelled",
        }
    }

    fn parse(name: &str) -> Result<ScheduleState> {
        Ok(match name {
            "pending" => ScheduleState::Pending,
            "applied" => ScheduleState::Applied,
            "failed" => ScheduleState::Failed,
            "cancelled" => ScheduleState::Cancelled,
            other => {
                return Err(StorageError::Corrupt(format!(
                    "unknown scheduled change state `{other}`"
                )));
            }
        })
    }
}

/// A scheduled change, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledChange {
    pub id: i64,
    pub project_key: String,
    pub environment_key: String,
    pub flag_key: String,
    pub run_at: Millis,
    pub edit: ScheduledEdit,
    pub comment: String,
    pub created_by: String,
    pub created_at: Millis,
    pub state: ScheduleState,
    pub finished_at: Option<Millis>,
    /// The flag's version in the environment that applying it wrote.
    pub applied_version: Option<i64>,
    /// Why it failed, or who cancelled it.
    pub outcome: String,
}

/// What scheduling a change takes.
#[derive(Debug, Clone)]
pub struct NewScheduledChange {
    pub environment_key: String,
    pub flag_key: String,
    pub run_at: Millis,
    pub edit: ScheduledEdit,
    pub comment: String,
}

const COLUMNS: &str = "x.id, p.key, e.key, f.key, x.run_at, x.edit, x.comment, x.created_by, \
     x.created_at, x.state, x.finished_at, x.applied_version, x.outcome";

const FROM: &str = "scheduled_changes x JOIN flags f ON f.id = x.flag_id \
     JOIN environments e ON e.id = x.environment_id JOIN projects p ON p.id = e.project_id";

fn from_row(row: &Row) -> Result<ScheduledChange> {
    Ok(ScheduledChange {
        id: row.get(0)?,
        project_key: row.get(1)?,
        environment_key: row.get(2)?,
        flag_key: row.get(3)?,
        run_at: row.get(4)?,
        edit: from_text(&row.get::<String>(5)?, "scheduled edit")?,
        comment: row.get(6)?,
        created_by: row.get(7)?,
        created_at: row.get(8)?,
        state: ScheduleState::parse(&row.get::<String>(9)?)?,
        finished_at: row.get(10)?,
        applied_version: row.get(11)?,
        outcome: row.get(12)?,
    })
}

async fn fetch(tx: &mut Tx, project: &str, id: i64) -> Result<ScheduledChange> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE x.id = $1 AND p.key = $2");
    match tx.fetch_optional(&sql, args![id, project]).await? {
        Some(row) => from_row(&row),
        None => Err(not_found(ResourceKind::ScheduledChange, &id.to_string())),
    }
}

/// Reads a change back after `stamp`'s write to it and audits the write against `before`
/// (absent for a creation); the change as it now is.
async fn audit_change(
    tx: &mut Tx,
    stamp: Stamp<'_>,
    project: &str,
    id: i64,
    before: Option<&ScheduledChange>,
) -> Result<ScheduledChange> {
    let after = fetch(tx, project, id).await?;
    let key = id.to_string();
    let entry = stamp.entry(
        ResourceKind::ScheduledChange,
        &key,
        project,
        &after.environment_key,
    );
    entry.write(tx, before, Some(&after)).await?;
    Ok(after)
}

/// Moves a pending change to `state`; whether it was pending.
async fn finish(
    tx: &mut Tx,
    id: i64,
    state: ScheduleState,
    outcome: &str,
    now: Millis,
) -> Result<bool> {
    let moved = tx
        .execute(
            "UPDATE scheduled_changes SET state = $2, finished_at = $3, outcome = $4 \
             WHERE id = $1 AND state = 'pending'",
            args![id, state.as_str(), now, outcome],
        )
        .await?;
    Ok(moved == 1)
}

impl Storage {
    /// Stores a change to apply at `new.run_at` (audited as `scheduled_change.create`).
    /// Validating it is the caller's job, now and when it runs.
    pub async fn schedule_change(
        &self,
        actor: &str,
        project: &str,
        new: &NewScheduledChange,
    ) -> Result<ScheduledChange> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let env = super::projects::fetch_env(&mut tx, project, &new.environment_key).await?;
        let row = tx
            .fetch_optional(
                "SELECT e.id, f.id FROM environments e JOIN projects p ON p.id = e.project_id \
                 JOIN flags f ON f.project_id = p.id WHERE p.key = $1 AND e.key = $2 AND f.key = $3",
                args![project, &env.key, &new.flag_key],
            )
            .await?;
        let Some(row) = row else {
            return Err(not_found(ResourceKind::Flag, &new.flag_key));
        };
        let (env_id, flag_id): (i64, i64) = (row.get(0)?, row.get(1)?);
        let row = tx
            .fetch_optional(
                "INSERT INTO scheduled_changes (environment_id, flag_id, run_at, edit, comment, \
                 created_by, created_at, state, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', '') RETURNING id",
                args![
                    env_id,
                    flag_id,
                    new.run_at,
                    to_text(&new.edit),
                    &new.comment,
                    actor,
                    now
                ],
            )
            .await?;
        let id: i64 = match row {
            Some(row) => row.get(0)?,
            None => return Err(StorageError::Corrupt("insert returned no id".into())),
        };
        let stamp = Stamp::new(actor, "scheduled_change.create", now);
        let created = audit_change(&mut tx, stamp, project, id, None).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Returns one scheduled change of a project.
    pub async fn get_scheduled_change(&self, project: &str, id: i64) -> Result<ScheduledChange> {
        let mut tx = self.read().await?;
        fetch(&mut tx, project, id).await
    }

    /// Lists an environment's scheduled changes (of one flag when `flag` is given; only the
    /// pending ones when `pending_only`), by id.
    pub async fn list_scheduled_changes(
        &self,
        project: &str,
        env: &str,
        flag: Option<&str>,
        pending_only: bool,
        page: &PageRequest,
    ) -> Result<Page<ScheduledChange>> {
        let limit = page.effective_limit();
        let after = page.number_cursor(0)?;
        let mut tx = self.read().await?;
        super::projects::fetch_env(&mut tx, project, env).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE p.key = $1 AND e.key = $2 AND x.id > $3 \
             AND ($4 = '' OR f.key = $4) AND ($5 = FALSE OR x.state = 'pending') \
             ORDER BY x.id LIMIT $6"
        );
        let rows = tx
            .fetch_all(
                &sql,
                args![
                    project,
                    env,
                    after,
                    flag.unwrap_or(""),
                    pending_only,
                    limit + 1
                ],
            )
            .await?;
        page_from_rows(&rows, from_row, limit, |x| x.id.to_string())
    }

    /// Cancels a pending change; refused (FAILED_PRECONDITION) once it is applied, failed or
    /// cancelled.
    pub async fn cancel_scheduled_change(
        &self,
        actor: &str,
        project: &str,
        id: i64,
    ) -> Result<ScheduledChange> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let before = fetch(&mut tx, project, id).await?;
        let outcome = format!("cancelled by {actor}");
        if !finish(&mut tx, id, ScheduleState::Cancelled, &outcome, now).await? {
            return Err(StorageError::FailedPrecondition(format!(
                "scheduled change {id} is {} already",
                before.state.as_str()
            )));
        }
        let stamp = Stamp::new(actor, "scheduled_change.cancel", now);
        let after = audit_change(&mut tx, stamp, project, id, Some(&before)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// The pending changes due at `now` (in every project), oldest first, at most `limit`.
    pub async fn due_scheduled_changes(
        &self,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<ScheduledChange>> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE x.state = 'pending' AND x.run_at <= $1 \
             ORDER BY x.run_at, x.id LIMIT $2"
        );
        let rows = tx.fetch_all(&sql, args![now, limit]).await?;
        rows.iter().map(from_row).collect()
    }

    /// Applies a due change in one transaction: marks it applied and writes the flag's
    /// configuration (a new version, audited as `scheduled_change.apply` on behalf of who
    /// scheduled it). Refused (FAILED_PRECONDITION), writing nothing, when it is no longer
    /// pending: another instance applied it, or someone cancelled it.
    pub async fn apply_scheduled_change(&self, change: &ScheduledChange) -> Result<FlagConfig> {
        let (project, env, key) = (
            change.project_key.as_str(),
            change.environment_key.as_str(),
            change.flag_key.as_str(),
        );
        let stamp = Stamp::new(&change.created_by, "scheduled_change.apply", now_millis());
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, stamp.at, self.guards()).await?;
        if !finish(&mut tx, change.id, ScheduleState::Applied, "", stamp.at).await? {
            return Err(StorageError::FailedPrecondition(format!(
                "scheduled change {} is no longer pending",
                change.id
            )));
        }
        let (before, archived) = fetch_config(&mut tx, bumped.id, key).await?;
        let update = change.edit.apply_to(&before.configuration);
        rewrite_config(&mut tx, &bumped, key, &update, archived, stamp).await?;
        let (after, _) = fetch_config(&mut tx, bumped.id, key).await?;
        tx.execute(
            "UPDATE scheduled_changes SET applied_version = $2 WHERE id = $1",
            args![change.id, after.version],
        )
        .await?;
        let entry = stamp.entry(ResourceKind::FlagConfig, key, project, env);
        self.commit_env_write(tx, entry, Some(&before), Some(&after), &bumped)
            .await?;
        Ok(after)
    }

    /// Records that a due change could not be applied and why (audited as
    /// `scheduled_change.fail`); whether it was still pending.
    pub async fn fail_scheduled_change(&self, change: &ScheduledChange, why: &str) -> Result<bool> {
        let now = now_millis();
        let mut tx = self.write().await?;
        if !finish(&mut tx, change.id, ScheduleState::Failed, why, now).await? {
            return Ok(false);
        }
        let stamp = Stamp::new(&change.created_by, "scheduled_change.fail", now);
        audit_change(&mut tx, stamp, &change.project_key, change.id, Some(change)).await?;
        tx.commit().await?;
        Ok(true)
    }
}
