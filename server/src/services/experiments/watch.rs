//! The watch of running experiments: every interval, one instance of the fleet (the holder
//! of the `experiment-watch` lease, which it renews each round, so that the watch moves only
//! when its holder stops) computes the results of every running experiment and turns their
//! alerts (a guardrail that regressed, the primary metric's always-valid test crossing its
//! boundary, a sample-ratio mismatch) into Prometheus gauges, one audit entry per alert, and,
//! for experiments that ask for it, a stop when a guardrail regresses. Computing every
//! experiment's results on every instance multiplied the work by the fleet's size: with 1,000
//! running experiments and three instances it took most of two cores.
//!
//! Only always-valid tests raise alerts, so reading results every interval is sound: their
//! false-positive rate does not grow with the number of looks.

use std::collections::HashSet;
use std::time::Duration;

use tonic::Status;
use vexil_proto::v1 as pb;

use super::{ExperimentApi, stop_plan};
use crate::experiment_results::compute_results;
use crate::metrics::Metrics;
use crate::storage::{Experiment, ExperimentAlertRecord, now_millis};

/// How often each instance watches the running experiments by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(120);

/// The actor of the audit entries and stops the watch writes.
pub const WATCH_ACTOR: &str = "vexil:experiment-watch";

/// The lease of the instance that watches.
const WATCH_LEASE: &str = "experiment-watch";

/// An active alert's gauge labels: environment (`project/environment`), experiment, kind.
type AlertLabels = [String; 3];

impl ExperimentApi {
    /// Watches the running experiments every `interval` until the task is dropped.
    pub async fn watch(self, metrics: Metrics, interval: Duration) {
        let holder = crate::live::instance_id();
        // Two rounds' worth: a round late by less than an interval keeps the lease.
        let ttl = i64::try_from(interval.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
        let mut active: HashSet<AlertLabels> = HashSet::new();
        // The first round one interval after start, not during it: start-up loads rulesets.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now_active = match self
                .storage
                .hold_lease(WATCH_LEASE, &holder, now_millis(), ttl)
                .await
            {
                Ok(true) => match self.watch_round(&metrics).await {
                    Ok(now_active) => now_active,
                    Err(err) => {
                        tracing::warn!(error = %err, "experiment watch round failed");
                        continue;
                    }
                },
                // Another instance watches: the gauges are its to show.
                Ok(false) => HashSet::new(),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the experiment watch lease");
                    continue;
                }
            };
            for gone in active.difference(&now_active) {
                let labels = [gone[0].as_str(), gone[1].as_str(), gone[2].as_str()];
                let _ = metrics.experiment_alerts.remove_label_values(&labels);
            }
            active = now_active;
        }
    }

    /// One round over every running experiment; returns the alerts active now. An
    /// experiment whose results cannot be computed is skipped (and logged), not the round.
    pub async fn watch_round(&self, metrics: &Metrics) -> Result<HashSet<AlertLabels>, Status> {
        let mut active = HashSet::new();
        for x in self.storage.running_experiments().await? {
            let results = match self.metric_definitions(&x.project_key, &x.spec).await {
                Ok(definitions) => {
                    compute_results(&self.storage, &x, &definitions, now_millis()).await
                }
                Err(err) => Err(err),
            };
            let results = match results {
                Ok(results) => results,
                Err(err) => {
                    tracing::warn!(experiment = %x.key, error = %err, "cannot watch experiment");
                    continue;
                }
            };
            let environment = format!("{}/{}", x.project_key, x.environment_key);
            let mut regressed = false;
            for alert in &results.alerts {
                let kind = vexil_proto::experiment_alert_kind_name(alert.kind);
                metrics
                    .experiment_alerts
                    .with_label_values(&[environment.as_str(), x.key.as_str(), kind])
                    .set(1);
                active.insert([environment.clone(), x.key.clone(), kind.to_owned()]);
                regressed |= alert.kind == pb::ExperimentAlertKind::GuardrailRegressed as i32;
                let record = ExperimentAlertRecord {
                    kind: kind.to_owned(),
                    metric_key: alert.metric_key.clone(),
                    variation: alert.variation,
                    message: alert.message.clone(),
                };
                let new = self
                    .storage
                    .raise_experiment_alert(
                        WATCH_ACTOR,
                        &x.project_key,
                        &x.environment_key,
                        &x.key,
                        &record,
                    )
                    .await?;
                if new {
                    metrics
                        .experiment_alerts_raised
                        .with_label_values(&[environment.as_str(), kind])
                        .inc();
                    tracing::warn!(
                        environment = %environment,
                        experiment = %x.key,
                        kind,
                        message = %alert.message,
                        "experiment alert"
                    );
                }
            }
            if regressed && x.spec.stop_on_guardrail_regression {
                self.stop_for_regression(&x).await;
            }
        }
        Ok(active)
    }

    /// Stops an experiment whose guardrail regressed, as its design asks. Another instance
    /// may have stopped it first: its version or status then no longer match, which is fine.
    async fn stop_for_regression(&self, x: &Experiment) {
        let stopped = self.advance(WATCH_ACTOR, x, stop_plan).await;
        match stopped {
            Ok(_) => tracing::warn!(
                experiment = %x.key,
                "experiment stopped: a guardrail regressed (stop_on_guardrail_regression)"
            ),
            Err(err) => tracing::info!(
                experiment = %x.key,
                error = %err,
                "experiment not stopped by this instance (already stopped or changed)"
            ),
        }
    }
}
