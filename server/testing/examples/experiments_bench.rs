//! Ingestion and results speed of experiments on Postgres, over gRPC on loopback.
//!
//! `cargo run --release -p vexil-testing --example experiments_bench`. Creates a fresh
//! database on the test Postgres (`VEXIL_TEST_DATABASE_URL`), serves it from this process,
//! and:
//!
//! 1. ingestion: concurrent publishers send batches of exposures and track events through
//!    `EventService.Publish`; prints events per second;
//!    and how long until the compactor has taken every event into the roll-ups;
//! 2. results: generates one experiment with 1,000,000 exposed contexts and 10,000,000
//!    track events with `generate_series`, times the compactor's build of their roll-ups,
//!    then times `GetExperimentResults` (a conversion metric and a sum metric over the same
//!    event) as of now, as of an hour boundary and as of a time inside an hour.
//!
//! `VEXIL_BENCH_ONLY=ingestion` stops after the first part (the second takes minutes).
//!
//! The database is dropped at the end. Prints figures; asserts nothing. The publishers run in
//! the same process as the server, so they share its cores.

use std::time::Instant;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use vexil_proto::v1 as pb;
use vexil_proto::v1::event_service_client::EventServiceClient;
use vexil_proto::v1::experiment_service_client::ExperimentServiceClient;
use vexil_server::convert::timestamp;
use vexil_testing::{ENV, PROJECT, TestServer, authed, halves, metric, results_request};

const PUBLISHERS: usize = 8;
const BATCHES_PER_PUBLISHER: usize = 25;
const EVENTS_PER_BATCH: usize = 5_000;
const CONTEXTS: i64 = 1_000_000;
const EVENTS: i64 = 10_000_000;

/// A batch of 20 % exposures and 80 % track events of distinct users.
fn batch(publisher: usize, number: usize, now: i64) -> pb::PublishRequest {
    let mut request = pb::PublishRequest {
        batch_id: format!("bench-{publisher}-{number}"),
        sdk_name: "bench".into(),
        sdk_version: "0".into(),
        ..Default::default()
    };
    for i in 0..EVENTS_PER_BATCH {
        let user = format!("user-{publisher}-{number}-{}", i / 5);
        let context = Some(pb::Context {
            kind: "user".into(),
            key: user,
            ..Default::default()
        });
        if i % 5 == 0 {
            request.exposures.push(pb::ExposureEvent {
                time: Some(timestamp(now)),
                flag_key: "checkout".into(),
                flag_version: 3,
                experiment_key: "ingest".into(),
                variation: (i % 2) as u32,
                context,
                in_experiment: true,
            });
        } else {
            request.track_events.push(pb::TrackEvent {
                time: Some(timestamp(now + 1)),
                name: "purchase".into(),
                context,
                value: Some((i % 97) as f64),
                data: None,
            });
        }
    }
    request
}

/// Waits until the server's compactor has taken in every stored event.
async fn wait_for_rollups(db: &mut PgConnection) -> anyhow::Result<()> {
    loop {
        let (pending, stale): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM analytics_pending), \
             (SELECT COUNT(*) FROM experiment_units WHERE rollup_state <> 0)",
        )
        .fetch_one(&mut *db)
        .await?;
        if pending == 0 && stale == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = TestServer::postgres()
        .await
        .ok_or_else(|| anyhow::anyhow!("the benchmark needs the test Postgres"))?;
    let outcome = run(&server).await;
    server.stop().await;
    outcome
}

async fn run(server: &TestServer) -> anyhow::Result<()> {
    let url = server.database_url();
    let token = server.root_token();
    let sdk_key = server.sdk_key(ENV, "server");
    let channel = server.channel().await;

    // ----- ingestion ------------------------------------------------------------------------
    let now = vexil_server::storage::now_millis();
    // Build every batch first: only the publishing is timed.
    let mut work = Vec::new();
    for p in 0..PUBLISHERS {
        work.push(
            (0..BATCHES_PER_PUBLISHER)
                .map(|n| batch(p, n, now))
                .collect::<Vec<_>>(),
        );
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for batches in work {
        let mut events = EventServiceClient::new(channel.clone())
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        let key = sdk_key.clone();
        tasks.push(tokio::spawn(async move {
            for b in batches {
                events.publish(authed(b, &key)).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let total = PUBLISHERS * BATCHES_PER_PUBLISHER * EVENTS_PER_BATCH;
    println!(
        "ingestion: {total} events in {} batches of {EVENTS_PER_BATCH} from {PUBLISHERS} publishers: \
         {:.2?}, {:.0} events/s",
        PUBLISHERS * BATCHES_PER_PUBLISHER,
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );
    let mut db = PgConnection::connect(&url).await?;
    wait_for_rollups(&mut db).await?;
    let drained = started.elapsed();
    println!(
        "roll-ups up to date {drained:.2?} after the first publish: {:.0} events/s \
         stored and compacted",
        total as f64 / drained.as_secs_f64()
    );

    if std::env::var("VEXIL_BENCH_ONLY").as_deref() == Ok("ingestion") {
        return Ok(());
    }

    // ----- results ----------------------------------------------------------------------------
    let mut experiments = ExperimentServiceClient::new(channel.clone());
    server.create_bool_flag("checkout", false).await;
    for (key, kind) in [
        ("purchase-rate", pb::MetricKind::Conversion),
        ("revenue", pb::MetricKind::Sum),
    ] {
        let request = pb::CreateMetricRequest {
            metric: Some(metric(key, "purchase", kind)),
        };
        experiments.create_metric(authed(request, &token)).await?;
    }
    let goal = |key: &str| pb::ExperimentMetric {
        metric_key: key.into(),
        direction: pb::MetricDirection::Increase as i32,
    };
    experiments
        .create_experiment(authed(
            pb::CreateExperimentRequest {
                experiment: Some(pb::Experiment {
                    project_key: PROJECT.into(),
                    environment_key: ENV.into(),
                    key: "big".into(),
                    flag_key: "checkout".into(),
                    variations: halves(),
                    primary_metric: Some(goal("purchase-rate")),
                    guardrail_metrics: vec![goal("revenue")],
                    minimum_detectable_effect: 0.02,
                    baseline_mean: 0.3,
                    ..Default::default()
                }),
            },
            &token,
        ))
        .await?;

    let started = Instant::now();
    let t0 = now - 86_400_000;
    sqlx::raw_sql(&format!(
        "WITH env AS (SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id \
           WHERE p.key = 'default' AND e.key = 'production') \
         INSERT INTO experiment_units (environment_id, experiment_key, context_kind, context_key, \
           variation, first_at, multiple_at) \
         SELECT env.id, 'big', 'user', 'u' || g, g % 2, {t0} + g, \
           CASE WHEN g % 1000 = 0 THEN {t0} + g + 5 END \
         FROM env, generate_series(1, {CONTEXTS}) g"
    ))
    .execute(&mut db)
    .await?;
    // Ten million purchases: 30 % of the contexts buy, the treatment's a little more often.
    sqlx::raw_sql(&format!(
        "WITH env AS (SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id \
           WHERE p.key = 'default' AND e.key = 'production'), \
         batch AS (INSERT INTO event_batches (environment_id, batch_id, sdk_name, sdk_version, \
           received_at, accepted) SELECT env.id, 'generated', 'bench', '0', {now}, {EVENTS} \
           FROM env RETURNING id, environment_id), \
         queued AS (INSERT INTO analytics_pending (batch_ref) SELECT id FROM batch) \
         INSERT INTO track_events (environment_id, batch_ref, at, name, value, data, \
           context_kind, context_key, context) \
         SELECT batch.environment_id, batch.id, {t0} + {CONTEXTS} + g, 'purchase', \
           (g % 50)::float8, NULL, 'user', \
           'u' || (1 + (g::bigint * 7919) % (CASE WHEN g % 2 = 0 THEN 300000 ELSE 320000 END)), \
           '{{\"kind\":\"user\",\"key\":\"u\"}}' \
         FROM batch, generate_series(1, {EVENTS}) g"
    ))
    .execute(&mut db)
    .await?;
    sqlx::raw_sql("ANALYZE experiment_units; ANALYZE track_events;")
        .execute(&mut db)
        .await?;
    println!(
        "generated {CONTEXTS} exposed contexts and {EVENTS} track events in {:.1?}",
        started.elapsed()
    );
    // The generated units are marked for a rebuild and the events' batch is queued, as
    // ingestion leaves them: the server's compactor builds their roll-up rows.
    let started = Instant::now();
    wait_for_rollups(&mut db).await?;
    let compacted = started.elapsed();
    let rows: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM experiment_unit_events")
        .fetch_one(&mut db)
        .await?;
    println!(
        "compaction of the generated data: {compacted:.1?} ({:.0} events/s), {} roll-up rows",
        EVENTS as f64 / compacted.as_secs_f64(),
        rows.0
    );

    // Now, then at a cut-off on an hour boundary (what charts ask for), then at one inside
    // an hour (whose hour is recounted from raw events).
    let mid = t0 + CONTEXTS + EVENTS / 2;
    let hour = vexil_server::storage::HOUR_MILLIS;
    let cutoffs = [
        (None, "now"),
        (Some(mid - mid % hour - 1), "hour boundary"),
        (Some(mid), "inside an hour"),
    ];
    for run in 1..=5 {
        // Twice each, the last once.
        let (until, label) = cutoffs[(run - 1) / 2];
        let started = Instant::now();
        let results = experiments
            .get_experiment_results(authed(results_request("big", until), &token))
            .await?
            .into_inner();
        let elapsed = started.elapsed();
        let units: Vec<u64> = results.exposures.iter().map(|e| e.units).collect();
        let rates: Vec<f64> = results.metrics[0]
            .variations
            .iter()
            .map(|v| v.mean)
            .collect();
        println!(
            "results run {run}, as of {label}: {elapsed:.2?} (2 metrics; contexts per variation {units:?}, \
             {} excluded, conversion {rates:.4?}, srm p {:.3})",
            results.multiple_exposure_contexts, results.srm_p_value
        );
    }
    db.close().await?;
    Ok(())
}
