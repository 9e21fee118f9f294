//! The load test at the seeds' scale: 10,000 flags and 1,000 running experiments in one
//! environment, served by three `vexil-server` processes on a Postgres primary with a
//! streaming replica and a three-primary Redis Cluster (all started here, on loopback), while
//!
//! * local-evaluation SDK clients (`vexil-core`, streaming from the instances) evaluate at
//!   the rate of 1 billion evaluations a day, sped up by `--day-speedup`, over 20 million
//!   distinct contexts, sending their evaluation summaries and experiment exposures;
//! * a closed loop of remote `Evaluate` calls spread over the three instances measures
//!   throughput and latency;
//! * an admin writer toggles a flag every `--change-every` seconds, timed to a Sync stream on
//!   every instance, and a ramp on one flag steps through 1 % → 5 % → 25 % → 100 %;
//! * faults are injected: the Redis primary owning the notices' channel is killed, and the
//!   Postgres replica is stopped for a while and started again.
//!
//! At the end it reads the results of experiments and reports throughput, latency,
//! propagation, memory, database and Redis load, and availability, beside the seeds'
//! targets. Not part of the test command (it runs for minutes); `scripts/seeds-load.sh` builds
//! and runs it, and `--smoke` is a one-minute form at a tenth of the size.

mod measure;
mod services;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::evaluation_service_client::EvaluationServiceClient;
use vexil_proto::v1::experiment_service_client::ExperimentServiceClient;
use vexil_testing::{
    ServerProcess, authed, config_version, halves, metric, results_request, try_toggle,
};

use measure::{Latencies, Report};
use services::Services;

const PROJECT: &str = "default";
const ENV: &str = "production";
/// The seeds' volume: evaluations a day.
const EVALUATIONS_PER_DAY: f64 = 1e9;
/// Flags per ImportEnvironment call (the server takes up to 4 MiB a request).
const IMPORT_CHUNK: usize = 2_000;
/// The flag the ramp runs on (outside the experiments' flags and the toggled ones).
const RAMP_FLAG: &str = "ramp-flag";

#[derive(Debug, Parser)]
#[command(about = "Vexil at the seeds' scale: three instances, a Redis Cluster, a replica")]
struct Options {
    /// The vexil-server binary (default: the one beside this example's folder).
    #[arg(long, env = "VEXIL_SERVER_BIN")]
    server_bin: Option<std::path::PathBuf>,
    /// Seconds of the measured run, after the set-up.
    #[arg(long, default_value_t = 300.0)]
    seconds: f64,
    /// Flags in the environment.
    #[arg(long, default_value_t = 10_000)]
    flags: usize,
    /// Running experiments, each on a flag of its own.
    #[arg(long, default_value_t = 1_000)]
    experiments: usize,
    /// Distinct contexts the SDK clients evaluate for, each at least once when the run is
    /// long enough.
    #[arg(long, default_value_t = 20_000_000)]
    contexts: u64,
    /// How much faster than the seeds' day the SDK clients evaluate: 1 is 11,574
    /// evaluations a second (1 billion a day).
    #[arg(long, default_value_t = 6.0)]
    day_speedup: f64,
    /// Local-evaluation SDK clients, spread over the instances, one thread each.
    #[arg(long, default_value_t = 6)]
    sdk_clients: usize,
    /// Remote Evaluate calls in flight.
    #[arg(long, default_value_t = 24)]
    remote_concurrency: usize,
    /// Seconds between two admin changes.
    #[arg(long, default_value_t = 1.0)]
    change_every: f64,
    /// More options for every `vexil-server` (repeatable), such as
    /// `--server-option=--experiment-watch-interval=0`.
    #[arg(long = "server-option", allow_hyphen_values = true)]
    server_options: Vec<String>,
    /// Write the report (Markdown) to this file too.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// A one-minute run at a tenth of the size: 1,000 flags, 100 experiments, 2 million
    /// contexts.
    #[arg(long)]
    smoke: bool,
}

impl Options {
    fn scaled(mut self) -> Options {
        if self.smoke {
            self.seconds = self.seconds.min(60.0);
            self.flags = self.flags.min(1_000);
            self.experiments = self.experiments.min(100);
            self.contexts = self.contexts.min(2_000_000);
        }
        self
    }

    fn local_rate(&self) -> f64 {
        EVALUATIONS_PER_DAY / 86_400.0 * self.day_speedup
    }
}

fn flag_key(index: usize) -> String {
    format!("flag-{index:05}")
}

fn experiment_key(index: usize) -> String {
    format!("exp-{index:04}")
}

/// A bool flag, on, with one rule on `country` and a 50/50 rollout fallthrough: the flag of
/// vexil-server's load example.
fn flag(key: &str) -> Value {
    let mut flag: Value = serde_json::from_str(include_str!("../../../examples/bench_flag.json"))
        .expect("bench_flag.json is JSON");
    flag["key"] = key.into();
    flag
}

/// A ramp flag: off-variation false, fallthrough false, for the ramp to roll true out.
fn ramp_flag() -> Value {
    json!({
        "key": RAMP_FLAG,
        "kind": "bool",
        "variations": [true, false],
        "on": true,
        "off_variation": 1,
        "fallthrough": { "variation": 1 }
    })
}

/// A pseudo-random number from `seed` (splitmix64): the load needs spread, not quality.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse().scaled();
    let started = Instant::now();
    let services = Services::start(&options).await?;
    let report = run(&options, &services).await;
    services.stop().await;
    let report = report?;
    let text = report.markdown(&options, started.elapsed());
    println!("{text}");
    if let Some(path) = &options.report {
        std::fs::write(path, &text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

async fn run(options: &Options, services: &Services) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let token = services.root_token()?;
    let mut admin = AdminServiceClient::new(services.instances[0].channel().await?);
    let mut experiments = ExperimentServiceClient::new(services.instances[0].channel().await?);

    // Set-up: the flags, the experiments and their metric, the ramp's flag.
    let set_up = Instant::now();
    import_flags(&mut admin, &token, options.flags).await?;
    create_experiments(&mut experiments, &token, options.experiments).await?;
    report.set_up = set_up.elapsed();
    eprintln!(
        "set up {} flags and {} running experiments in {:?}",
        options.flags, options.experiments, report.set_up
    );

    // The SDK clients, ready on every instance.
    let server_key = services.sdk_key("server")?;
    let clients = sdk_clients(services, &server_key, options.sdk_clients).await?;
    let before = services.load_counters().await;
    let run_for = Duration::from_secs_f64(options.seconds);
    let stop = Arc::new(AtomicBool::new(false));

    // Local evaluations, one thread per client, paced to their share of the rate.
    let evaluated = Arc::new(AtomicU64::new(0));
    let local = local_evaluations(options, &clients, &stop, &evaluated);

    // Remote evaluations, closed loop.
    let mut remote = JoinSet::new();
    let remote_failures = Arc::new(AtomicU64::new(0));
    let channels: Vec<Channel> = futures_channels(services).await?;
    for task in 0..options.remote_concurrency {
        let channel = channels[task % channels.len()].clone();
        let (key, stop, failures) = (server_key.clone(), stop.clone(), remote_failures.clone());
        let (flags, contexts) = (options.flags, options.contexts);
        remote.spawn(async move {
            remote_loop(channel, key, task as u64, flags, contexts, stop, failures).await
        });
    }

    // Propagation: a Sync stream on every instance, timing each admin change.
    let propagation = measure::Propagation::open(services, &server_key).await?;

    // Admin changes and the ramp, with the faults, until the end of the run.
    let run_started = Instant::now();
    let ramp_steps = start_ramp(&mut admin, &token, run_for).await?;
    let mut faults = services.faults(run_for);
    let mut writers = Vec::new();
    for instance in &services.instances {
        writers.push(AdminServiceClient::new(instance.channel().await?));
    }
    let mut change = 0usize;
    let mut memory = measure::Memory::default();
    while run_started.elapsed() < run_for {
        let key = flag_key(options.experiments + change % (options.flags - options.experiments));
        let sent = Instant::now();
        propagation.expect(&key, sent);
        let writer = &mut writers[change % services.instances.len()];
        let toggled = try_toggle(
            writer,
            &token,
            &key,
            !(change / (options.flags - options.experiments)).is_multiple_of(2),
        )
        .await;
        propagation.written(&key, Instant::now());
        match toggled {
            Ok(()) => report.changes += 1,
            Err(err) => {
                report.failed_changes += 1;
                eprintln!("change {change} failed: {err}");
            }
        }
        change += 1;
        faults.step(run_started.elapsed(), &mut report).await;
        memory.sample(&services.instances);
        let next = sent + Duration::from_secs_f64(options.change_every);
        tokio::time::sleep_until(next.into()).await;
    }
    stop.store(true, Ordering::Relaxed);
    let run_took = run_started.elapsed();
    faults.heal(&mut report).await;

    let mut latencies = Latencies::default();
    while let Some(joined) = remote.join_next().await {
        latencies.merge(joined?);
    }
    let local_took = tokio::task::spawn_blocking(move || {
        local.into_iter().map(|t| t.join()).collect::<Vec<_>>()
    })
    .await?;
    let local_evaluations = evaluated.load(Ordering::Relaxed);
    memory.sample(&services.instances);
    // Let the last changes and ramp step arrive, then the clients send what they hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.propagation = propagation.finish();
    report.ramp_steps_seen = report.propagation.ramp_patches;
    report.ramp_steps = ramp_steps;
    let (flushed, stats) = tokio::task::spawn_blocking(move || {
        let all = clients.iter().all(|c| c.flush(Duration::from_secs(60)));
        let stats: Vec<vexil_core::EventStats> = clients.iter().map(|c| c.event_stats()).collect();
        for client in &clients {
            client.close();
        }
        (all, stats)
    })
    .await?;
    report.events_flushed = flushed;
    report.events_sent = stats.iter().map(|s| s.sent).sum();
    report.events_dropped = stats.iter().map(|s| s.dropped).sum();
    let after = services.load_counters().await;
    report.load = after.minus(&before, run_took);
    report.memory = memory;
    report.local_evaluations = local_evaluations;
    report.local_seconds = run_took.as_secs_f64();
    report.local_threads_ok = local_took.iter().all(Result::is_ok);
    report.distinct_contexts = local_evaluations.min(options.contexts);
    report.remote = latencies;
    report.remote_failures = remote_failures.load(Ordering::Relaxed);
    report.remote_seconds = run_took.as_secs_f64();
    report.server_metrics = services.server_metrics().await;

    // Experiment results at the end: the first read folds in what is not compacted yet.
    report.results = experiment_results(&mut experiments, &token, options.experiments).await?;
    Ok(report)
}

async fn futures_channels(services: &Services) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for instance in &services.instances {
        // Two HTTP/2 connections per instance.
        for _ in 0..2 {
            channels.push(instance.channel().await?);
        }
    }
    Ok(channels)
}

async fn import_flags(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    count: usize,
) -> anyhow::Result<()> {
    let mut flags: Vec<Value> = (0..count).map(|i| flag(&flag_key(i))).collect();
    flags.push(ramp_flag());
    for chunk in flags.chunks(IMPORT_CHUNK) {
        admin
            .import_environment(authed(
                pb::ImportEnvironmentRequest {
                    project_key: PROJECT.into(),
                    environment_key: ENV.into(),
                    ruleset_json: json!({ "flags": chunk, "segments": [] }).to_string(),
                    expected_version: None,
                },
                token,
            ))
            .await
            .context("import flags")?;
    }
    Ok(())
}

async fn create_experiments(
    experiments: &mut ExperimentServiceClient<Channel>,
    token: &str,
    count: usize,
) -> anyhow::Result<()> {
    experiments
        .create_metric(authed(
            pb::CreateMetricRequest {
                metric: Some(metric("conversion", "purchase", pb::MetricKind::Conversion)),
            },
            token,
        ))
        .await
        .context("create the metric")?;
    for index in 0..count {
        let created = experiments
            .create_experiment(authed(
                pb::CreateExperimentRequest {
                    experiment: Some(pb::Experiment {
                        project_key: PROJECT.into(),
                        environment_key: ENV.into(),
                        key: experiment_key(index),
                        flag_key: flag_key(index),
                        variations: halves(),
                        primary_metric: Some(pb::ExperimentMetric {
                            metric_key: "conversion".into(),
                            direction: pb::MetricDirection::Increase as i32,
                        }),
                        minimum_detectable_effect: 0.02,
                        baseline_mean: 0.3,
                        ..Default::default()
                    }),
                },
                token,
            ))
            .await
            .with_context(|| format!("create experiment {index}"))?
            .into_inner();
        experiments
            .start_experiment(authed(
                pb::StartExperimentRequest {
                    project_key: PROJECT.into(),
                    environment_key: ENV.into(),
                    key: created.key,
                    expected_version: created.version,
                },
                token,
            ))
            .await
            .with_context(|| format!("start experiment {index}"))?;
    }
    Ok(())
}

async fn sdk_clients(
    services: &Services,
    key: &str,
    count: usize,
) -> anyhow::Result<Vec<Arc<vexil_core::Client>>> {
    let endpoints: Vec<String> = services
        .instances
        .iter()
        .map(ServerProcess::endpoint)
        .collect();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|i| {
                let config = vexil_core::Config::new(key.clone())
                    .with_endpoint(endpoints[i % endpoints.len()].clone())
                    .with_sdk("seeds-load", "0");
                let client = vexil_core::Client::new(config)?;
                let status = client.wait_for_initialization(Duration::from_secs(60));
                anyhow::ensure!(
                    status == vexil_core::Status::Ready,
                    "SDK client {i} not ready: {status:?}"
                );
                Ok(Arc::new(client))
            })
            .collect()
    })
    .await?
}

/// One thread per client, each evaluating its share of the rate: flag `mix(n) % flags` for
/// context `user-<k>`, `k` walking the context space so that every context comes up once
/// before any comes up twice.
fn local_evaluations(
    options: &Options,
    clients: &[Arc<vexil_core::Client>],
    stop: &Arc<AtomicBool>,
    evaluated: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let threads = clients.len() as u64;
    let per_thread = options.local_rate() / threads as f64;
    clients
        .iter()
        .enumerate()
        .map(|(t, client)| {
            let (client, stop, evaluated) = (client.clone(), stop.clone(), evaluated.clone());
            let (flags, contexts) = (options.flags as u64, options.contexts);
            let experiments = options.experiments as u64;
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut n: u64 = 0;
                let mut context_index = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1_000 {
                        let key = format!("user-{context_index}");
                        let context = vexil_core::Context::user(&key).expect("a valid key");
                        // One evaluation in ten is of an experiment's flag, as many as the
                        // seeds' 1,000 experiments among 10,000 flags give.
                        let flag = mix(n ^ (t as u64) << 48) % flags;
                        let flag = if n.is_multiple_of(10) {
                            flag % experiments
                        } else {
                            flag
                        };
                        std::hint::black_box(client.bool_variation(
                            &flag_key(flag as usize),
                            &context,
                            false,
                        ));
                        n += 1;
                        context_index = (context_index + threads) % contexts;
                    }
                    evaluated.fetch_add(1_000, Ordering::Relaxed);
                    let due = Duration::from_secs_f64(n as f64 / per_thread);
                    if let Some(ahead) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(ahead);
                    }
                }
            })
        })
        .collect()
}

async fn remote_loop(
    channel: Channel,
    key: String,
    task: u64,
    flags: usize,
    contexts: u64,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) -> Latencies {
    let mut client = EvaluationServiceClient::new(channel);
    let mut latencies = Latencies::default();
    let mut n = task << 40;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let random = mix(n);
        let request = pb::EvaluateRequest {
            flag_key: flag_key((random % flags as u64) as usize),
            context: Some(pb::Context {
                kind: "user".into(),
                key: format!("user-{}", (random >> 20) % contexts),
                ..Default::default()
            }),
            default_value: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::BoolValue(false)),
            }),
            kind: pb::FlagKind::Bool as i32,
        };
        let sent = Instant::now();
        match client.evaluate(authed(request, &key)).await {
            Ok(_) => latencies.record(sent.elapsed()),
            Err(_) => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    latencies
}

/// Starts the ramp: four steps, the first three each a fifth of the run; returns the steps.
async fn start_ramp(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    run: Duration,
) -> anyhow::Result<usize> {
    let version = config_version(admin, token, RAMP_FLAG).await;
    let step = |percent: f64| pb::RampStep {
        percent,
        duration: prost_types::Duration::try_from(run / 5).ok(),
    };
    let steps = vec![step(1.0), step(5.0), step(25.0), step(100.0)];
    let count = steps.len();
    admin
        .start_ramp(authed(
            pb::StartRampRequest {
                project_key: PROJECT.into(),
                environment_key: ENV.into(),
                key: RAMP_FLAG.into(),
                variation: 0,
                baseline: 1,
                steps,
                expected_version: version,
                ..Default::default()
            },
            token,
        ))
        .await
        .context("start the ramp")?;
    Ok(count)
}

/// Reads the results of twenty experiments spread over all of them, timing each read.
async fn experiment_results(
    experiments: &mut ExperimentServiceClient<Channel>,
    token: &str,
    count: usize,
) -> anyhow::Result<measure::ResultsReads> {
    let mut reads = measure::ResultsReads::default();
    let step = (count / 20).max(1);
    for index in (0..count).step_by(step) {
        let started = Instant::now();
        let results = experiments
            .get_experiment_results(authed(results_request(&experiment_key(index), None), token))
            .await
            .with_context(|| format!("results of experiment {index}"))?
            .into_inner();
        reads.record(started.elapsed(), &results);
    }
    Ok(reads)
}
