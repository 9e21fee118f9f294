//! Prometheus metrics of one server instance, served in the text format on `/metrics`.
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms). Label
//! values are bounded: environments are `project/environment` keys, which an operator
//! creates; flag keys and contexts never become labels.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets from 50 µs to 2.5 s: evaluations take microseconds, propagation
/// milliseconds, and both must show their tails.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Every metric of the instance.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Flags evaluated, by environment and RPC (`Evaluate`, `EvaluateAll`, `Watch`).
    pub evaluations: IntCounterVec,
    /// Evaluation RPCs answered, by RPC and gRPC code (`OK` or the error's name).
    pub rpc_requests: IntCounterVec,
    /// Time to answer an evaluation RPC, by RPC.
    pub rpc_latency: HistogramVec,
    /// Open Sync and Watch streams, by kind.
    pub active_streams: IntGaugeVec,
    /// Calls and streams refused because the instance was at a limit, by reason
    /// (`inflight`, `streams`, `streams_per_key`).
    pub shed_requests: IntCounterVec,
    /// Lookups per cache layer (`l1` rulesets in memory, `l2` Redis snapshots, `l3` HTTP
    /// snapshots answered `304`) and result (`hit`, `miss`).
    pub cache_requests: IntCounterVec,
    /// Time from a change's commit to the instance pushing it to its streams.
    pub propagation_lag: HistogramVec,
    /// Errors talking to Redis, by operation.
    pub redis_errors: IntCounterVec,
    /// Errors talking to the database, by operation.
    pub database_errors: IntCounterVec,
    /// Environment version held in memory, by environment.
    pub environment_version: IntGaugeVec,
    /// 1 while the Redis change-notice subscription is up.
    pub redis_connected: IntGauge,
    /// 1 when the instance is configured with Redis.
    pub redis_configured: IntGauge,
    /// Analytics events stored, by environment and type (`exposure`, `track`, `summary`).
    pub events: IntCounterVec,
    /// Event batches published, by result (`stored`, or `duplicate`: a retry, not stored
    /// again).
    pub event_batches: IntCounterVec,
    /// Rulesets compiled, by how (`full`: every flag; `patch`: only the changed ones, the
    /// others shared) and what for (`serve`: held and served; `validate`: checking a write).
    pub ruleset_builds: IntCounterVec,
    /// 1 for each alert active on a running experiment (kind `guardrail_regressed`,
    /// `significance_reached`, `sample_ratio_mismatch`), by environment, experiment and kind;
    /// removed when the alert clears or the experiment stops. Experiments are created by
    /// operators, and only those with an active alert have a series.
    pub experiment_alerts: IntGaugeVec,
    /// Experiment alerts raised for the first time, by environment and kind (counted by the
    /// instance that recorded them).
    pub experiment_alerts_raised: IntCounterVec,
    /// Due scheduled changes this instance handled, by outcome: `applied`, `failed` (no
    /// longer valid: not applied), `taken` (another instance applied it first).
    pub scheduled_changes: IntCounterVec,
    /// Due ramp steps this instance handled, by outcome: `advanced`, `rolled_back` (a
    /// guardrail regressed), `paused` (the step no longer validates), `taken` (another
    /// instance took it first).
    pub ramp_steps: IntCounterVec,
    /// Guarded ramps this instance rolled back because a guardrail regressed, by environment
    /// (`project/environment`).
    pub ramp_rollbacks: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Metric definitions are static and valid; a failure here is a programming error
        // caught by the tests, so fall back to an unregistered metric rather than panic.
        fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|err| unreachable_metric(name, &err));
            register(registry, &metric, name);
            metric
        }
        fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
            let metric = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .unwrap_or_else(|err| unreachable_metric(name, &err));
            register(registry, &metric, name);
            metric
        }
        fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|err| unreachable_metric(name, &err));
            register(registry, &metric, name);
            metric
        }
        let redis_connected = IntGauge::new(
            "vexil_redis_connected",
            "1 while the Redis change-notice subscription is up",
        )
        .unwrap_or_else(|err| unreachable_metric("vexil_redis_connected", &err));
        register(&registry, &redis_connected, "vexil_redis_connected");
        let redis_configured = IntGauge::new(
            "vexil_redis_configured",
            "1 when the instance is configured with Redis",
        )
        .unwrap_or_else(|err| unreachable_metric("vexil_redis_configured", &err));
        register(&registry, &redis_configured, "vexil_redis_configured");
        Metrics {
            evaluations: counter(
                &registry,
                "vexil_evaluations_total",
                "Flags evaluated, by environment and RPC",
                &["environment", "rpc"],
            ),
            rpc_requests: counter(
                &registry,
                "vexil_rpc_requests_total",
                "Evaluation and sync RPCs answered, by RPC and gRPC code",
                &["rpc", "code"],
            ),
            rpc_latency: histogram(
                &registry,
                "vexil_rpc_duration_seconds",
                "Time to answer an evaluation RPC, by RPC",
                &["rpc"],
            ),
            active_streams: gauge_vec(
                &registry,
                "vexil_active_streams",
                "Open Sync and Watch streams",
                &["kind"],
            ),
            shed_requests: counter(
                &registry,
                "vexil_requests_shed_total",
                "Calls and streams refused because the instance was at a limit, by reason",
                &["reason"],
            ),
            cache_requests: counter(
                &registry,
                "vexil_cache_requests_total",
                "Lookups per cache layer (l1 memory, l2 Redis, l3 HTTP) and result",
                &["layer", "result"],
            ),
            propagation_lag: histogram(
                &registry,
                "vexil_propagation_lag_seconds",
                "Time from a change's commit to this instance pushing it to its streams",
                &["source"],
            ),
            redis_errors: counter(
                &registry,
                "vexil_redis_errors_total",
                "Errors talking to Redis, by operation",
                &["operation"],
            ),
            database_errors: counter(
                &registry,
                "vexil_database_errors_total",
                "Errors talking to the database, by operation",
                &["operation"],
            ),
            environment_version: gauge_vec(
                &registry,
                "vexil_environment_version",
                "Environment version held in memory",
                &["environment"],
            ),
            events: counter(
                &registry,
                "vexil_events_total",
                "Analytics events stored, by environment and type (exposure, track, summary)",
                &["environment", "type"],
            ),
            event_batches: counter(
                &registry,
                "vexil_event_batches_total",
                "Event batches published, by result (stored, duplicate)",
                &["result"],
            ),
            ruleset_builds: counter(
                &registry,
                "vexil_ruleset_builds_total",
                "Rulesets compiled, by how (full, patch) and what for (serve, validate)",
                &["how", "purpose"],
            ),
            experiment_alerts: gauge_vec(
                &registry,
                "vexil_experiment_alerts",
                "1 for each alert active on a running experiment, by environment, experiment and kind",
                &["environment", "experiment", "kind"],
            ),
            experiment_alerts_raised: counter(
                &registry,
                "vexil_experiment_alerts_raised_total",
                "Experiment alerts raised for the first time, by environment and kind",
                &["environment", "kind"],
            ),
            scheduled_changes: counter(
                &registry,
                "vexil_scheduled_changes_total",
                "Due scheduled changes handled by this instance, by outcome (applied, failed, taken)",
                &["outcome"],
            ),
            ramp_steps: counter(
                &registry,
                "vexil_ramp_steps_total",
                "Due ramp steps handled by this instance, by outcome (advanced, rolled_back, paused, taken)",
                &["outcome"],
            ),
            ramp_rollbacks: counter(
                &registry,
                "vexil_ramp_rollbacks_total",
                "Guarded ramps rolled back by this instance because a guardrail regressed",
                &["environment"],
            ),
            redis_connected,
            redis_configured,
            registry,
        }
    }

    /// Counts a ruleset compiled `how` (`full`, `patch`) for `purpose` (`serve`, `validate`).
    pub fn ruleset_built(&self, how: &str, purpose: &str) {
        self.ruleset_builds.with_label_values(&[how, purpose]).inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Counts the answer of an RPC and its latency.
    pub fn observe_rpc(&self, rpc: &str, code: tonic::Code, seconds: f64) {
        self.rpc_requests
            .with_label_values(&[rpc, vexil_proto::code_name(code)])
            .inc();
        self.rpc_latency.with_label_values(&[rpc]).observe(seconds);
    }

    /// Runs an RPC's `call`, and counts its answer (OK, or the code of its error) and
    /// latency.
    pub async fn observed<T>(
        &self,
        rpc: &str,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let started = std::time::Instant::now();
        let result = call.await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.observe_rpc(rpc, code, started.elapsed().as_secs_f64());
        result
    }

    /// Counts `flags` evaluations served by `rpc` in an environment (`project/environment`).
    pub fn count_evaluations(&self, environment: &str, rpc: &str, flags: usize) {
        self.evaluations
            .with_label_values(&[environment, rpc])
            .inc_by(flags as u64);
    }

    /// Adds a metric kept by another part of the instance (the storage's replica reads).
    pub fn register_collector<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: &M,
        name: &str,
    ) {
        register(&self.registry, metric, name);
    }

    pub fn cache(&self, layer: &str, hit: bool) {
        self.cache_requests
            .with_label_values(&[layer, if hit { "hit" } else { "miss" }])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: &M,
    name: &str,
) {
    if let Err(err) = registry.register(Box::new(metric.clone())) {
        tracing::error!(metric = name, error = %err, "cannot register metric");
    }
}

#[cold]
fn unreachable_metric<M>(name: &str, err: &prometheus::Error) -> M {
    // Only reachable with an invalid static definition, which the unit test below rules out.
    tracing::error!(metric = name, error = %err, "invalid metric definition");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let metrics = Metrics::new();
        metrics
            .evaluations
            .with_label_values(&["default/production", "Evaluate"])
            .inc_by(3);
        metrics.observe_rpc("Evaluate", tonic::Code::Ok, 0.0002);
        metrics.cache("l1", true);
        let text = metrics.render();
        assert!(text.contains(
            "vexil_evaluations_total{environment=\"default/production\",rpc=\"Evaluate\"} 3"
        ));
        assert!(
            text.contains("vexil_rpc_duration_seconds_bucket{rpc=\"Evaluate\",le=\"0.00025\"} 1")
        );
        assert!(text.contains("vexil_cache_requests_total{layer=\"l1\",result=\"hit\"} 1"));
        assert!(text.contains("vexil_redis_connected 0"));
    }

    #[test]
    fn event_metrics_render() {
        let metrics = Metrics::new();
        metrics
            .events
            .with_label_values(&["default/production", "track"])
            .inc_by(2);
        metrics
            .event_batches
            .with_label_values(&["duplicate"])
            .inc();
        let text = metrics.render();
        assert!(
            text.contains(
                "vexil_events_total{environment=\"default/production\",type=\"track\"} 2"
            )
        );
        assert!(text.contains("vexil_event_batches_total{result=\"duplicate\"} 1"));
    }

    /// The example alert rules only name metrics that exist.
    #[test]
    fn alert_rules_name_existing_metrics() {
        let metrics = Metrics::new();
        // Give every labelled family a child so that it renders.
        metrics
            .evaluations
            .with_label_values(&["p/e", "Evaluate"])
            .inc();
        metrics.observe_rpc("Evaluate", tonic::Code::Ok, 0.001);
        metrics.active_streams.with_label_values(&["sync"]).inc();
        metrics.cache("l1", true);
        metrics
            .propagation_lag
            .with_label_values(&["notice"])
            .observe(0.01);
        metrics.redis_errors.with_label_values(&["publish"]).inc();
        metrics
            .scheduled_changes
            .with_label_values(&["failed"])
            .inc();
        metrics.ramp_steps.with_label_values(&["paused"]).inc();
        metrics.ramp_rollbacks.with_label_values(&["p/e"]).inc();
        metrics.database_errors.with_label_values(&["load"]).inc();
        metrics
            .environment_version
            .with_label_values(&["p/e"])
            .set(1);
        metrics
            .experiment_alerts
            .with_label_values(&["p/e", "x", "guardrail_regressed"])
            .set(1);
        metrics
            .experiment_alerts_raised
            .with_label_values(&["p/e", "guardrail_regressed"])
            .inc();
        let rendered = metrics.render();
        let rules = include_str!("../deploy/prometheus-alerts.yml");
        let mut named = 0;
        for (start, _) in rules.match_indices("vexil_") {
            let name: String = rules[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                rendered.contains(&format!("\n{name}{{"))
                    || rendered.contains(&format!("\n{name} ")),
                "the alert rules name `{name}`, which the server does not export"
            );
            named += 1;
        }
        assert!(named >= 6);
    }
}
