//! What the load test measures, and its report.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use vexil_proto::v1 as pb;
use vexil_proto::v1::sync_service_client::SyncServiceClient;
use vexil_testing::{ServerProcess, authed};

use crate::services::Services;
use crate::{EVALUATIONS_PER_DAY, Options, RAMP_FLAG};

/// Latency samples, in microseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    samples: Vec<u32>,
}

impl Latencies {
    pub fn record(&mut self, took: Duration) {
        self.samples
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    pub fn count(&self) -> usize {
        self.samples.len()
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile(sorted: &[u32], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
    }

    /// p50, p95, p99 and the maximum, in milliseconds.
    pub fn summary(&self) -> [f64; 4] {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        [
            Self::percentile(&sorted, 50.0),
            Self::percentile(&sorted, 95.0),
            Self::percentile(&sorted, 99.0),
            Self::percentile(&sorted, 100.0),
        ]
    }
}

/// A Sync stream on every instance, timing the arrival of each admin change.
pub struct Propagation {
    expected: Arc<Mutex<HashMap<String, Instant>>>,
    /// When each change's admin call returned.
    written: Mutex<HashMap<String, Instant>>,
    /// Each change's arrivals: its key, since the call was made, and when.
    arrived: Arc<Mutex<Vec<(String, Duration, Instant)>>>,
    ramp_patches: Arc<Mutex<usize>>,
    changes: Mutex<usize>,
    instances: usize,
    streams: JoinSet<()>,
}

/// The propagation figures of a run.
#[derive(Debug, Default)]
pub struct PropagationFigures {
    /// From just before the admin call.
    pub deliveries: Latencies,
    /// From the admin call's return (0 when the change arrived before it returned).
    pub after_write: Latencies,
    pub expected: usize,
    pub ramp_patches: usize,
}

impl Propagation {
    pub async fn open(services: &Services, key: &str) -> anyhow::Result<Propagation> {
        let expected: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
        let arrived: Arc<Mutex<Vec<(String, Duration, Instant)>>> = Default::default();
        let ramp_patches: Arc<Mutex<usize>> = Default::default();
        let mut streams = JoinSet::new();
        for (index, instance) in services.instances.iter().enumerate() {
            let mut sync = SyncServiceClient::new(instance.channel().await?)
                .max_decoding_message_size(256 << 20);
            let mut stream = sync
                .sync(authed(
                    pb::SyncRequest {
                        version: 0,
                        sdk_name: "seeds-load".into(),
                        sdk_version: "0".into(),
                    },
                    key,
                ))
                .await?
                .into_inner();
            let (expected, arrived, ramp) =
                (expected.clone(), arrived.clone(), ramp_patches.clone());
            streams.spawn(async move {
                while let Ok(Some(message)) = stream.message().await {
                    let Some(pb::sync_response::Event::Patch(patch)) = message.event else {
                        continue;
                    };
                    let now = Instant::now();
                    for flag in &patch.upserted_flags {
                        if flag.key == RAMP_FLAG && index == 0 {
                            *ramp.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        }
                        let sent = expected
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&flag.key)
                            .copied();
                        if let Some(sent) = sent {
                            arrived.lock().unwrap_or_else(|e| e.into_inner()).push((
                                flag.key.clone(),
                                now - sent,
                                now,
                            ));
                        }
                    }
                }
            });
        }
        Ok(Propagation {
            expected,
            written: Mutex::new(HashMap::new()),
            arrived,
            ramp_patches,
            changes: Mutex::new(0),
            instances: services.instances.len(),
            streams,
        })
    }

    /// A change of `key` is about to be made, at `sent`.
    pub fn expect(&self, key: &str, sent: Instant) {
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), sent);
        *self.changes.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// The admin call changing `key` returned, at `at`.
    pub fn written(&self, key: &str, at: Instant) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), at);
    }

    pub fn finish(mut self) -> PropagationFigures {
        self.streams.abort_all();
        let changes = *self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let arrived = std::mem::take(&mut *self.arrived.lock().unwrap_or_else(|e| e.into_inner()));
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut deliveries = Latencies::default();
        let mut after_write = Latencies::default();
        for (key, since_sent, at) in arrived {
            deliveries.record(since_sent);
            if let Some(returned) = written.get(&key) {
                after_write.record(at.saturating_duration_since(*returned));
            }
        }
        let ramp_patches = *self.ramp_patches.lock().unwrap_or_else(|e| e.into_inner());
        PropagationFigures {
            deliveries,
            after_write,
            expected: changes * self.instances,
            ramp_patches,
        }
    }
}

/// The largest resident memory of each instance over the run, KiB.
#[derive(Debug, Default)]
pub struct Memory {
    pub max_kib: Vec<u64>,
}

impl Memory {
    pub fn sample(&mut self, instances: &[ServerProcess]) {
        self.max_kib.resize(instances.len(), 0);
        for (max, instance) in self.max_kib.iter_mut().zip(instances) {
            *max = (*max).max(instance.rss_kib().unwrap_or(0));
        }
    }
}

/// Counters of the stores: the Postgres primary's (transactions, rows read, rows written,
/// blocks read from disk), Redis's commands and memory over the nodes.
#[derive(Debug, Default, Clone)]
pub struct LoadCounters {
    pub primary: [i64; 4],
    /// Commands processed, by node port.
    pub redis_commands: BTreeMap<u16, i64>,
    pub redis_memory: i64,
}

/// Store load per second over the run.
#[derive(Debug, Default)]
pub struct StoreLoad {
    pub primary: [f64; 4],
    pub redis_commands: f64,
    pub redis_memory: i64,
}

impl LoadCounters {
    pub fn minus(&self, before: &LoadCounters, over: Duration) -> StoreLoad {
        let seconds = over.as_secs_f64();
        let rate = |a: &[i64; 4], b: &[i64; 4]| {
            let mut out = [0.0; 4];
            for i in 0..4 {
                out[i] = (a[i] - b[i]) as f64 / seconds;
            }
            out
        };
        StoreLoad {
            primary: rate(&self.primary, &before.primary),
            // A node killed and started again counts from zero: only the nodes that ran
            // throughout are compared.
            redis_commands: self
                .redis_commands
                .iter()
                .filter_map(|(port, after)| {
                    let before = before.redis_commands.get(port)?;
                    (after >= before).then(|| (after - before) as f64)
                })
                .sum::<f64>()
                / seconds,
            redis_memory: self.redis_memory,
        }
    }
}

/// Timed reads of experiment results.
#[derive(Debug, Default)]
pub struct ResultsReads {
    pub times: Latencies,
    pub units: Vec<u64>,
}

impl ResultsReads {
    pub fn record(&mut self, took: Duration, results: &pb::ExperimentResults) {
        self.times.record(took);
        self.units
            .push(results.exposures.iter().map(|v| v.units).sum::<u64>());
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub set_up: Duration,
    pub local_evaluations: u64,
    pub local_seconds: f64,
    pub local_threads_ok: bool,
    pub distinct_contexts: u64,
    pub events_flushed: bool,
    /// Events the SDK clients sent, and dropped because their queue was full.
    pub events_sent: u64,
    pub events_dropped: u64,
    pub remote: Latencies,
    pub remote_failures: u64,
    pub remote_seconds: f64,
    pub propagation: PropagationFigures,
    pub changes: usize,
    pub failed_changes: usize,
    pub ramp_steps: usize,
    pub ramp_steps_seen: usize,
    pub memory: Memory,
    pub load: StoreLoad,
    pub server_metrics: BTreeMap<String, f64>,
    pub results: ResultsReads,
    pub faults: Vec<String>,
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    fn metric(&self, name: &str) -> f64 {
        self.server_metrics.get(name).copied().unwrap_or(0.0)
    }

    pub fn markdown(&self, options: &Options, total: Duration) -> String {
        let mut out = String::new();
        let day_rate = EVALUATIONS_PER_DAY / 86_400.0;
        let local_rate = self.local_evaluations as f64 / self.local_seconds;
        let remote_rate = self.remote.count() as f64 / self.remote_seconds;
        let attempted = self.remote.count() as f64 + self.remote_failures as f64;
        let availability = 100.0 * self.remote.count() as f64 / attempted.max(1.0);
        let [r50, r95, r99, rmax] = self.remote.summary();
        let [p50, p95, p99, pmax] = self.propagation.deliveries.summary();
        let [w50, w95, w99, _] = self.propagation.after_write.summary();
        let [x50, _, _, xmax] = self.results.times.summary();
        let row = |out: &mut String, what: &str, figure: String, target: &str| {
            let _ = writeln!(out, "| {what} | {figure} | {target} |");
        };
        let _ = writeln!(
            out,
            "{} flags, {} running experiments, 3 instances, a 3-primary Redis Cluster, a \
             Postgres primary + streaming replica; {:.0} s measured after {:.0} s of set-up \
             ({:.0} s in all).\n",
            thousands(options.flags as f64),
            thousands(options.experiments as f64),
            self.local_seconds,
            self.set_up.as_secs_f64(),
            total.as_secs_f64()
        );
        let _ = writeln!(out, "| measure | figure | seeds' target |\n|---|---|---|");
        row(
            &mut out,
            "local evaluations (SDK clients, summaries and exposures on)",
            format!(
                "{} in {:.0} s: {}/s, {:.1}× the rate of 1 billion a day ({} distinct contexts)",
                thousands(self.local_evaluations as f64),
                self.local_seconds,
                thousands(local_rate),
                local_rate / day_rate,
                thousands(self.distinct_contexts as f64)
            ),
            "1B/day (11,574/s) from 20M contexts",
        );
        row(
            &mut out,
            "events stored (exposures, summaries)",
            format!(
                "{} exposures, {} summaries; the clients sent {} and dropped {} (queue full){}",
                thousands(self.sum_metric("vexil_events_total", "type=\"exposure\"")),
                thousands(self.sum_metric("vexil_events_total", "type=\"summary\"")),
                thousands(self.events_sent as f64),
                thousands(self.events_dropped as f64),
                if self.events_flushed {
                    ""
                } else {
                    " (some clients could not flush)"
                }
            ),
            "—",
        );
        row(
            &mut out,
            "remote `Evaluate`, closed loop over 3 instances",
            format!(
                "{}/s in all ({}/s per instance), {} in flight",
                thousands(remote_rate),
                thousands(remote_rate / 3.0),
                options.remote_concurrency
            ),
            "100,000/s per instance",
        );
        row(
            &mut out,
            "remote `Evaluate` latency",
            format!("p50 {r50:.2}, p95 {r95:.2}, p99 {r99:.2}, max {rmax:.1} ms"),
            "< 50 ms p95",
        );
        row(
            &mut out,
            "availability of remote evaluations, faults included",
            format!(
                "{availability:.4} % ({} failed of {})",
                self.remote_failures,
                thousands(attempted)
            ),
            "99.99 %",
        );
        row(
            &mut out,
            "propagation of admin changes to a Sync stream on each instance",
            format!(
                "p50 {p50:.1}, p95 {p95:.1}, p99 {p99:.1}, max {pmax:.0} ms; {} of {} deliveries \
                 ({} changes, {} failed)",
                self.propagation.deliveries.count(),
                self.propagation.expected,
                self.changes,
                self.failed_changes
            ),
            "< 1 s",
        );
        row(
            &mut out,
            "the same from the admin call's return (0 when a stream had it first)",
            format!("p50 {w50:.1}, p95 {w95:.1}, p99 {w99:.1} ms"),
            "< 1 s",
        );
        row(
            &mut out,
            "ramp steps applied by the server and streamed",
            format!("{} of {}", self.ramp_steps_seen, self.ramp_steps),
            "—",
        );
        let memory: Vec<String> = self
            .memory
            .max_kib
            .iter()
            .map(|kib| format!("{:.0}", *kib as f64 / 1024.0))
            .collect();
        row(
            &mut out,
            "server memory, largest RSS per instance",
            format!("{} MiB", memory.join(", ")),
            "—",
        );
        let [commits, read, written, blocks] = self.load.primary;
        row(
            &mut out,
            "Postgres primary, per second",
            format!(
                "{} transactions, {} rows read, {} rows written, {} blocks from disk",
                thousands(commits),
                thousands(read),
                thousands(written),
                thousands(blocks)
            ),
            "—",
        );
        row(
            &mut out,
            "reads that could go to the Postgres replica",
            format!(
                "{} answered by it, {} by the primary because it was behind, {} unavailable, \
                 {} while it was down",
                self.metric("vexil_replica_reads_total{outcome=\"replica\"}"),
                self.metric("vexil_replica_reads_total{outcome=\"behind\"}"),
                self.metric("vexil_replica_reads_total{outcome=\"unavailable\"}"),
                self.metric("vexil_replica_reads_total{outcome=\"down\"}"),
            ),
            "—",
        );
        row(
            &mut out,
            "Redis Cluster",
            format!(
                "{} commands/s over the nodes that ran throughout, {:.1} MiB used at the end; {} \
                 errors counted by the instances",
                thousands(self.load.redis_commands),
                self.load.redis_memory as f64 / (1024.0 * 1024.0),
                self.sum_metric("vexil_redis_errors_total", "")
            ),
            "—",
        );
        row(
            &mut out,
            "experiment results at the end (20 experiments, one after the other; the first \
             read folds in the events not compacted yet)",
            format!(
                "median {x50:.0} ms, slowest {xmax:.0} ms; {} units per experiment on average",
                thousands(
                    self.results.units.iter().sum::<u64>() as f64
                        / self.results.units.len().max(1) as f64
                )
            ),
            "—",
        );
        let _ = writeln!(out, "\nFaults injected: {}.", self.faults.join("; "));
        if !self.local_threads_ok {
            let _ = writeln!(
                out,
                "\nAn SDK client thread panicked: the figures are partial."
            );
        }
        out
    }

    /// The sum of the metric lines named `name` whose labels contain `label` ("" for all).
    fn sum_metric(&self, name: &str, label: &str) -> f64 {
        self.server_metrics
            .iter()
            .filter(|(line, _)| line.split('{').next() == Some(name) && line.contains(label))
            .map(|(_, value)| value)
            .sum()
    }
}
