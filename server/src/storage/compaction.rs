//! The compactor of the experiment roll-ups (migration `0004_experiment_rollups.sql`).
//!
//! Ingestion stores raw events and leaves two marks: a row in `analytics_pending` for every
//! batch holding track events, and `rollup_state = 1` on every experiment unit whose first
//! exposure, variation or `multiple_at` the batch changed (new units included). A
//! compaction round, in one transaction:
//!
//! 1. claims up to [`BATCHES_PER_ROUND`] pending batches and up to [`UNITS_PER_ROUND`]
//!    marked units (`rollup_state` 1 → 2);
//! 2. deletes the roll-up rows (hourly, and whole-life totals) of the claimed units and
//!    rebuilds them from raw events, leaving out the events of pending batches not claimed
//!    by this round (a later round adds those);
//! 3. adds the events of the claimed batches to the rows of the units that are up to date
//!    (`rollup_state` 0); events of marked units are left to their rebuild;
//! 4. clears the claims.
//!
//! Every event is thereby counted once, whatever the order in which exposures and events
//! arrive: an event whose unit does not exist yet (its exposure is in a batch still being
//! written) is counted when that unit is built, since a new unit is always marked, and a
//! unit is rebuilt after every change that affects which of its events count and how.
//!
//! Rounds are serialized: by a transaction-scoped advisory lock on Postgres (one compactor
//! at a time, across every instance on the database) and by the single writer on SQLite.
//! On Postgres the round runs at READ COMMITTED, and each step stays correct with the
//! newer snapshot every statement sees: batches committed during the round are pending
//! and unclaimed (left out of rebuilds, not added), units marked during the round are
//! neither added to nor cleared, and units claimed in step 1 are locked until the round
//! commits, so that ingestion waits to change them.

use std::time::{Duration, Instant};

use super::db::{Tx, args};
use super::events::HOUR_MILLIS;
use super::{Result, Storage, StorageError};

/// Pending batches a round claims at most.
pub const BATCHES_PER_ROUND: i64 = 64;

/// Marked units a round rebuilds at most.
pub const UNITS_PER_ROUND: i64 = 20_000;

/// How long a results read waits at most for the compactor to catch up.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// How often raw events past their environment's retention are looked for and deleted.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a round that lost to a concurrent transaction waits before it runs again.
const CONTENTION_PAUSE: Duration = Duration::from_millis(50);

/// The Postgres advisory lock key of the compactor ("vexil-rollup").
pub(super) const COMPACTION_LOCK: i64 = 0x7665_7869_6c72;

/// What one compaction round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionRound {
    /// Pending batches whose events were added.
    pub batches: u64,
    /// Units whose roll-up rows were rebuilt.
    pub units: u64,
}

impl CompactionRound {
    /// Whether the round found nothing to do.
    pub fn is_idle(&self) -> bool {
        self.batches == 0 && self.units == 0
    }
}

/// The head of an INSERT of hourly roll-up rows.
const INSERT_HOURLY: &str = "INSERT INTO experiment_unit_events (environment_id, experiment_key, \
     context_kind, context_key, event_name, hour, variation, multiple_at, events, valued, total, \
     last_at)";

/// Ends a rebuild's INSERT of hourly rows: an hour whose row was kept (its raw events may be
/// gone, see `privacy.rs`) gets the claimed batches' old events added to it.
const ADD_TO_KEPT_ROWS: &str = "ON CONFLICT (environment_id, experiment_key, context_kind, \
     context_key, event_name, hour) DO UPDATE SET \
     events = experiment_unit_events.events + excluded.events, \
     valued = experiment_unit_events.valued + excluded.valued, \
     total = experiment_unit_events.total + excluded.total, \
     last_at = CASE WHEN excluded.last_at > experiment_unit_events.last_at \
       THEN excluded.last_at ELSE experiment_unit_events.last_at END";

/// SQL for the start of the hour of `at` (a column of milliseconds), rounding down for
/// times before the epoch too.
fn hour_sql(at: &str) -> String {
    format!("({at} - ((({at} % {HOUR_MILLIS}) + {HOUR_MILLIS}) % {HOUR_MILLIS}))")
}

impl Storage {
    /// Runs one compaction round (see the module documentation).
    pub async fn compact_analytics_once(&self) -> Result<CompactionRound> {
        let mut tx = self.write().await?;
        if matches!(tx, Tx::Postgres(_)) {
            tx.execute("SELECT pg_advisory_xact_lock($1)", args![COMPACTION_LOCK])
                .await?;
        }
        let batches = tx
            .execute(
                "UPDATE analytics_pending SET claimed = TRUE WHERE batch_ref IN \
                 (SELECT batch_ref FROM analytics_pending ORDER BY batch_ref LIMIT $1)",
                args![BATCHES_PER_ROUND],
            )
            .await?;
        // The units to rebuild, locked in key order (the order ingestion writes units in,
        // so that neither waits for the other in a cycle) and found through the partial
        // index alone: whatever the planner's statistics say (a round may start right
        // after a million units arrived), claiming never scans the table.
        let claim = if matches!(tx, Tx::Postgres(_)) {
            "UPDATE experiment_units SET rollup_state = 2 WHERE rollup_state = 1 AND ctid = ANY(ARRAY( \
             SELECT ctid FROM experiment_units WHERE rollup_state = 1 \
             ORDER BY environment_id, experiment_key, context_kind, context_key \
             LIMIT $1 FOR UPDATE))"
        } else {
            "UPDATE experiment_units SET rollup_state = 2 WHERE rowid IN ( \
             SELECT rowid FROM experiment_units WHERE rollup_state = 1 LIMIT $1)"
        };
        let units = tx.execute(claim, args![UNITS_PER_ROUND]).await?;
        if batches == 0 && units == 0 {
            return Ok(CompactionRound::default());
        }
        // The roll-up rows of units `u` from their events `t`, grouped by the first eight
        // columns.
        let rollup_rows = format!(
            "{INSERT_HOURLY} SELECT u.environment_id, u.experiment_key, u.context_kind, u.context_key, \
             t.name, {}, u.variation, u.multiple_at, COUNT(*), COUNT(t.value), \
             COALESCE(SUM(t.value), 0.0), MAX(t.at)",
            hour_sql("t.at")
        );
        if units > 0 {
            // The claimed units' rows go, but for the hours whose raw events retention may
            // have deleted (before the environment's `events_purged_before`): those rows are
            // kept and only follow the unit's variation and `multiple_at`.
            let claimed = "(environment_id, experiment_key, context_kind, context_key) IN \
                 (SELECT environment_id, experiment_key, context_kind, context_key \
                  FROM experiment_units WHERE rollup_state = 2)";
            tx.execute(
                &format!(
                    "DELETE FROM experiment_unit_events WHERE {claimed} AND hour >= \
                     (SELECT events_purged_before FROM environments \
                      WHERE id = experiment_unit_events.environment_id)"
                ),
                args![],
            )
            .await?;
            let unit_field = |field: &str| {
                format!(
                    "(SELECT u.{field} FROM experiment_units u \
                     WHERE u.environment_id = experiment_unit_events.environment_id \
                     AND u.experiment_key = experiment_unit_events.experiment_key \
                     AND u.context_kind = experiment_unit_events.context_kind \
                     AND u.context_key = experiment_unit_events.context_key)"
                )
            };
            tx.execute(
                &format!(
                    "UPDATE experiment_unit_events SET variation = {}, multiple_at = {} \
                     WHERE {claimed}",
                    unit_field("variation"),
                    unit_field("multiple_at")
                ),
                args![],
            )
            .await?;
            tx.execute(
                &format!("DELETE FROM experiment_unit_totals WHERE {claimed}"),
                args![],
            )
            .await?;
            // The events a rebuild counts: those of hours whose raw events are all there,
            // and older ones of the batches this round claimed (counted nowhere yet; they
            // are added to the kept rows of their hour).
            let counted = "(e.events_purged_before = 0 OR t.at >= e.events_purged_before \
                 OR EXISTS (SELECT 1 FROM analytics_pending c \
                   WHERE c.batch_ref = t.batch_ref AND c.claimed))";
            let rebuild = if matches!(tx, Tx::Postgres(_)) {
                // One index range read per unit, whatever the planner's statistics say:
                // never a hash of every raw event.
                format!(
                    "{INSERT_HOURLY} SELECT u.environment_id, u.experiment_key, u.context_kind, u.context_key, \
                       t.name, t.hour, u.variation, u.multiple_at, t.events, t.valued, t.total, \
                       t.last_at \
                     FROM experiment_units u JOIN environments e ON e.id = u.environment_id \
                     CROSS JOIN LATERAL ( \
                       SELECT t.name, {hour} AS hour, COUNT(*) AS events, \
                         COUNT(t.value) AS valued, COALESCE(SUM(t.value), 0.0) AS total, \
                         MAX(t.at) AS last_at \
                       FROM track_events t \
                       WHERE t.environment_id = u.environment_id \
                         AND t.context_kind = u.context_kind AND t.context_key = u.context_key \
                         AND t.at >= u.first_at AND NOT EXISTS (SELECT 1 FROM analytics_pending p \
                           WHERE p.batch_ref = t.batch_ref AND NOT p.claimed) \
                         AND {counted} \
                       GROUP BY 1, 2) t \
                     WHERE u.rollup_state = 2 {ADD_TO_KEPT_ROWS}",
                    hour = hour_sql("t.at")
                )
            } else {
                format!(
                    "{rollup_rows} \
                     FROM experiment_units u JOIN environments e ON e.id = u.environment_id \
                     JOIN track_events t \
                       ON t.environment_id = u.environment_id \
                       AND t.context_kind = u.context_kind AND t.context_key = u.context_key \
                       AND t.at >= u.first_at \
                     WHERE u.rollup_state = 2 AND NOT EXISTS (SELECT 1 FROM analytics_pending p \
                       WHERE p.batch_ref = t.batch_ref AND NOT p.claimed) \
                       AND {counted} \
                     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 {ADD_TO_KEPT_ROWS}"
                )
            };
            tx.execute(&rebuild, args![]).await?;
            // A unit's whole-life sums, from the hourly rows just built.
            tx.execute(
                "INSERT INTO experiment_unit_totals (environment_id, experiment_key, \
                 context_kind, context_key, event_name, variation, multiple_at, events, valued, \
                 total, last_at) \
                 SELECT e.environment_id, e.experiment_key, e.context_kind, e.context_key, \
                   e.event_name, MIN(e.variation), MIN(e.multiple_at), SUM(e.events), \
                   SUM(e.valued), SUM(e.total), MAX(e.last_at) \
                 FROM experiment_units u JOIN experiment_unit_events e \
                   ON e.environment_id = u.environment_id AND e.experiment_key = u.experiment_key \
                   AND e.context_kind = u.context_kind AND e.context_key = u.context_key \
                 WHERE u.rollup_state = 2 \
                 GROUP BY 1, 2, 3, 4, 5",
                args![],
            )
            .await?;
        }
        if batches > 0 {
            // The claimed batches' events of up-to-date units, added to their hourly rows
            // and to their whole-life sums.
            let sources = "FROM analytics_pending p \
                 JOIN track_events t ON t.batch_ref = p.batch_ref \
                 JOIN experiment_units u ON u.environment_id = t.environment_id \
                   AND u.context_kind = t.context_kind AND u.context_key = t.context_key \
                   AND t.at >= u.first_at \
                 WHERE p.claimed AND u.rollup_state = 0";
            let totals_rows = "INSERT INTO experiment_unit_totals (environment_id, \
                 experiment_key, context_kind, context_key, event_name, variation, multiple_at, \
                 events, valued, total, last_at) \
                 SELECT u.environment_id, u.experiment_key, u.context_kind, u.context_key, \
                 t.name, u.variation, u.multiple_at, COUNT(*), COUNT(t.value), \
                 COALESCE(SUM(t.value), 0.0), MAX(t.at)";
            for (table, insert, grouping, key) in [
                (
                    "experiment_unit_events",
                    rollup_rows.as_str(),
                    "1, 2, 3, 4, 5, 6, 7, 8",
                    "event_name, hour",
                ),
                (
                    "experiment_unit_totals",
                    totals_rows,
                    "1, 2, 3, 4, 5, 6, 7",
                    "event_name",
                ),
            ] {
                tx.execute(
                    &format!(
                        "{insert} {sources} GROUP BY {grouping} \
                         ON CONFLICT (environment_id, experiment_key, context_kind, context_key, \
                           {key}) DO UPDATE SET \
                           events = {table}.events + excluded.events, \
                           valued = {table}.valued + excluded.valued, \
                           total = {table}.total + excluded.total, \
                           last_at = CASE WHEN excluded.last_at > {table}.last_at \
                             THEN excluded.last_at ELSE {table}.last_at END"
                    ),
                    args![],
                )
                .await?;
            }
            tx.execute("DELETE FROM analytics_pending WHERE claimed", args![])
                .await?;
        }
        if units > 0 {
            tx.execute(
                "UPDATE experiment_units SET rollup_state = 0 WHERE rollup_state = 2",
                args![],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(CompactionRound { batches, units })
    }

    /// Runs rounds until there is nothing left to do, or for `limit` at most; returns the
    /// rounds' totals.
    pub async fn compact_analytics(&self, limit: Duration) -> Result<CompactionRound> {
        let started = Instant::now();
        let mut total = CompactionRound::default();
        // Nothing to do, the usual case between batches: no write transaction, no lock.
        if !self.has_analytics_backlog().await? {
            return Ok(total);
        }
        loop {
            let round = match self.compact_analytics_once().await {
                // A deadlock with ingestion, or a serialization failure: the round wrote
                // nothing; run it again shortly.
                Err(StorageError::Contention(_)) if started.elapsed() < limit => {
                    tokio::time::sleep(CONTENTION_PAUSE).await;
                    continue;
                }
                other => other?,
            };
            total.batches += round.batches;
            total.units += round.units;
            if round.is_idle() || started.elapsed() >= limit {
                return Ok(total);
            }
        }
    }

    /// Whether some batch or unit waits for the compactor.
    async fn has_analytics_backlog(&self) -> Result<bool> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM analytics_pending) \
                 OR EXISTS (SELECT 1 FROM experiment_units WHERE rollup_state <> 0) \
                 THEN 1 ELSE 0 END AS BIGINT)",
                args![],
            )
            .await?;
        Ok(match row {
            Some(row) => row.get::<i64>(0)? == 1,
            None => false,
        })
    }

    /// Batches whose events are not in the roll-ups yet, and units waiting for a rebuild.
    pub async fn analytics_backlog(&self) -> Result<(u64, u64)> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "SELECT (SELECT COUNT(*) FROM analytics_pending), \
                 (SELECT COUNT(*) FROM experiment_units WHERE rollup_state <> 0)",
                args![],
            )
            .await?;
        Ok(match row {
            Some(row) => (
                u64::try_from(row.get::<i64>(0)?).unwrap_or(0),
                u64::try_from(row.get::<i64>(1)?).unwrap_or(0),
            ),
            None => (0, 0),
        })
    }

    /// Compacts every `interval`, and deletes expired raw events every
    /// [`RETENTION_INTERVAL`] (see `privacy.rs`), until the task is dropped; failures are
    /// logged and the next tick tries again.
    pub async fn compact_analytics_every(self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_purge: Option<Instant> = None;
        loop {
            ticks.tick().await;
            if last_purge.is_none_or(|at| at.elapsed() >= RETENTION_INTERVAL) {
                last_purge = Some(Instant::now());
                match self.purge_expired_events(super::now_millis()).await {
                    Ok(purged) if !purged.is_empty() => tracing::info!(
                        exposures = purged.exposures,
                        track_events = purged.track_events,
                        evaluation_summaries = purged.evaluation_summaries,
                        batches = purged.batches,
                        "raw events past their retention deleted"
                    ),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "deleting expired raw events failed"),
                }
            }
            match self.compact_analytics(Duration::MAX).await {
                Ok(done) if !done.is_idle() => {
                    tracing::debug!(
                        batches = done.batches,
                        units = done.units,
                        "analytics compacted"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "analytics compaction failed"),
            }
        }
    }
}
