//! Reads over the analytics roll-ups: an experiment's sufficient statistics, flag usage per
//! hour and stale flags.
//!
//! # Experiment aggregates
//!
//! Results never load events: after catching the compactor up, one SQL statement reduces
//! each unit's roll-up rows to its values for every metric kind (0/1, a count, a sum, a
//! mean), and returns per variation only `n`, the mean and the sum of squared deviations from
//! it (Postgres's stable `VAR_SAMP`, or on SQLite deviations from the variation's average;
//! never raw `Σ value²`, which cancels when the mean is large against the spread): the
//! sufficient statistics the tests need. As of a time after the experiment's last event (results
//! "now"), it reads one whole-life row per unit and event name (`experiment_unit_totals`);
//! as of an earlier cut-off (`until`), it sums each unit's hourly rows
//! (`experiment_unit_events`) up to the cut-off. Rows of the cut-off's hour whose last
//! event is later than the cut-off are recounted from raw events (a chart asking for hour
//! boundaries never needs to). A context seen with more than one variation is counted
//! apart and left out of every sum.

use std::collections::BTreeMap;

use vexil_stats::{PairSummary, QuantileSummary, Summary};

use super::db::{Arg, Tx, args};
use super::events::env_id;
use super::experiments::MetricKind;
use super::replica::on_replica;
use super::{CATCH_UP_LIMIT, Millis, Result, Storage, hour_of};

/// Contexts per variation of an experiment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitCounts {
    /// Variation index → contexts exposed to it only.
    pub per_variation: BTreeMap<i64, u64>,
    /// Contexts exposed to more than one variation (excluded from the analysis).
    pub multiple: u64,
}

/// An experiment's aggregates at one cut-off time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentAggregates {
    pub units: UnitCounts,
    /// In the order of the metrics asked for: variation index → sufficient statistics (of
    /// the numerators, for a ratio metric).
    pub metrics: Vec<BTreeMap<i64, Summary>>,
    /// In the same order: variation index → the pairs' statistics of a ratio metric; empty
    /// for the other kinds.
    pub ratios: Vec<BTreeMap<i64, PairSummary>>,
    /// In the same order: variation index → (value, pre-exposure covariate) pairs of a metric
    /// read with a covariate (CUPED); empty otherwise.
    pub covariates: Vec<BTreeMap<i64, PairSummary>>,
    /// In the same order: variation index → the order statistics of a quantile metric, for
    /// the variations with enough units for its interval; empty for the other kinds.
    pub quantiles: Vec<BTreeMap<i64, QuantileSummary>>,
    /// In the same order: variation index → why a quantile metric has no summary there
    /// (too few units for the interval).
    pub quantile_notes: Vec<BTreeMap<i64, vexil_stats::StatsError>>,
}

/// A metric as the aggregates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub event_name: String,
    pub kind: MetricKind,
    /// The denominator's event of a ratio metric; empty otherwise.
    pub denominator_event_name: String,
    /// For CUPED, how far back before each unit's first exposure its covariate (the same
    /// metric over that period) is read, in milliseconds; 0: no covariate. Conversion, count
    /// and sum metrics only.
    pub covariate_lookback: Millis,
    /// The level p of a quantile metric; 0 for the other kinds.
    pub quantile: f64,
    /// The α of a quantile metric's per-variation interval, whose ends are read.
    pub quantile_alpha: f64,
}

impl MetricQuery {
    /// A metric of any kind but ratio.
    pub fn new(event_name: impl Into<String>, kind: MetricKind) -> MetricQuery {
        MetricQuery {
            event_name: event_name.into(),
            kind,
            denominator_event_name: String::new(),
            covariate_lookback: 0,
            quantile: 0.0,
            quantile_alpha: 0.05,
        }
    }

    /// A quantile metric: the `level`-quantile of the units' mean values, with its interval
    /// at confidence 1 − `alpha`.
    pub fn quantile(event_name: impl Into<String>, level: f64, alpha: f64) -> MetricQuery {
        MetricQuery {
            quantile: level,
            quantile_alpha: alpha,
            ..MetricQuery::new(event_name, MetricKind::Quantile)
        }
    }

    /// A ratio metric: Σ numerator values / Σ denominator values.
    pub fn ratio(numerator: impl Into<String>, denominator: impl Into<String>) -> MetricQuery {
        MetricQuery {
            denominator_event_name: denominator.into(),
            ..MetricQuery::new(numerator, MetricKind::Ratio)
        }
    }

    /// Whether this metric can be adjusted by a pre-exposure covariate.
    pub fn has_covariate(&self) -> bool {
        self.covariate_lookback > 0
            && matches!(
                self.kind,
                MetricKind::Conversion | MetricKind::Count | MetricKind::Sum
            )
    }
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

/// One variation's statistics over the units that sent an event of one name: the number of
/// units, and the moments of their event count, of their value total, and of their mean value
/// (over the units with a value).
#[derive(Debug, Clone, Copy, Default)]
struct EventMoments {
    units: u64,
    events: Summary,
    total: Summary,
    mean: Summary,
}

/// The moments of a metric over `exposed` units, of which those in `with_events` sent an
/// event: the others count as 0 (no events, nothing spent), merged in exactly.
fn with_zeros(with_events: Summary, exposed: u64) -> Summary {
    let mut all = with_events;
    all.merge(&Summary {
        n: exposed.saturating_sub(with_events.n),
        mean: 0.0,
        squared_deviations: 0.0,
    });
    all
}

/// Per variation, the statistics of the pairs (x, y) of the units that sent the `numerator`
/// or `denominator` event: x and y are the units' `w` of each (their values, an event without
/// one counting as one).
async fn ratio_moments(
    tx: &mut Tx,
    per_unit: &str,
    mut query_args: Vec<Arg>,
    numerator: &str,
    denominator: &str,
) -> Result<BTreeMap<i64, PairSummary>> {
    let first = query_args.len() + 1;
    let (x, y) = (format!("${first}"), format!("${}", first + 1));
    query_args.push(Arg::from(numerator));
    query_args.push(Arg::from(denominator));
    let pairs = format!(
        "SELECT MIN(p.variation) AS variation, \
           SUM(CASE WHEN p.event_name = {x} THEN p.w ELSE 0 END) AS x, \
           SUM(CASE WHEN p.event_name = {y} THEN p.w ELSE 0 END) AS y \
         FROM ({per_unit}) p WHERE p.event_name IN ({x}, {y}) \
         GROUP BY p.context_kind, p.context_key"
    );
    pair_moments(tx, &pairs, query_args).await
}

/// Per variation, the pairs (x, y) of a metric's value after the exposure and the same value
/// before it, over the `lookback` milliseconds before the unit's first exposure (CUPED's
/// covariate), for the units that sent the event in either period. Pre-exposure events are
/// read raw: the roll-ups count only events after the exposure.
async fn covariate_moments(
    tx: &mut Tx,
    per_unit: &str,
    mut query_args: Vec<Arg>,
    metric: &MetricQuery,
) -> Result<BTreeMap<i64, PairSummary>> {
    let first = query_args.len() + 1;
    let (name, lookback) = (format!("${first}"), format!("${}", first + 1));
    query_args.push(Arg::from(metric.event_name.as_str()));
    query_args.push(Arg::from(metric.covariate_lookback));
    // One value per unit and period, by the metric's kind.
    let value = |events: &str, total: &str| match metric.kind {
        MetricKind::Conversion => {
            format!("CAST(CASE WHEN {events} > 0 THEN 1 ELSE 0 END AS DOUBLE PRECISION)")
        }
        MetricKind::Count => format!("CAST({events} AS DOUBLE PRECISION)"),
        _ => format!("CAST({total} AS DOUBLE PRECISION)"),
    };
    let after = value("p.e", "p.s");
    let before = value("q.e", "q.s");
    let pairs = format!(
        "SELECT MIN(v.variation) AS variation, SUM(v.x) AS x, SUM(v.y) AS y FROM ( \
           SELECT p.context_kind, p.context_key, p.variation, {after} AS x, \
             CAST(0 AS DOUBLE PRECISION) AS y \
           FROM ({per_unit}) p WHERE p.event_name = {name} \
           UNION ALL \
           SELECT q.context_kind, q.context_key, q.variation, CAST(0 AS DOUBLE PRECISION), \
             {before} FROM ( \
             SELECT u.context_kind, u.context_key, u.variation, COUNT(*) AS e, \
               CAST(COALESCE(SUM(t.value), 0) AS DOUBLE PRECISION) AS s \
             FROM experiment_units u JOIN track_events t \
               ON t.environment_id = u.environment_id AND t.context_kind = u.context_kind \
               AND t.context_key = u.context_key AND t.name = {name} \
               AND t.at < u.first_at AND t.at >= u.first_at - {lookback} \
             WHERE u.environment_id = $1 AND u.experiment_key = $2 AND u.first_at <= $3 \
               AND (u.multiple_at IS NULL OR u.multiple_at > $3) \
             GROUP BY u.context_kind, u.context_key, u.variation) q \
         ) v GROUP BY v.context_kind, v.context_key"
    );
    pair_moments(tx, &pairs, query_args).await
}

/// Per variation, the moments of the pairs selected by `pairs` (columns `variation`, `x`,
/// `y`, one row per unit): one pass with VAR_SAMP and COVAR_SAMP (Youngs–Cramer) on Postgres,
/// deviations from each variation's averages on SQLite, as the main query.
async fn pair_moments(
    tx: &mut Tx,
    pairs: &str,
    query_args: Vec<Arg>,
) -> Result<BTreeMap<i64, PairSummary>> {
    let sql = if matches!(tx, Tx::Postgres(_)) {
        format!(
            "SELECT u.variation, COUNT(*), AVG(u.x), AVG(u.y), \
               CAST(0 AS DOUBLE PRECISION), CAST(0 AS DOUBLE PRECISION), \
               COALESCE(VAR_SAMP(u.x) * (COUNT(*) - 1), 0), \
               COALESCE(VAR_SAMP(u.y) * (COUNT(*) - 1), 0), \
               COALESCE(COVAR_SAMP(u.x, u.y) * (COUNT(*) - 1), 0) \
             FROM ({pairs}) u GROUP BY u.variation"
        )
    } else {
        format!(
            "WITH u AS MATERIALIZED ({pairs}), \
             g AS (SELECT variation, AVG(x) AS x, AVG(y) AS y FROM u GROUP BY variation) \
             SELECT g.variation, COUNT(*), MIN(g.x), MIN(g.y), SUM(u.x - g.x), SUM(u.y - g.y), \
               SUM((u.x - g.x) * (u.x - g.x)), SUM((u.y - g.y) * (u.y - g.y)), \
               SUM((u.x - g.x) * (u.y - g.y)) \
             FROM u JOIN g ON g.variation = u.variation GROUP BY g.variation"
        )
    };
    let mut out = BTreeMap::new();
    for row in tx.fetch_all(&sql, query_args).await? {
        let n = u64::try_from(row.get::<i64>(1)?).unwrap_or(0);
        out.insert(
            row.get::<i64>(0)?,
            PairSummary::from_shifted_sums(
                n,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
                row.get(8)?,
            ),
        );
    }
    Ok(out)
}

/// Per variation, the order statistics of a quantile metric over the units' mean values `m`:
/// the ranks come from each variation's count of units with a value (`valued`), and one
/// window query reads the values at those ranks. Variations with too few units get a note
/// instead.
async fn quantile_order_statistics(
    tx: &mut Tx,
    per_unit: &str,
    mut query_args: Vec<Arg>,
    metric: &MetricQuery,
    valued: &BTreeMap<i64, u64>,
) -> Result<(
    BTreeMap<i64, QuantileSummary>,
    BTreeMap<i64, vexil_stats::StatsError>,
)> {
    let mut wanted: BTreeMap<i64, vexil_stats::QuantileRanks> = BTreeMap::new();
    let mut notes = BTreeMap::new();
    // A variation without a single value has nothing to summarise, nor to explain.
    for (&variation, &n) in valued.iter().filter(|(_, n)| **n > 0) {
        match vexil_stats::quantile_ranks(n, metric.quantile, metric.quantile_alpha) {
            Ok(ranks) => {
                wanted.insert(variation, ranks);
            }
            Err(err) => {
                notes.insert(variation, err);
            }
        }
    }
    if wanted.is_empty() {
        return Ok((BTreeMap::new(), notes));
    }
    // The ranks are integers computed here, not input: written into the statement.
    let mut ranks: Vec<u64> = wanted
        .values()
        .flat_map(|r| [r.lower, r.estimate, r.upper])
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    let list = ranks
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let name = format!("${}", query_args.len() + 1);
    query_args.push(Arg::from(metric.event_name.as_str()));
    let sql = format!(
        "SELECT r.variation, r.rk, r.m FROM ( \
           SELECT v.variation, v.m, \
             CAST(ROW_NUMBER() OVER (PARTITION BY v.variation ORDER BY v.m) AS BIGINT) AS rk \
           FROM ({per_unit}) v WHERE v.event_name = {name} AND v.m IS NOT NULL) r \
         WHERE r.rk IN ({list})"
    );
    let mut values: BTreeMap<(i64, u64), f64> = BTreeMap::new();
    for row in tx.fetch_all(&sql, query_args).await? {
        let rank = u64::try_from(row.get::<i64>(1)?).unwrap_or(0);
        values.insert((row.get(0)?, rank), row.get(2)?);
    }
    let mut out = BTreeMap::new();
    for (variation, ranks) in wanted {
        let at = |rank: u64| values.get(&(variation, rank)).copied();
        // Every rank is within the count just read from the same snapshot.
        if let (Some(estimate), Some(lower), Some(upper)) =
            (at(ranks.estimate), at(ranks.lower), at(ranks.upper))
        {
            out.insert(
                variation,
                QuantileSummary {
                    n: valued[&variation],
                    level: metric.quantile,
                    alpha: metric.quantile_alpha,
                    estimate,
                    lower,
                    upper,
                },
            );
        }
    }
    Ok((out, notes))
}

impl Storage {
    /// The unit counts and, for each `(event name, kind)` of `metrics`, the sufficient
    /// statistics per variation of experiment `key`, counting exposures and events up to
    /// `until` (inclusive), from one snapshot. Brings the roll-ups up to date first (for
    /// [`CATCH_UP_LIMIT`] at most).
    pub async fn experiment_aggregates(
        &self,
        project: &str,
        env: &str,
        key: &str,
        metrics: &[MetricQuery],
        until: Millis,
    ) -> Result<ExperimentAggregates> {
        self.compact_analytics(CATCH_UP_LIMIT).await?;
        on_replica!(
            self,
            |tx| aggregates_in(&mut tx, project, env, key, metrics, until).await,
            |_| true
        )
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
        on_replica!(
            self,
            |tx| usage_in(&mut tx, project, env, flag, start, end).await,
            |_| true
        )
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
        on_replica!(
            self,
            |tx| stale_in(&mut tx, project, env, since).await,
            |_| true
        )
    }
}

/// The aggregates of [`Storage::experiment_aggregates`], read through `tx`.
async fn aggregates_in(
    tx: &mut Tx,
    project: &str,
    env: &str,
    key: &str,
    metrics: &[MetricQuery],
    until: Millis,
) -> Result<ExperimentAggregates> {
    if matches!(tx, Tx::Postgres(_)) {
        // Grouping a million units: enough memory to hash them rather than sort on
        // disk, and no JIT compilation, whose cost would be paid on every call. Both
        // last for this transaction only.
        tx.execute("SET LOCAL work_mem = '256MB'", args![]).await?;
        tx.execute("SET LOCAL jit = off", args![]).await?;
    }
    let env_id = env_id(tx, project, env).await?;
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

    let mut names: Vec<&str> = metrics
        .iter()
        .flat_map(|m| [m.event_name.as_str(), m.denominator_event_name.as_str()])
        .filter(|name| !name.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut per_event: BTreeMap<(String, i64), EventMoments> = BTreeMap::new();
    let mut ratios: Vec<BTreeMap<i64, PairSummary>> = vec![BTreeMap::new(); metrics.len()];
    let mut covariates: Vec<BTreeMap<i64, PairSummary>> = vec![BTreeMap::new(); metrics.len()];
    let mut quantiles: Vec<BTreeMap<i64, QuantileSummary>> = vec![BTreeMap::new(); metrics.len()];
    let mut quantile_notes: Vec<BTreeMap<i64, vexil_stats::StatsError>> =
        vec![BTreeMap::new(); metrics.len()];
    if !names.is_empty() {
        // Results as of a time after every event of the experiment read each unit's
        // whole-life sums; others sum hourly rows.
        let last_event = tx
            .fetch_optional(
                "SELECT MAX(last_at) FROM experiment_unit_totals \
                 WHERE environment_id = $1 AND experiment_key = $2",
                args![env_id, key],
            )
            .await?;
        let after_every_event = match last_event {
            Some(row) => row.get::<Option<i64>>(0)?.is_none_or(|last| last <= until),
            None => true,
        };
        let mut query_args = args![env_id, key, until];
        if !after_every_event {
            query_args.push(Arg::from(hour_of(until)));
            if matches!(tx, Tx::Postgres(_)) {
                // Grouping the hourly rows by unit gains nothing from parallel workers:
                // a unit's rows are spread over all of them, so each worker's partial
                // groups are nearly as many as the rows, and the final grouping redoes
                // the work (measured at 1.0 million units: 25 % slower than one process).
                tx.execute("SET LOCAL max_parallel_workers_per_gather = 0", args![])
                    .await?;
            }
        }
        let first_name = query_args.len() + 1;
        let list = (0..names.len())
            .map(|i| format!("${}", first_name + i))
            .collect::<Vec<_>>()
            .join(", ");
        query_args.extend(names.iter().map(|name| Arg::from(*name)));
        // Per unit and event name: variation, event count `e`, value total `s`, mean
        // value `m`, and `w`, the values with an event without one counting 1 (ratio
        // metrics), with the unit's identity.
        let per_unit = if after_every_event {
            format!(
                "SELECT event_name, variation, context_kind, context_key, \
                   CAST(events AS DOUBLE PRECISION) AS e, \
                   CAST(total AS DOUBLE PRECISION) AS s, \
                   CASE WHEN valued > 0 THEN CAST(total AS DOUBLE PRECISION) / valued END AS m, \
                   CAST(total AS DOUBLE PRECISION) + (events - valued) AS w \
                 FROM experiment_unit_totals \
                 WHERE environment_id = $1 AND experiment_key = $2 \
                   AND (multiple_at IS NULL OR multiple_at > $3) AND event_name IN ({list})"
            )
        } else {
            // Whole hourly rows up to the cut-off, plus the rows of the cut-off's hour
            // that end after it, recounted from their raw events. A unit's rows all
            // carry its variation and `multiple_at`.
            // Counts are summed as doubles (exact below 2⁵³): Postgres sums BIGINTs
            // into NUMERIC, which made this grouping of every hourly row a quarter slower.
            format!(
                "SELECT r.event_name, MIN(r.variation) AS variation, r.context_kind, \
                   r.context_key, SUM(r.events) AS e, SUM(r.total) AS s, \
                   CASE WHEN SUM(r.valued) > 0 THEN SUM(r.total) / SUM(r.valued) END AS m, \
                   SUM(r.total) + (SUM(r.events) - SUM(r.valued)) AS w \
                 FROM ( \
                   SELECT event_name, variation, context_kind, context_key, \
                     CAST(events AS DOUBLE PRECISION) AS events, \
                     CAST(valued AS DOUBLE PRECISION) AS valued, \
                     CAST(total AS DOUBLE PRECISION) AS total FROM experiment_unit_events \
                   WHERE environment_id = $1 AND experiment_key = $2 AND last_at <= $3 \
                     AND (multiple_at IS NULL OR multiple_at > $3) AND event_name IN ({list}) \
                   UNION ALL \
                   SELECT r.event_name, r.variation, r.context_kind, r.context_key, \
                     CAST(COUNT(*) AS DOUBLE PRECISION), \
                     CAST(COUNT(t.value) AS DOUBLE PRECISION), \
                     CAST(COALESCE(SUM(t.value), 0.0) AS DOUBLE PRECISION) \
                   FROM experiment_unit_events r \
                   JOIN experiment_units u ON u.environment_id = r.environment_id \
                     AND u.experiment_key = r.experiment_key \
                     AND u.context_kind = r.context_kind AND u.context_key = r.context_key \
                   JOIN track_events t ON t.environment_id = r.environment_id \
                     AND t.context_kind = r.context_kind AND t.context_key = r.context_key \
                     AND t.name = r.event_name AND t.at >= r.hour AND t.at >= u.first_at \
                     AND t.at <= $3 \
                   WHERE r.environment_id = $1 AND r.experiment_key = $2 AND r.hour = $4 \
                     AND r.last_at > $3 AND (r.multiple_at IS NULL OR r.multiple_at > $3) \
                     AND r.event_name IN ({list}) \
                     AND NOT EXISTS (SELECT 1 FROM analytics_pending p \
                       WHERE p.batch_ref = t.batch_ref) \
                   GROUP BY r.event_name, r.variation, r.context_kind, r.context_key \
                 ) r GROUP BY r.event_name, r.context_kind, r.context_key"
            )
        };
        // Moments about each variation's mean, never raw Σx² (Σx² − (Σx)²/n loses every
        // digit when the mean is large against the spread). Each row gives, per metric
        // value, a shift K near the mean, Σ(x − K) and Σ(x − K)². Postgres computes them in
        // one pass: AVG, and VAR_SAMP, which accumulates by the Youngs–Cramer update (since
        // PostgreSQL 12), so K is the mean and Σ(x − K) is 0. SQLite has no variance
        // aggregate: the per-unit rows are materialised once, averaged per variation, and
        // their deviations from those averages summed.
        let sql = if matches!(tx, Tx::Postgres(_)) {
            format!(
                "SELECT v.event_name, v.variation, COUNT(*), \
                   AVG(v.e), CAST(0 AS DOUBLE PRECISION), \
                   COALESCE(VAR_SAMP(v.e) * (COUNT(*) - 1), 0), \
                   AVG(v.s), CAST(0 AS DOUBLE PRECISION), \
                   COALESCE(VAR_SAMP(v.s) * (COUNT(*) - 1), 0), \
                   COUNT(v.m), COALESCE(AVG(v.m), 0), CAST(0 AS DOUBLE PRECISION), \
                   COALESCE(VAR_SAMP(v.m) * (COUNT(v.m) - 1), 0) \
                 FROM ({per_unit}) v GROUP BY v.event_name, v.variation"
            )
        } else {
            format!(
                "WITH v AS MATERIALIZED ({per_unit}), \
                 g AS (SELECT event_name, variation, COUNT(*) AS n, AVG(e) AS e, \
                   AVG(s) AS s, COUNT(m) AS nm, AVG(m) AS m FROM v \
                   GROUP BY event_name, variation) \
                 SELECT g.event_name, g.variation, MIN(g.n), \
                   MIN(g.e), SUM(v.e - g.e), SUM((v.e - g.e) * (v.e - g.e)), \
                   MIN(g.s), SUM(v.s - g.s), SUM((v.s - g.s) * (v.s - g.s)), \
                   MIN(g.nm), COALESCE(MIN(g.m), 0.0), COALESCE(SUM(v.m - g.m), 0.0), \
                   COALESCE(SUM((v.m - g.m) * (v.m - g.m)), 0.0) \
                 FROM v JOIN g ON g.event_name = v.event_name AND g.variation = v.variation \
                 GROUP BY g.event_name, g.variation"
            )
        };
        for row in tx.fetch_all(&sql, query_args.clone()).await? {
            let count =
                |i: usize| -> Result<u64> { Ok(u64::try_from(row.get::<i64>(i)?).unwrap_or(0)) };
            let moments = |n: u64, first: usize| -> Result<Summary> {
                Ok(Summary::from_shifted_sums(
                    n,
                    row.get(first)?,
                    row.get(first + 1)?,
                    row.get(first + 2)?,
                ))
            };
            let units = count(2)?;
            per_event.insert(
                (row.get(0)?, row.get(1)?),
                EventMoments {
                    units,
                    events: moments(units, 3)?,
                    total: moments(units, 6)?,
                    mean: moments(count(9)?, 10)?,
                },
            );
        }
        for (m, metric) in metrics.iter().enumerate() {
            if metric.has_covariate() {
                covariates[m] =
                    covariate_moments(tx, &per_unit, query_args.clone(), metric).await?;
            }
            if metric.kind == MetricKind::Ratio {
                ratios[m] = ratio_moments(
                    tx,
                    &per_unit,
                    query_args.clone(),
                    &metric.event_name,
                    &metric.denominator_event_name,
                )
                .await?;
            }
            if metric.kind == MetricKind::Quantile {
                let valued: BTreeMap<i64, u64> = per_event
                    .iter()
                    .filter(|((name, _), _)| *name == metric.event_name)
                    .map(|((_, variation), e)| (*variation, e.mean.n))
                    .collect();
                (quantiles[m], quantile_notes[m]) =
                    quantile_order_statistics(tx, &per_unit, query_args.clone(), metric, &valued)
                        .await?;
            }
        }
    }
    // Units exposed without a single event of a ratio metric (or in either period, for a
    // covariate) are pairs (0, 0).
    for (m, metric) in metrics.iter().enumerate() {
        let pairs = if metric.kind == MetricKind::Ratio {
            &mut ratios[m]
        } else if metric.has_covariate() {
            &mut covariates[m]
        } else {
            continue;
        };
        for (&variation, &n) in &units.per_variation {
            let found = pairs.entry(variation).or_default();
            found.merge(&PairSummary {
                n: n.saturating_sub(found.n),
                ..PairSummary::default()
            });
        }
    }
    let sums = metrics
        .iter()
        .zip(&ratios)
        .map(|(metric, ratio)| {
            units
                .per_variation
                .iter()
                .map(|(&variation, &n)| {
                    let e = per_event
                        .get(&(metric.event_name.clone(), variation))
                        .copied()
                        .unwrap_or_default();
                    let sums = match metric.kind {
                        // Each converted unit is a 1.
                        MetricKind::Conversion => Summary::conversions(n, e.units),
                        MetricKind::Count => with_zeros(e.events, n),
                        MetricKind::Sum => with_zeros(e.total, n),
                        // Units without a value have no mean: not counted. A quantile
                        // metric's moments are those of the same values.
                        MetricKind::Mean | MetricKind::Quantile => e.mean,
                        // The numerators of the pairs.
                        MetricKind::Ratio => {
                            let pairs = ratio.get(&variation).copied().unwrap_or_default();
                            Summary {
                                n: pairs.n,
                                mean: pairs.mean_x,
                                squared_deviations: pairs.squared_deviations_x,
                            }
                        }
                    };
                    (variation, sums)
                })
                .collect()
        })
        .collect();
    Ok(ExperimentAggregates {
        units,
        metrics: sums,
        ratios,
        covariates,
        quantiles,
        quantile_notes,
    })
}

/// The buckets of [`Storage::flag_usage`], read through `tx`.
async fn usage_in(
    tx: &mut Tx,
    project: &str,
    env: &str,
    flag: Option<&str>,
    start: Millis,
    end: Millis,
) -> Result<Vec<UsageBucket>> {
    let env_id = env_id(tx, project, env).await?;
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

/// The flags of [`Storage::stale_flags`], read through `tx`.
async fn stale_in(tx: &mut Tx, project: &str, env: &str, since: Millis) -> Result<Vec<StaleFlag>> {
    let env_id = env_id(tx, project, env).await?;
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
            Some([(variation, error, count)]) if *variation >= 0 && error.is_empty() => {
                stale.push(StaleFlag {
                    flag_key: key,
                    reason: StaleReason::SingleVariation,
                    variation: Some(*variation),
                    evaluations: *count,
                    last_evaluated,
                })
            }
            Some(_) => {}
        }
    }
    Ok(stale)
}
