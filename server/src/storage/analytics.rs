//! Reads over the analytics roll-ups: an experiment's sufficient statistics, flag usage per
//! hour and stale flags.
//!
//! # Experiment aggregates
//!
//! Results never load events: one SQL aggregate per event name joins each experiment unit
//! (`experiment_units`, one row per context) to its track events of the metric's event
//! name from its first exposure on, reduces them to the values per context of every metric
//! kind (0/1, a count, a sum, a mean), and returns per variation and kind only `n`,
//! `Σ value` and `Σ value²`: the
//! sufficient statistics the tests need. A context seen with more than one variation is
//! counted apart and left out of every sum. A cut-off time (`until`) gives the results as
//! they were then, for charts over time.

use std::collections::BTreeMap;

use super::db::{Tx, args};
use super::events::env_id;
use super::experiments::MetricKind;
use super::{Millis, Result, Storage};

/// Contexts per variation of an experiment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitCounts {
    /// Variation index → contexts exposed to it only.
    pub per_variation: BTreeMap<i64, u64>,
    /// Contexts exposed to more than one variation (excluded from the analysis).
    pub multiple: u64,
}

/// Sufficient statistics of one variation for one metric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricSums {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

/// An experiment's aggregates at one cut-off time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentAggregates {
    pub units: UnitCounts,
    /// In the order of the metrics asked for: variation index → sums.
    pub metrics: Vec<BTreeMap<i64, MetricSums>>,
}

/// Evaluations of one flag and outcome in one hour.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageBucket {
    pub flag_key: String,
    pub hour: Millis,
    /// `None`: the default was served.
    pub variation: Option<i64>,
    /// The error kind when the default was served because of one.
    pub error_kind: Option<String>,
    pub count: i64,
}

/// Why a flag is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    NotEvaluated,
    SingleVariation,
}

/// A stale flag of an environment.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleFlag {
    pub flag_key: String,
    pub reason: StaleReason,
    pub variation: Option<i64>,
    pub evaluations: i64,
    /// The last hour with an evaluation, if ever.
    pub last_evaluated: Option<Millis>,
}

/// The per-context values of every metric kind, over the events joined as `t` and grouped
/// by unit, in the column order of [`KIND_COLUMNS`]. The mean is NULL for a context without
/// events: not counted.
const UNIT_VALUES: &str = "CAST(CASE WHEN COUNT(t.at) > 0 THEN 1 ELSE 0 END AS DOUBLE PRECISION) AS conversion, \
     CAST(COUNT(t.at) AS DOUBLE PRECISION) AS events, \
     CAST(COALESCE(SUM(t.value), CAST(0 AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS total, \
     CAST(AVG(t.value) AS DOUBLE PRECISION) AS mean";

/// The metric kinds in the column order of [`UNIT_VALUES`].
const KIND_COLUMNS: [(MetricKind, &str); 4] = [
    (MetricKind::Conversion, "conversion"),
    (MetricKind::Count, "events"),
    (MetricKind::Sum, "total"),
    (MetricKind::Mean, "mean"),
];

impl Storage {
    /// The unit counts and, for each `(event name, kind)` of `metrics`, the sufficient
    /// statistics per variation of experiment `key`, counting exposures and events up to
    /// `until` (inclusive), from one snapshot.
    pub async fn experiment_aggregates(
        &self,
        project: &str,
        env: &str,
        key: &str,
        metrics: &[(String, MetricKind)],
        until: Millis,
    ) -> Result<ExperimentAggregates> {
        let mut tx = self.read().await?;
        if matches!(tx, Tx::Postgres(_)) {
            // One join of a million units to ten million events: enough memory to hash and
            // group in memory rather than sort on disk, and no JIT compilation, whose cost
            // is paid on every call of this rare, ad-hoc query. Both last for this
            // transaction only.
            tx.execute("SET LOCAL work_mem = '256MB'", args![]).await?;
            tx.execute("SET LOCAL jit = off", args![]).await?;
        }
        let env_id = env_id(&mut tx, project, env).await?;
        let rows = tx
            .fetch_all(
                "SELECT variation, CAST(CASE WHEN multiple_at IS NOT NULL AND multiple_at <= $3 \
                 THEN 1 ELSE 0 END AS BIGINT) AS multiple, COUNT(*) FROM experiment_units \
                 WHERE environment_id = $1 AND experiment_key = $2 AND first_at <= $3 \
                 GROUP BY variation, multiple",
                args![env_id, key, until],
            )
            .await?;
        let mut units = UnitCounts::default();
        for row in &rows {
            let variation: i64 = row.get(0)?;
            let multiple: i64 = row.get(1)?;
            let count = u64::try_from(row.get::<i64>(2)?).unwrap_or(0);
            if multiple == 1 {
                units.multiple += count;
            } else {
                *units.per_variation.entry(variation).or_insert(0) += count;
            }
        }
        // One pass per event name serves every metric reading it, whatever its kind: the
        // join of units to events is the expensive part.
        let mut per_event: BTreeMap<&str, [BTreeMap<i64, MetricSums>; 4]> = BTreeMap::new();
        for (event_name, _) in metrics {
            if per_event.contains_key(event_name.as_str()) {
                continue;
            }
            let mut columns = String::new();
            for (_, column) in KIND_COLUMNS {
                columns.push_str(&format!(
                    ", COUNT(v.{column}), \
                     COALESCE(SUM(v.{column}), CAST(0 AS DOUBLE PRECISION)), \
                     COALESCE(SUM(v.{column} * v.{column}), CAST(0 AS DOUBLE PRECISION))"
                ));
            }
            let sql = format!(
                "SELECT v.variation{columns} FROM ( \
                   SELECT u.variation AS variation, {UNIT_VALUES} \
                   FROM experiment_units u LEFT JOIN track_events t \
                     ON t.environment_id = u.environment_id AND t.name = $3 \
                     AND t.context_kind = u.context_kind AND t.context_key = u.context_key \
                     AND t.at >= u.first_at AND t.at <= $4 \
                   WHERE u.environment_id = $1 AND u.experiment_key = $2 AND u.first_at <= $4 \
                     AND (u.multiple_at IS NULL OR u.multiple_at > $4) \
                   GROUP BY u.variation, u.context_kind, u.context_key \
                 ) v GROUP BY v.variation ORDER BY v.variation"
            );
            let rows = tx
                .fetch_all(&sql, args![env_id, key, event_name.as_str(), until])
                .await?;
            let mut by_kind: [BTreeMap<i64, MetricSums>; 4] = Default::default();
            for row in &rows {
                let variation: i64 = row.get(0)?;
                for (k, sums) in by_kind.iter_mut().enumerate() {
                    let first = 1 + 3 * k;
                    sums.insert(
                        variation,
                        MetricSums {
                            n: u64::try_from(row.get::<i64>(first)?).unwrap_or(0),
                            sum: row.get(first + 1)?,
                            sum_squares: row.get(first + 2)?,
                        },
                    );
                }
            }
            per_event.insert(event_name.as_str(), by_kind);
        }
        let sums = metrics
            .iter()
            .map(|(event_name, kind)| {
                let column = KIND_COLUMNS
                    .iter()
                    .position(|(k, _)| k == kind)
                    .unwrap_or(0);
                per_event
                    .get(event_name.as_str())
                    .map(|by_kind| by_kind[column].clone())
                    .unwrap_or_default()
            })
            .collect();
        Ok(ExperimentAggregates {
            units,
            metrics: sums,
        })
    }

    /// Evaluations per flag (or only `flag`), hour and outcome, for hours starting in
    /// `[start, end)`, ordered by flag, hour, variation and error.
    pub async fn flag_usage(
        &self,
        project: &str,
        env: &str,
        flag: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<UsageBucket>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let rows = tx
            .fetch_all(
                "SELECT flag_key, hour, variation, error_kind, CAST(SUM(count) AS BIGINT) FROM evaluation_hourly \
                 WHERE environment_id = $1 AND hour >= $2 AND hour < $3 \
                 AND ($4 = '' OR flag_key = $4) \
                 GROUP BY flag_key, hour, variation, error_kind \
                 ORDER BY flag_key, hour, variation, error_kind",
                args![env_id, start, end, flag.unwrap_or("")],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let variation: i64 = row.get(2)?;
                let error: String = row.get(3)?;
                Ok(UsageBucket {
                    flag_key: row.get(0)?,
                    hour: row.get(1)?,
                    variation: (variation >= 0).then_some(variation),
                    error_kind: (!error.is_empty()).then_some(error),
                    count: row.get(4)?,
                })
            })
            .collect()
    }

    /// The environment's flags (not archived) that were not evaluated since `since`, or
    /// served one and the same variation to every evaluation since then, ordered by key.
    /// Only flags created before `since` qualify: a younger flag has not existed for the
    /// whole period, so its silence or single variation says nothing yet.
    pub async fn stale_flags(
        &self,
        project: &str,
        env: &str,
        since: Millis,
    ) -> Result<Vec<StaleFlag>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let flags = tx
            .fetch_all(
                "SELECT f.key FROM flags f JOIN environments e ON e.project_id = f.project_id \
                 WHERE e.id = $1 AND NOT f.archived AND f.created_at < $2 ORDER BY f.key",
                args![env_id, since],
            )
            .await?;
        let outcomes = tx
            .fetch_all(
                "SELECT flag_key, variation, error_kind, CAST(SUM(count) AS BIGINT) FROM evaluation_hourly \
                 WHERE environment_id = $1 AND hour >= $2 \
                 GROUP BY flag_key, variation, error_kind",
                args![env_id, since],
            )
            .await?;
        let last = tx
            .fetch_all(
                "SELECT flag_key, MAX(hour) FROM evaluation_hourly WHERE environment_id = $1 \
                 GROUP BY flag_key",
                args![env_id],
            )
            .await?;
        // Flag → (variation or -1, error kind, evaluations) over the period.
        let mut seen: BTreeMap<String, Vec<(i64, String, i64)>> = BTreeMap::new();
        for row in &outcomes {
            seen.entry(row.get(0)?)
                .or_default()
                .push((row.get(1)?, row.get(2)?, row.get(3)?));
        }
        let mut last_hour: BTreeMap<String, Millis> = BTreeMap::new();
        for row in &last {
            last_hour.insert(row.get(0)?, row.get(1)?);
        }
        let mut stale = Vec::new();
        for row in &flags {
            let key: String = row.get(0)?;
            let last_evaluated = last_hour.get(&key).copied();
            match seen.get(&key).map(Vec::as_slice) {
                None | Some([]) => stale.push(StaleFlag {
                    flag_key: key,
                    reason: StaleReason::NotEvaluated,
                    variation: None,
                    evaluations: 0,
                    last_evaluated,
                }),
                Some([(variation, error, count)]) if *variation >= 0 && error.is_empty() => stale
                    .push(StaleFlag {
                        flag_key: key,
                        reason: StaleReason::SingleVariation,
                        variation: Some(*variation),
                        evaluations: *count,
                        last_evaluated,
                    }),
                Some(_) => {}
            }
        }
        Ok(stale)
    }
}
