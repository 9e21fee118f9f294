//! Analytics events from SDKs (EventService.Publish): exposures, track events and
//! evaluation summaries, per environment.
//!
//! # Layout
//!
//! Each event type has a table of its own with one row per event and a typed column per
//! field of the message (migration `0002_events.sql`), rather than one JSON document per
//! batch. Experiment analytics will ask "exposures of experiment X per variation since T",
//! "sum of metric M per unit", "evaluations of flag F per variation per hour": filters and
//! aggregates over environment, flag or experiment, event name and time, which plain
//! columns and the B-tree indexes on `(environment_id, flag_key | experiment_key | name,
//! at)` answer directly, with the same SQL on SQLite and Postgres (neither engine's JSON
//! functions are needed, and they differ). Evaluation counters are flattened into rows that
//! repeat their summary's environment, flag and window, so that totals need no join.
//!
//! Contexts are kept whole as canonical JSON (attributes may matter to a later analysis)
//! next to `context_kind` and `context_key`, the experiment unit to group and join by (see
//! [`EventContext`]).
//!
//! # Idempotency
//!
//! SDKs retry a failed publish with the same batch id. A batch is stored in one
//! transaction that starts by inserting its id into `event_batches`, unique per
//! environment: when the id is there already, the batch is a duplicate and nothing else is
//! written. Two deliveries racing each other are serialized by that unique index (Postgres
//! makes the second wait for the first to commit; SQLite writes one at a time), so exactly
//! one stores the events.

use super::db::{Arg, Row, Tx, args};
use super::{
    EvaluationCounter, EvaluationSummary, EventBatch, EventContext, EventCounts, ExposureEvent,
    QueryBuilder, ResourceKind, Result, Storage, StorageError, StoredBatch, TrackEvent, from_text,
    not_found, now_millis, project_id, to_text,
};

/// Rows per multi-row INSERT. At most 11 parameters a row keep a statement far below the
/// parameter limits of both engines (32,766 on SQLite, 65,535 on Postgres), and a batch of
/// 10,000 events takes a few dozen statements rather than 10,000 round trips.
const ROWS_PER_INSERT: usize = 500;

/// The id of an environment, or not found (naming the project when that is what is missing).
async fn env_id(tx: &mut Tx, project: &str, env: &str) -> Result<i64> {
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

        insert_rows(
            &mut tx,
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
            &mut tx,
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
            &mut tx,
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
            &mut tx,
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
