//! Analytics events from SDKs (EventService.Publish): exposures, track events and
//! evaluation summaries, per environment.
//!
//! # Layout
//!
//! Each event type has a table of its own with one row per event and a typed column per
//! field of the message (migration `0002_events.sql`), rather than one JSON document per
//! batch: analytics filter and aggregate by environment, flag or experiment, event name,
//! context and time, which plain columns and B-tree indexes answer with the same SQL on
//! SQLite and Postgres (neither engine's JSON functions are needed, and they differ).
//!
//! Contexts are kept whole as canonical JSON (attributes may matter to a later analysis)
//! next to `context_kind` and `context_key`, the experiment unit to group and join by (see
//! [`EventContext`]).
//!
//! # Staying fast as data grows: roll-ups, not partitions
//!
//! The reads that matter are "results of experiment X" and "evaluations of flag F per
//! hour". Neither should cost time proportional to the raw history, so the same
//! transaction that stores a batch also folds it into two roll-ups (migration
//! `0003_experiments.sql`):
//!
//! * `experiment_units`: one row per experiment and context with its first exposure, its
//!   variation and when it was first seen with another one (a context exposed to several
//!   variations is counted apart and excluded from the analysis). Raw exposures grow with
//!   traffic (SDKs deduplicate per process and hour); this table grows with distinct
//!   contexts only. A unit the batch creates or changes is marked for the compactor.
//! * `evaluation_hourly`: evaluation counters summed per flag, variation, error and hour,
//!   keyed so that a batch adds to existing rows (`ON CONFLICT … DO UPDATE`). Usage and
//!   stale-flag reports read hours × flags rows, however many SDK instances report.
//!
//! Track events count for a metric only from each context's first exposure on, which may
//! arrive after them; so a batch's track events are only queued (`analytics_pending`), and
//! the compactor (`compaction.rs`) folds them into per-unit, per-hour roll-ups, outside the
//! publisher's transaction.
//!
//! Time partitioning was the alternative. It makes dropping old raw events cheap, but it
//! speeds up neither read above (results span an experiment's whole life; usage would still
//! sum raw counters) and it has no SQLite counterpart, so the two engines would run
//! different schemas. Roll-ups give the same layout on both engines; a retention policy for
//! raw events can later delete by time without touching the roll-ups.
//!
//! # Bulk writes
//!
//! On Postgres each table of a batch is written by one `INSERT … SELECT … FROM UNNEST(…)`
//! whose parameters are one array per column: a constant statement text (prepared once per
//! connection), binary-encoded values and one round trip per table, whatever the batch
//! size. SQLite, whose statements take no arrays and which runs in-process (no round trips
//! to save), writes multi-row `VALUES` statements.
//!
//! # Idempotency
//!
//! SDKs retry a failed publish with the same batch id. A batch is stored in one
//! transaction that starts by inserting its id into `event_batches`, unique per
//! environment: when the id is there already, the batch is a duplicate and nothing else is
//! written. Two deliveries racing each other are serialized by that unique index (Postgres
//! makes the second wait for the first to commit; SQLite writes one at a time), so exactly
//! one stores the events.

use std::collections::BTreeMap;

use sqlx::{Postgres, Transaction};

use super::db::{Arg, Row, Tx, args};
use super::{
    EvaluationCounter, EvaluationSummary, EventBatch, EventContext, EventCounts, ExposureEvent,
    Millis, QueryBuilder, ResourceKind, Result, Storage, StorageError, StoredBatch, TrackEvent,
    from_text, not_found, now_millis, project_id, to_text,
};

/// Rows per multi-row INSERT. At most 11 parameters a row keep a statement far below the
/// parameter limits of both engines (32,766 on SQLite, 65,535 on Postgres), and a batch of
/// 10,000 events takes a few dozen statements rather than 10,000 round trips.
const ROWS_PER_INSERT: usize = 500;

type PgTransaction = Transaction<'static, Postgres>;

/// The id of an environment, or not found (naming the project when that is what is missing).
pub(super) async fn env_id(tx: &mut Tx, project: &str, env: &str) -> Result<i64> {
    let row = tx
        .fetch_optional(
            "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id \
             WHERE p.key = $1 AND e.key = $2",
            args![project, env],
        )
        .await?;
    match row {
        Some(row) => Ok(row.get(0)?),
        None => {
            project_id(tx, project).await?;
            Err(not_found(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
            ))
        }
    }
}

/// Inserts `items` with multi-row INSERTs: `head` is `INSERT INTO t (columns) VALUES `,
/// and `values` returns the placeholders of one row (without the parentheses).
async fn insert_rows<T>(
    tx: &mut Tx,
    head: &str,
    items: &[T],
    values: impl Fn(&mut QueryBuilder, &T) -> String,
) -> Result<()> {
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::new(head);
        for (i, item) in chunk.iter().enumerate() {
            let row = values(&mut query, item);
            query.push(if i == 0 { "(" } else { ", (" });
            query.push(&row);
            query.push(")");
        }
        tx.execute(&query.sql, query.args).await?;
    }
    Ok(())
}

/// Placeholders for `args`, in order, separated by commas.
fn placeholders(query: &mut QueryBuilder, args: Vec<Arg>) -> String {
    args.into_iter()
        .map(|arg| query.arg(arg))
        .collect::<Vec<_>>()
        .join(", ")
}

fn context_args(context: &EventContext) -> [Arg; 3] {
    [
        Arg::from(context.kind.as_str()),
        Arg::from(context.key.as_str()),
        Arg::from(to_text(&context.json)),
    ]
}

fn context_from_row(row: &Row, first: usize) -> Result<EventContext> {
    Ok(EventContext {
        kind: row.get(first)?,
        key: row.get(first + 1)?,
        json: from_text(&row.get::<String>(first + 2)?, "event context")?,
    })
}

/// One hour in milliseconds.
/// Stores a batch's raw events with multi-row `VALUES` statements (SQLite, whose
/// statements take no arrays).
async fn insert_raw_events(
    tx: &mut Tx,
    env_id: i64,
    batch_ref: i64,
    batch: &EventBatch,
) -> Result<()> {
    insert_rows(
        tx,
        "INSERT INTO exposures (environment_id, batch_ref, at, flag_key, flag_version, \
             experiment_key, variation, in_experiment, context_kind, context_key, context) VALUES ",
        &batch.exposures,
        |q, e| {
            let mut values = args![
                env_id,
                batch_ref,
                e.at,
                &e.flag_key,
                e.flag_version,
                &e.experiment_key,
                e.variation,
                e.in_experiment,
            ];
            values.extend(context_args(&e.context));
            placeholders(q, values)
        },
    )
    .await?;

    insert_rows(
        tx,
        "INSERT INTO track_events (environment_id, batch_ref, at, name, value, data, \
             context_kind, context_key, context) VALUES ",
        &batch.track_events,
        |q, e| {
            let head = placeholders(q, args![env_id, batch_ref, e.at, &e.name]);
            // The storage binds no floating-point type: the value travels as its exact
            // decimal text (Rust prints the shortest round-trip form) and the database
            // converts it.
            let value = q.arg(e.value.map(|v| format!("{v:e}")));
            let data = q.arg(e.data.as_ref().map(to_text));
            let context = placeholders(q, context_args(&e.context).to_vec());
            format!("{head}, CAST({value} AS DOUBLE PRECISION), {data}, {context}")
        },
    )
    .await?;

    let summaries: Vec<(i64, &EvaluationSummary)> = (0_i64..).zip(&batch.summaries).collect();
    insert_rows(
        tx,
        "INSERT INTO evaluation_summaries (batch_ref, position, environment_id, flag_key, \
             window_start, window_end) VALUES ",
        &summaries,
        |q, (position, s)| {
            placeholders(
                q,
                args![batch_ref, *position, env_id, &s.flag_key, s.start, s.end],
            )
        },
    )
    .await?;
    let counters: Vec<(i64, &EvaluationSummary, &EvaluationCounter)> = summaries
        .iter()
        .flat_map(|(position, s)| s.counters.iter().map(move |c| (*position, *s, c)))
        .collect();
    insert_rows(
        tx,
        "INSERT INTO evaluation_counters (batch_ref, position, environment_id, flag_key, \
             window_start, window_end, flag_version, variation, error_kind, count) VALUES ",
        &counters,
        |q, (position, s, c)| {
            placeholders(
                q,
                args![
                    batch_ref,
                    *position,
                    env_id,
                    &s.flag_key,
                    s.start,
                    s.end,
                    c.flag_version,
                    c.variation,
                    c.error_kind.clone(),
                    c.count,
                ],
            )
        },
    )
    .await?;

    Ok(())
}

/// Stores a batch's raw events on Postgres with one `INSERT … SELECT FROM UNNEST(…)` per
/// table: each column travels as one binary array, so a batch of thousands of events costs
/// four statements whose text (and server-side plan) is the same for every batch, instead
/// of many statements with thousands of placeholders each.
async fn insert_raw_events_postgres(
    pg: &mut PgTransaction,
    env_id: i64,
    batch_ref: i64,
    batch: &EventBatch,
) -> Result<()> {
    if !batch.exposures.is_empty() {
        let exposures = &batch.exposures;
        sqlx::query(
            "INSERT INTO exposures (environment_id, batch_ref, at, flag_key, flag_version, \
             experiment_key, variation, in_experiment, context_kind, context_key, context) \
             SELECT $1, $2, u.* FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], \
             $7::BIGINT[], $8::BOOLEAN[], $9::TEXT[], $10::TEXT[], $11::TEXT[]) AS u",
        )
        .bind(env_id)
        .bind(batch_ref)
        .bind(exposures.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(column(exposures, |e| e.flag_key.as_str()))
        .bind(exposures.iter().map(|e| e.flag_version).collect::<Vec<_>>())
        .bind(column(exposures, |e| e.experiment_key.as_str()))
        .bind(exposures.iter().map(|e| e.variation).collect::<Vec<_>>())
        .bind(
            exposures
                .iter()
                .map(|e| e.in_experiment)
                .collect::<Vec<_>>(),
        )
        .bind(column(exposures, |e| e.context.kind.as_str()))
        .bind(column(exposures, |e| e.context.key.as_str()))
        .bind(
            exposures
                .iter()
                .map(|e| to_text(&e.context.json))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **pg)
        .await?;
    }
    if !batch.track_events.is_empty() {
        let events = &batch.track_events;
        sqlx::query(
            "INSERT INTO track_events (environment_id, batch_ref, at, name, value, data, \
             context_kind, context_key, context) \
             SELECT $1, $2, u.* FROM UNNEST($3::BIGINT[], $4::TEXT[], \
             $5::DOUBLE PRECISION[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[]) AS u",
        )
        .bind(env_id)
        .bind(batch_ref)
        .bind(events.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(column(events, |e| e.name.as_str()))
        // Binary float8: the value is stored exactly as received.
        .bind(events.iter().map(|e| e.value).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.data.as_ref().map(to_text))
                .collect::<Vec<_>>(),
        )
        .bind(column(events, |e| e.context.kind.as_str()))
        .bind(column(events, |e| e.context.key.as_str()))
        .bind(
            events
                .iter()
                .map(|e| to_text(&e.context.json))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **pg)
        .await?;
    }
    if !batch.summaries.is_empty() {
        let summaries = &batch.summaries;
        let positions: Vec<i64> = (0_i64..).take(summaries.len()).collect();
        sqlx::query(
            "INSERT INTO evaluation_summaries (batch_ref, position, environment_id, flag_key, \
             window_start, window_end) \
             SELECT $1, u.position, $2, u.flag_key, u.window_start, u.window_end \
             FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[]) \
             AS u (position, flag_key, window_start, window_end)",
        )
        .bind(batch_ref)
        .bind(env_id)
        .bind(&positions)
        .bind(column(summaries, |s| s.flag_key.as_str()))
        .bind(summaries.iter().map(|s| s.start).collect::<Vec<_>>())
        .bind(summaries.iter().map(|s| s.end).collect::<Vec<_>>())
        .execute(&mut **pg)
        .await?;
        let counters: Vec<(i64, &EvaluationSummary, &EvaluationCounter)> = positions
            .iter()
            .zip(summaries)
            .flat_map(|(position, s)| s.counters.iter().map(move |c| (*position, s, c)))
            .collect();
        if !counters.is_empty() {
            sqlx::query(
                "INSERT INTO evaluation_counters (batch_ref, position, environment_id, \
                 flag_key, window_start, window_end, flag_version, variation, error_kind, count) \
                 SELECT $1, u.position, $2, u.flag_key, u.window_start, u.window_end, \
                 u.flag_version, u.variation, u.error_kind, u.count \
                 FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], \
                 $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[]) \
                 AS u (position, flag_key, window_start, window_end, flag_version, variation, \
                 error_kind, count)",
            )
            .bind(batch_ref)
            .bind(env_id)
            .bind(counters.iter().map(|(p, _, _)| *p).collect::<Vec<_>>())
            .bind(column(&counters, |(_, s, _)| s.flag_key.as_str()))
            .bind(counters.iter().map(|(_, s, _)| s.start).collect::<Vec<_>>())
            .bind(counters.iter().map(|(_, s, _)| s.end).collect::<Vec<_>>())
            .bind(
                counters
                    .iter()
                    .map(|(_, _, c)| c.flag_version)
                    .collect::<Vec<_>>(),
            )
            .bind(
                counters
                    .iter()
                    .map(|(_, _, c)| c.variation)
                    .collect::<Vec<_>>(),
            )
            .bind(
                counters
                    .iter()
                    .map(|(_, _, c)| c.error_kind.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(counters.iter().map(|(_, _, c)| c.count).collect::<Vec<_>>())
            .execute(&mut **pg)
            .await?;
        }
    }
    Ok(())
}

/// One text column of `items`, as an array to bind.
fn column<'a, T>(items: &'a [T], field: impl Fn(&'a T) -> &'a str) -> Vec<&'a str> {
    items.iter().map(field).collect()
}

pub const HOUR_MILLIS: i64 = 3_600_000;

/// The start of the hour `at` falls in.
pub fn hour_of(at: Millis) -> Millis {
    at.div_euclid(HOUR_MILLIS) * HOUR_MILLIS
}

/// A time no event has, standing for NULL where NULLs must compare equal.
const NO_TIME: &str = "-9223372036854775807";

/// SQL for the smaller of two nullable expressions (NULL only when both are).
fn least_of(a: &str, b: &str) -> String {
    format!(
        "(CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} WHEN {a} < {b} THEN {a} ELSE {b} END)"
    )
}

/// One experiment unit as a batch saw it, before merging with what is stored.
struct UnitSeen {
    variation: i64,
    first_at: Millis,
    multiple_at: Option<Millis>,
}

/// Folds the batch's in-experiment exposures into `experiment_units`: one row per
/// experiment and context, keeping the earliest exposure and the earliest time the context
/// was seen with a second variation. Rows are merged in Rust first (a statement may not
/// update one row twice) and written in key order, so that concurrent batches lock rows in
/// the same order.
async fn upsert_experiment_units(
    tx: &mut Tx,
    env_id: i64,
    exposures: &[ExposureEvent],
) -> Result<()> {
    let mut units: BTreeMap<(&str, &str, &str), UnitSeen> = BTreeMap::new();
    let mut sorted: Vec<&ExposureEvent> = exposures.iter().filter(|e| e.in_experiment).collect();
    sorted.sort_by_key(|e| e.at);
    for e in sorted {
        let key = (
            e.experiment_key.as_str(),
            e.context.kind.as_str(),
            e.context.key.as_str(),
        );
        match units.get_mut(&key) {
            None => {
                units.insert(
                    key,
                    UnitSeen {
                        variation: e.variation,
                        first_at: e.at,
                        multiple_at: None,
                    },
                );
            }
            // Exposures are visited in time order: the first other variation is the earliest.
            Some(seen) if seen.variation != e.variation && seen.multiple_at.is_none() => {
                seen.multiple_at = Some(e.at);
            }
            Some(_) => {}
        }
    }
    let rows: Vec<_> = units.into_iter().collect();
    let stored_first = "experiment_units.first_at";
    let later_first = format!(
        "(CASE WHEN excluded.first_at > {stored_first} THEN excluded.first_at ELSE {stored_first} END)"
    );
    let switched = format!(
        "(CASE WHEN experiment_units.variation <> excluded.variation THEN {later_first} END)"
    );
    let multiple = least_of(
        &least_of("experiment_units.multiple_at", "excluded.multiple_at"),
        &switched,
    );
    // The unit keeps the variation of its earliest exposure, whatever the order batches
    // arrive in. A row is written (and marked for a roll-up rebuild, see
    // `compaction.rs`) only when the batch changes it: repeated exposures, most of the
    // traffic, leave stored units untouched.
    let tail = format!(
        " ON CONFLICT (environment_id, experiment_key, context_kind, context_key) DO UPDATE SET \
         variation = CASE WHEN excluded.first_at < {stored_first} THEN excluded.variation \
         ELSE experiment_units.variation END, \
         first_at = {}, multiple_at = {multiple}, rollup_state = 1 \
         WHERE excluded.first_at < {stored_first} \
         OR COALESCE({multiple}, {NO_TIME}) <> COALESCE(experiment_units.multiple_at, {NO_TIME})",
        least_of(stored_first, "excluded.first_at")
    );
    if let Tx::Postgres(pg) = tx {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO experiment_units (environment_id, experiment_key, context_kind, \
             context_key, variation, first_at, multiple_at, rollup_state) \
             SELECT $1, u.*, 1 FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], \
             $6::BIGINT[], $7::BIGINT[]) AS u{tail}"
        );
        sqlx::query(&sql)
            .bind(env_id)
            .bind(rows.iter().map(|((x, _, _), _)| *x).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|((_, kind, _), _)| *kind)
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|((_, _, key), _)| *key).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|(_, seen)| seen.variation)
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|(_, seen)| seen.first_at)
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|(_, seen)| seen.multiple_at)
                    .collect::<Vec<_>>(),
            )
            .execute(&mut **pg)
            .await?;
        return Ok(());
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::new(
            "INSERT INTO experiment_units (environment_id, experiment_key, context_kind, \
             context_key, variation, first_at, multiple_at, rollup_state) VALUES ",
        );
        for (i, ((experiment, kind, key), seen)) in chunk.iter().enumerate() {
            let row = placeholders(
                &mut query,
                args![
                    env_id,
                    *experiment,
                    *kind,
                    *key,
                    seen.variation,
                    seen.first_at,
                    seen.multiple_at,
                ],
            );
            query.push(if i == 0 { "(" } else { ", (" });
            query.push(&row);
            query.push(", 1)");
        }
        query.push(&tail);
        tx.execute(&query.sql, query.args).await?;
    }
    Ok(())
}

/// Adds the batch's evaluation counters to `evaluation_hourly`, by the hour their window
/// starts in (SDK windows last seconds to minutes, so the error of that choice is small
/// against an hour).
async fn upsert_hourly_usage(
    tx: &mut Tx,
    env_id: i64,
    summaries: &[EvaluationSummary],
) -> Result<()> {
    let mut totals: BTreeMap<(&str, Millis, i64, &str), i64> = BTreeMap::new();
    for s in summaries {
        for c in &s.counters {
            let key = (
                s.flag_key.as_str(),
                hour_of(s.start),
                c.variation.unwrap_or(-1),
                c.error_kind.as_deref().unwrap_or(""),
            );
            let total = totals.entry(key).or_insert(0);
            *total = total.saturating_add(c.count);
        }
    }
    let rows: Vec<_> = totals.into_iter().collect();
    if let Tx::Postgres(pg) = tx {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO evaluation_hourly (environment_id, flag_key, hour, variation, \
             error_kind, count) \
             SELECT $1, u.* FROM UNNEST($2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[], \
             $6::BIGINT[]) AS u \
             ON CONFLICT (environment_id, flag_key, hour, variation, error_kind) \
             DO UPDATE SET count = evaluation_hourly.count + excluded.count",
        )
        .bind(env_id)
        .bind(
            rows.iter()
                .map(|((flag, _, _, _), _)| *flag)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|((_, hour, _, _), _)| *hour)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|((_, _, variation, _), _)| *variation)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|((_, _, _, error), _)| *error)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(_, count)| *count).collect::<Vec<_>>())
        .execute(&mut **pg)
        .await?;
        return Ok(());
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::new(
            "INSERT INTO evaluation_hourly (environment_id, flag_key, hour, variation, \
             error_kind, count) VALUES ",
        );
        for (i, ((flag, hour, variation, error), count)) in chunk.iter().enumerate() {
            let row = placeholders(
                &mut query,
                args![env_id, *flag, *hour, *variation, *error, *count],
            );
            query.push(if i == 0 { "(" } else { ", (" });
            query.push(&row);
            query.push(")");
        }
        query.push(
            " ON CONFLICT (environment_id, flag_key, hour, variation, error_kind) \
             DO UPDATE SET count = evaluation_hourly.count + excluded.count",
        );
        tx.execute(&query.sql, query.args).await?;
    }
    Ok(())
}

/// The limit of a listing, never negative.
fn limit(limit: i64) -> i64 {
    limit.max(0)
}

impl Storage {
    /// Stores a batch of events of an environment in one transaction, unless a batch with
    /// the same id was stored before: then nothing is written and the answer says
    /// `duplicate`, with the number of events accepted the first time. The caller validates
    /// the events.
    pub async fn store_event_batch(
        &self,
        project: &str,
        env: &str,
        batch: &EventBatch,
    ) -> Result<StoredBatch> {
        let accepted = u32::try_from(batch.len())
            .map_err(|_| StorageError::InvalidArgument("too many events in one batch".into()))?;
        let now = now_millis();
        let mut tx = self.write().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let inserted = tx
            .fetch_optional(
                "INSERT INTO event_batches (environment_id, batch_id, sdk_name, sdk_version, \
                 received_at, accepted) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (environment_id, batch_id) DO NOTHING RETURNING id",
                args![
                    env_id,
                    &batch.batch_id,
                    &batch.sdk_name,
                    &batch.sdk_version,
                    now,
                    i64::from(accepted),
                ],
            )
            .await?;
        let Some(inserted) = inserted else {
            // Seen before: answer as the first delivery was answered; dropping the
            // transaction rolls it back, having written nothing.
            let row = tx
                .fetch_optional(
                    "SELECT accepted FROM event_batches WHERE environment_id = $1 AND batch_id = $2",
                    args![env_id, &batch.batch_id],
                )
                .await?;
            let accepted = match row {
                Some(row) => u32::try_from(row.get::<i64>(0)?).unwrap_or(u32::MAX),
                None => 0,
            };
            return Ok(StoredBatch {
                accepted,
                duplicate: true,
            });
        };
        let batch_ref: i64 = inserted.get(0)?;

        match &mut tx {
            Tx::Postgres(pg) => insert_raw_events_postgres(pg, env_id, batch_ref, batch).await?,
            Tx::Sqlite(_) => insert_raw_events(&mut tx, env_id, batch_ref, batch).await?,
        }
        upsert_experiment_units(&mut tx, env_id, &batch.exposures).await?;
        if !batch.track_events.is_empty() {
            // The compactor adds these events to the experiment roll-ups.
            tx.execute(
                "INSERT INTO analytics_pending (batch_ref) VALUES ($1)",
                args![batch_ref],
            )
            .await?;
        }
        upsert_hourly_usage(&mut tx, env_id, &batch.summaries).await?;

        tx.commit().await?;
        Ok(StoredBatch {
            accepted,
            duplicate: false,
        })
    }

    /// How many batches, events and counters an environment holds.
    pub async fn count_events(&self, project: &str, env: &str) -> Result<EventCounts> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let row = tx
            .fetch_optional(
                "SELECT (SELECT COUNT(*) FROM event_batches WHERE environment_id = $1), \
                 (SELECT COUNT(*) FROM exposures WHERE environment_id = $1), \
                 (SELECT COUNT(*) FROM track_events WHERE environment_id = $1), \
                 (SELECT COUNT(*) FROM evaluation_summaries WHERE environment_id = $1), \
                 (SELECT COUNT(*) FROM evaluation_counters WHERE environment_id = $1)",
                args![env_id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(EventCounts::default());
        };
        Ok(EventCounts {
            batches: row.get(0)?,
            exposures: row.get(1)?,
            track_events: row.get(2)?,
            summaries: row.get(3)?,
            counters: row.get(4)?,
        })
    }

    /// An environment's first `limit` exposures, in the order they were stored.
    pub async fn list_exposures(
        &self,
        project: &str,
        env: &str,
        limit: i64,
    ) -> Result<Vec<ExposureEvent>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let rows = tx
            .fetch_all(
                "SELECT at, flag_key, flag_version, experiment_key, variation, in_experiment, \
                 context_kind, context_key, context FROM exposures WHERE environment_id = $1 \
                 ORDER BY id LIMIT $2",
                args![env_id, self::limit(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ExposureEvent {
                    at: row.get(0)?,
                    flag_key: row.get(1)?,
                    flag_version: row.get(2)?,
                    experiment_key: row.get(3)?,
                    variation: row.get(4)?,
                    in_experiment: row.get(5)?,
                    context: context_from_row(row, 6)?,
                })
            })
            .collect()
    }

    /// An environment's first `limit` track events, in the order they were stored.
    pub async fn list_track_events(
        &self,
        project: &str,
        env: &str,
        limit: i64,
    ) -> Result<Vec<TrackEvent>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let rows = tx
            .fetch_all(
                "SELECT at, name, value, data, context_kind, context_key, context \
                 FROM track_events WHERE environment_id = $1 ORDER BY id LIMIT $2",
                args![env_id, self::limit(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TrackEvent {
                    at: row.get(0)?,
                    name: row.get(1)?,
                    value: row.get(2)?,
                    data: match row.get::<Option<String>>(3)? {
                        Some(text) => Some(from_text(&text, "track event data")?),
                        None => None,
                    },
                    context: context_from_row(row, 4)?,
                })
            })
            .collect()
    }

    /// An environment's first `limit` evaluation summaries with their counters, in the
    /// order they were stored.
    pub async fn list_evaluation_summaries(
        &self,
        project: &str,
        env: &str,
        limit: i64,
    ) -> Result<Vec<EvaluationSummary>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let rows = tx
            .fetch_all(
                "SELECT batch_ref, position, flag_key, window_start, window_end \
                 FROM evaluation_summaries WHERE environment_id = $1 \
                 ORDER BY batch_ref, position LIMIT $2",
                args![env_id, self::limit(limit)],
            )
            .await?;
        let mut summaries = Vec::with_capacity(rows.len());
        for row in &rows {
            let (batch_ref, position): (i64, i64) = (row.get(0)?, row.get(1)?);
            let counters = tx
                .fetch_all(
                    "SELECT flag_version, variation, error_kind, count FROM evaluation_counters \
                     WHERE batch_ref = $1 AND position = $2 \
                     ORDER BY flag_version, COALESCE(variation, -1), COALESCE(error_kind, '')",
                    args![batch_ref, position],
                )
                .await?
                .iter()
                .map(|c| {
                    Ok(EvaluationCounter {
                        flag_version: c.get(0)?,
                        variation: c.get(1)?,
                        error_kind: c.get(2)?,
                        count: c.get(3)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            summaries.push(EvaluationSummary {
                flag_key: row.get(2)?,
                start: row.get(3)?,
                end: row.get(4)?,
                counters,
            });
        }
        Ok(summaries)
    }
}
