//! Personal data in events: erasing everything stored about one context, and deleting raw
//! events once they are older than their environment's retention period.
//!
//! Contexts reach the server only inside events (`exposures`, `track_events`) and as
//! experiment units (`experiment_units` and its roll-ups, `experiment_unit_events` and
//! `experiment_unit_totals`). Evaluation summaries and `evaluation_hourly` count
//! evaluations per flag and name no context.
//!
//! # Erasure
//!
//! One transaction deletes, in each environment searched, the context's raw events and its
//! experiment units with their roll-up rows, as a single-kind context (`context_kind`,
//! `context_key`) and as a part of multi-kind contexts (whose stored key is the
//! space-separated `kind:key` pairs, see `EventContext`): the experiments' results then
//! leave it out entirely. It runs under the compactor's lock, so that no compaction round
//! rebuilds a unit from events being erased.
//!
//! # Retention
//!
//! Raw events are the source the compactor rebuilds a unit's hourly roll-up rows from when
//! the unit changes (a later exposure, another variation). So that deleting old raw events
//! never shrinks a unit's counts, each environment records `events_purged_before`, the start
//! of an hour before which raw events may be gone, and it is raised before anything is
//! deleted: from then on a rebuild keeps the unit's rows for earlier hours as they are (only
//! their variation and `multiple_at` follow the unit) and rebuilds the later ones. Events of
//! batches the compactor has not read yet are never deleted, and an old event in a batch read
//! later is added to the kept rows rather than lost.

use sha2::{Digest, Sha256};

use super::compaction::COMPACTION_LOCK;
use super::db::{Tx, args};
use super::events::HOUR_MILLIS;
use super::{
    AuditRecord, Millis, ResourceKind, Result, Storage, not_found, now_millis, project_id,
};

/// Rows a retention transaction deletes at most per table, so that the writer is held
/// briefly even when years of events expire at once.
const PURGE_CHUNK: i64 = 5_000;

const DAY_MILLIS: Millis = 24 * 3600 * 1000;

/// What an erasure deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasedContext {
    pub exposures: u64,
    pub track_events: u64,
    pub experiment_units: u64,
    /// Hourly and whole-life roll-up rows of the deleted units.
    pub rollup_rows: u64,
    /// The environments searched, by key.
    pub environments: Vec<String>,
}

/// What a retention pass deleted, over every environment with a retention period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedEvents {
    pub exposures: u64,
    pub track_events: u64,
    pub evaluation_summaries: u64,
    pub batches: u64,
}

impl PurgedEvents {
    pub fn is_empty(&self) -> bool {
        *self == PurgedEvents::default()
    }
}

/// The audit log's name for an erased context: a SHA-256 of `kind:key`, so that the log does
/// not keep the identifier it records the erasure of. Whoever knows a key can still check
/// that it was erased (the hash is not meant to resist guessing).
pub fn erased_context_label(kind: &str, key: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(format!("{kind}:{key}").as_bytes()))
    )
}

/// The start of the hour holding `at`.
fn hour_start(at: Millis) -> Millis {
    at - at.rem_euclid(HOUR_MILLIS)
}

async fn lock_compactor(tx: &mut Tx) -> Result<()> {
    if matches!(tx, Tx::Postgres(_)) {
        tx.execute("SELECT pg_advisory_xact_lock($1)", args![COMPACTION_LOCK])
            .await?;
    }
    Ok(())
}

impl Storage {
    /// Erases every event and experiment unit of the context `kind`/`key` in one environment
    /// of `project`, or in all of them; audited. Erasing a context with nothing stored
    /// deletes nothing and succeeds.
    pub async fn erase_context(
        &self,
        actor: &str,
        project: &str,
        environment: Option<&str>,
        kind: &str,
        key: &str,
    ) -> Result<ErasedContext> {
        let now = now_millis();
        let mut tx = self.write().await?;
        lock_compactor(&mut tx).await?;
        let project_id = project_id(&mut tx, project).await?;
        let rows = match environment {
            Some(env) => {
                tx.fetch_all(
                    "SELECT id, key FROM environments WHERE project_id = $1 AND key = $2",
                    args![project_id, env],
                )
                .await?
            }
            None => {
                tx.fetch_all(
                    "SELECT id, key FROM environments WHERE project_id = $1 ORDER BY key",
                    args![project_id],
                )
                .await?
            }
        };
        if rows.is_empty()
            && let Some(env) = environment
        {
            return Err(not_found(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
            ));
        }
        // As a part of a multi-kind context: the pair, escaped as stored, between spaces.
        let pair = format!(" {kind}:{} ", key.replace('%', "%25").replace(' ', "%20"));
        let contains = if matches!(tx, Tx::Postgres(_)) {
            "strpos(' ' || context_key || ' ', $4) > 0"
        } else {
            "instr(' ' || context_key || ' ', $4) > 0"
        };
        let matching = format!(
            "environment_id = $1 AND ((context_kind = $2 AND context_key = $3) \
             OR (context_kind = 'multi' AND {contains}))"
        );
        let mut erased = ErasedContext::default();
        for row in &rows {
            let env_id: i64 = row.get(0)?;
            erased.environments.push(row.get(1)?);
            let mut deleted = [0u64; 5];
            for (count, table) in deleted.iter_mut().zip([
                "exposures",
                "track_events",
                "experiment_unit_events",
                "experiment_unit_totals",
                "experiment_units",
            ]) {
                let sql = format!("DELETE FROM {table} WHERE {matching}");
                *count = tx.execute(&sql, args![env_id, kind, key, &pair]).await?;
            }
            let [exposures, track_events, hourly, totals, units] = deleted;
            erased.exposures += exposures;
            erased.track_events += track_events;
            erased.rollup_rows += hourly + totals;
            erased.experiment_units += units;
        }
        let label = erased_context_label(kind, key);
        AuditRecord::new(actor, "context.erase", ResourceKind::Context, &label, now)
            .scope(Some(project), environment)
            .change(
                None,
                Some(serde_json::json!({
                    "context_kind": kind,
                    "environments": erased.environments,
                    "exposures": erased.exposures,
                    "track_events": erased.track_events,
                    "experiment_units": erased.experiment_units,
                    "rollup_rows": erased.rollup_rows,
                })),
            )
            .write(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(erased)
    }

    /// Deletes the raw events that are older than their environment's retention period at
    /// `now` (see the module documentation); environments keeping events forever are left
    /// alone.
    pub async fn purge_expired_events(&self, now: Millis) -> Result<PurgedEvents> {
        let environments = {
            let mut tx = self.read().await?;
            tx.fetch_all(
                "SELECT id, event_retention_days FROM environments \
                 WHERE event_retention_days > 0 ORDER BY id",
                args![],
            )
            .await?
        };
        let mut purged = PurgedEvents::default();
        for row in &environments {
            let env_id: i64 = row.get(0)?;
            let days: i64 = row.get(1)?;
            let before = hour_start(now.saturating_sub(days.saturating_mul(DAY_MILLIS)));
            // The mark first, in its own transaction: every rebuild from here on keeps the
            // rows of earlier hours, whatever is deleted next.
            let mut tx = self.write().await?;
            lock_compactor(&mut tx).await?;
            tx.execute(
                "UPDATE environments SET events_purged_before = $2 \
                 WHERE id = $1 AND events_purged_before < $2",
                args![env_id, before],
            )
            .await?;
            tx.commit().await?;
            loop {
                let round = self.purge_chunk(env_id, before).await?;
                purged.exposures += round.exposures;
                purged.track_events += round.track_events;
                purged.evaluation_summaries += round.evaluation_summaries;
                purged.batches += round.batches;
                if round.is_empty() {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Deletes up to [`PURGE_CHUNK`] rows of each table for one environment.
    async fn purge_chunk(&self, env_id: i64, before: Millis) -> Result<PurgedEvents> {
        let mut tx = self.write().await?;
        lock_compactor(&mut tx).await?;
        // Raw events of batches the compactor has read (it adds the others to the roll-ups
        // first).
        let mut deleted = [0u64; 2];
        for (count, table) in deleted.iter_mut().zip(["track_events", "exposures"]) {
            let sql = format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} x \
                 WHERE x.environment_id = $1 AND x.at < $2 AND NOT EXISTS \
                 (SELECT 1 FROM analytics_pending p WHERE p.batch_ref = x.batch_ref) LIMIT $3)"
            );
            *count = tx.execute(&sql, args![env_id, before, PURGE_CHUNK]).await?;
        }
        let [track_events, exposures] = deleted;
        // Their counters go with them (ON DELETE CASCADE); `evaluation_hourly` keeps the sums.
        let evaluation_summaries = tx
            .execute(
                "DELETE FROM evaluation_summaries WHERE (batch_ref, position) IN \
                 (SELECT batch_ref, position FROM evaluation_summaries \
                  WHERE environment_id = $1 AND window_end <= $2 LIMIT $3)",
                args![env_id, before, PURGE_CHUNK],
            )
            .await?;
        // Batches left empty: their ids only served to recognize a retry, long past.
        let batches = tx
            .execute(
                "DELETE FROM event_batches WHERE id IN (SELECT b.id FROM event_batches b \
                 WHERE b.environment_id = $1 AND b.received_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM analytics_pending p WHERE p.batch_ref = b.id) \
                 AND NOT EXISTS (SELECT 1 FROM exposures e WHERE e.batch_ref = b.id) \
                 AND NOT EXISTS (SELECT 1 FROM track_events t WHERE t.batch_ref = b.id) \
                 AND NOT EXISTS (SELECT 1 FROM evaluation_summaries s WHERE s.batch_ref = b.id) \
                 LIMIT $3)",
                args![env_id, before, PURGE_CHUNK],
            )
            .await?;
        tx.commit().await?;
        Ok(PurgedEvents {
            exposures,
            track_events,
            evaluation_summaries,
            batches,
        })
    }
}
