//! Metrics (per project) and experiments (per environment).
//!
//! An experiment's design is stored as one JSON document (`spec`) next to the columns it
//! is filtered by (key, flag, status). Its steps (create, start, stop, decide) each write
//! the experiment, its audit entry and, when the step changes what the flag serves, the
//! flag's configuration with its own audit entry, in one transaction. A step that changes
//! the flag bumps the environment first (taking its lock, and checking the storage guards
//! the service validated the new ruleset against), like every other flag write.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::db::{Row, Tx, args};
use super::events::env_id;
use super::flags::{fetch_config, rewrite_config};
use super::history::Stamp;
use super::projects::page_from_rows;
use super::{
    AuditRecord, FlagConfig, FlagConfiguration, Millis, Page, PageRequest, QueryBuilder,
    ResourceKind, Result, Serve, Storage, StorageError, bump_env, check_version, from_text,
    not_found, now_millis, parsed_column, project_id, to_audit, to_text,
};

/// How a metric aggregates a context's events after its first exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// 1 when the context sent the event at least once, else 0.
    Conversion,
    /// How many times it sent the event.
    Count,
    /// The sum of the event's values.
    Sum,
    /// The mean of the event's values, over the contexts that sent it.
    Mean,
    /// Σ over contexts of the event's values / Σ of the denominator event's (each event
    /// without a value counting 1): revenue per session, clicks per page view.
    Ratio,
    /// The p-quantile across contexts of each context's mean value, over the contexts that
    /// sent a valued event: p50 or p90 latency.
    Quantile,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Conversion => "conversion",
            MetricKind::Count => "count",
            MetricKind::Sum => "sum",
            MetricKind::Mean => "mean",
            MetricKind::Ratio => "ratio",
            MetricKind::Quantile => "quantile",
        }
    }

    pub fn parse(text: &str) -> Option<MetricKind> {
        Some(match text {
            "conversion" => MetricKind::Conversion,
            "count" => MetricKind::Count,
            "sum" => MetricKind::Sum,
            "mean" => MetricKind::Mean,
            "ratio" => MetricKind::Ratio,
            "quantile" => MetricKind::Quantile,
            _ => return None,
        })
    }
}

/// A metric of a project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub project_key: String,
    pub key: String,
    pub name: String,
    pub description: String,
    pub event_name: String,
    pub kind: MetricKind,
    /// The denominator's event of a ratio metric; empty otherwise.
    pub denominator_event_name: String,
    /// The level p of a quantile metric, in (0, 1); 0 otherwise.
    pub quantile: f64,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A metric to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    pub key: String,
    pub name: String,
    pub description: String,
    pub event_name: String,
    pub kind: MetricKind,
    /// Required for a ratio metric, empty otherwise.
    pub denominator_event_name: String,
    /// Required for a quantile metric (in (0, 1)), 0 otherwise.
    pub quantile: f64,
}

/// Which way a metric should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricDirection {
    Increase,
    Decrease,
}

/// A metric as an experiment measures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentMetric {
    pub metric_key: String,
    pub direction: MetricDirection,
}

/// A variation of an experiment and its weight (thousandths of a percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedVariation {
    pub variation: u32,
    pub weight: u32,
}

/// The design of an experiment: everything chosen at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub name: String,
    pub hypothesis: String,
    pub flag_key: String,
    /// Empty for the fallthrough.
    pub rule_id: String,
    /// Thousandths of a percent, 1 to 100000.
    pub traffic_allocation: u32,
    /// Empty: the experiment's key.
    pub layer: String,
    pub layer_offset: u32,
    /// The first is the control.
    pub variations: Vec<WeightedVariation>,
    /// Canonical `{"context_kind", "attribute"}`, or null for the default.
    pub bucket_by: Option<Value>,
    pub primary_metric: ExperimentMetric,
    pub guardrail_metrics: Vec<ExperimentMetric>,
    pub alpha: f64,
    pub power: f64,
    pub minimum_detectable_effect: f64,
    pub baseline_mean: f64,
    pub baseline_std_dev: Option<f64>,
    /// Contexts needed per variation.
    pub required_sample_size: u64,
    /// Test each metric one way: the primary for an improvement, guardrails for a regression.
    #[serde(default)]
    pub one_sided: bool,
    /// Stop the experiment (serving control to everyone) when a guardrail regresses.
    #[serde(default)]
    pub stop_on_guardrail_regression: bool,
    /// CUPED: adjust conversion, count and sum metrics by the same metric over this many days
    /// before each context's first exposure; 0: off.
    #[serde(default)]
    pub cuped_lookback_days: u32,
}

/// A condition of a running experiment that someone should look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentAlertRecord {
    /// `guardrail_regressed`, `significance_reached` or `sample_ratio_mismatch`.
    pub kind: String,
    /// The metric concerned; empty for a sample-ratio mismatch.
    pub metric_key: String,
    /// The treatment concerned; 0 for a sample-ratio mismatch.
    pub variation: u32,
    /// What happened, for people.
    pub message: String,
}

impl ExperimentSpec {
    /// Every metric the experiment measures, primary first.
    pub fn metrics(&self) -> impl Iterator<Item = &ExperimentMetric> {
        std::iter::once(&self.primary_metric).chain(&self.guardrail_metrics)
    }
}

/// Where an experiment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Running,
    Stopped,
}

impl ExperimentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<ExperimentStatus> {
        Some(match text {
            "draft" => ExperimentStatus::Draft,
            "running" => ExperimentStatus::Running,
            "stopped" => ExperimentStatus::Stopped,
            _ => return None,
        })
    }
}

/// The decision taken on an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub variation: u32,
    pub rationale: String,
    pub decided_by: String,
    pub decided_at: Millis,
    pub rolled_back: bool,
    pub applied: bool,
}

/// An experiment of one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub project_key: String,
    pub environment_key: String,
    pub key: String,
    pub status: ExperimentStatus,
    pub spec: ExperimentSpec,
    /// The serve the experiment's rule or fallthrough had before the start.
    pub previous_serve: Option<Serve>,
    pub decision: Option<Decision>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
}

/// Filters of an experiment listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentFilter {
    pub status: Option<ExperimentStatus>,
    pub flag_key: Option<String>,
}

/// One step of an experiment's life, written by [`Storage::advance_experiment`].
#[derive(Debug, Clone)]
pub struct ExperimentStep {
    /// The audit action, such as `experiment.start`.
    pub action: &'static str,
    /// The statuses the step may start from.
    pub from: &'static [ExperimentStatus],
    pub to: ExperimentStatus,
    /// The serve before the start, recorded by the start.
    pub previous_serve: Option<Serve>,
    pub decision: Option<Decision>,
    /// The flag configuration to write, and the configuration version it was computed
    /// from.
    pub config: Option<(i64, FlagConfiguration)>,
}

const METRIC_COLUMNS: &str = "p.key, m.key, m.name, m.description, m.event_name, m.kind, \
     m.version, m.created_at, m.updated_at, m.denominator_event_name, m.quantile";
const METRIC_FROM: &str = "metrics m JOIN projects p ON p.id = m.project_id";

fn metric_from_row(row: &Row) -> Result<Metric> {
    Ok(Metric {
        project_key: row.get(0)?,
        key: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        event_name: row.get(4)?,
        kind: parsed_column(row, 5, "metric kind", MetricKind::parse)?,
        version: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        denominator_event_name: row.get(9)?,
        quantile: row.get(10)?,
    })
}

const EXPERIMENT_COLUMNS: &str = "p.key, e.key, x.key, x.status, x.spec, x.previous_serve, \
     x.decision, x.version, x.created_at, x.updated_at, x.started_at, x.stopped_at";
const EXPERIMENT_FROM: &str = "experiments x JOIN environments e ON e.id = x.environment_id \
     JOIN projects p ON p.id = e.project_id";

fn experiment_from_row(row: &Row) -> Result<Experiment> {
    Ok(Experiment {
        project_key: row.get(0)?,
        environment_key: row.get(1)?,
        key: row.get(2)?,
        status: parsed_column(row, 3, "experiment status", ExperimentStatus::parse)?,
        spec: from_text(&row.get::<String>(4)?, "experiment spec")?,
        previous_serve: match row.get::<Option<String>>(5)? {
            Some(text) => Some(from_text(&text, "experiment previous serve")?),
            None => None,
        },
        decision: match row.get::<Option<String>>(6)? {
            Some(text) => Some(from_text(&text, "experiment decision")?),
            None => None,
        },
        version: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
        started_at: row.get(10)?,
        stopped_at: row.get(11)?,
    })
}

async fn fetch_metric(tx: &mut Tx, project: &str, key: &str) -> Result<Metric> {
    let sql = format!("SELECT {METRIC_COLUMNS} FROM {METRIC_FROM} WHERE p.key = $1 AND m.key = $2");
    match tx.fetch_optional(&sql, args![project, key]).await? {
        Some(row) => metric_from_row(&row),
        None => {
            project_id(tx, project).await?;
            Err(not_found(ResourceKind::Metric, key))
        }
    }
}

async fn fetch_experiment(tx: &mut Tx, env_id: i64, key: &str) -> Result<Experiment> {
    let sql = format!(
        "SELECT {EXPERIMENT_COLUMNS} FROM {EXPERIMENT_FROM} WHERE x.environment_id = $1 AND x.key = $2"
    );
    match tx.fetch_optional(&sql, args![env_id, key]).await? {
        Some(row) => experiment_from_row(&row),
        None => Err(not_found(ResourceKind::Experiment, key)),
    }
}

impl Storage {
    /// Defines a metric of a project, at version 1.
    pub async fn create_metric(
        &self,
        actor: &str,
        project: &str,
        new: &NewMetric,
    ) -> Result<Metric> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let project_id = project_id(&mut tx, project).await?;
        let name = if new.name.is_empty() {
            &new.key
        } else {
            &new.name
        };
        tx.execute(
            "INSERT INTO metrics (project_id, key, name, description, event_name, kind, version, \
             created_at, updated_at, denominator_event_name, quantile) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8, $9)",
            args![
                project_id,
                &new.key,
                name,
                &new.description,
                &new.event_name,
                new.kind.as_str(),
                now,
                &new.denominator_event_name,
                new.quantile,
            ],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::Metric, &new.key))?;
        let metric = fetch_metric(&mut tx, project, &new.key).await?;
        AuditRecord::new(
            actor,
            "metric.create",
            ResourceKind::Metric,
            &metric.key,
            now,
        )
        .scope(Some(project), None)
        .change(None, to_audit(&metric))
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(metric)
    }

    /// Returns one metric.
    pub async fn get_metric(&self, project: &str, key: &str) -> Result<Metric> {
        let mut tx = self.read().await?;
        fetch_metric(&mut tx, project, key).await
    }

    /// Lists a project's metrics ordered by key.
    pub async fn list_metrics(&self, project: &str, page: &PageRequest) -> Result<Page<Metric>> {
        let limit = page.effective_limit();
        let mut tx = self.read().await?;
        project_id(&mut tx, project).await?;
        let sql = format!(
            "SELECT {METRIC_COLUMNS} FROM {METRIC_FROM} WHERE p.key = $1 AND m.key > $2 \
             ORDER BY m.key LIMIT $3"
        );
        let rows = tx
            .fetch_all(
                &sql,
                args![project, page.cursor.clone().unwrap_or_default(), limit + 1],
            )
            .await?;
        page_from_rows(&rows, metric_from_row, limit, |m| m.key.clone())
    }

    /// Creates an experiment in DRAFT status, at version 1. The metrics it names must exist
    /// (checked in the same transaction).
    pub async fn create_experiment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        key: &str,
        spec: &ExperimentSpec,
    ) -> Result<Experiment> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        for metric in spec.metrics() {
            fetch_metric(&mut tx, project, &metric.metric_key).await?;
        }
        tx.execute(
            "INSERT INTO experiments (environment_id, key, flag_key, status, spec, version, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
            args![
                env_id,
                key,
                &spec.flag_key,
                ExperimentStatus::Draft.as_str(),
                to_text(spec),
                now,
            ],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::Experiment, key))?;
        let experiment = fetch_experiment(&mut tx, env_id, key).await?;
        AuditRecord::new(
            actor,
            "experiment.create",
            ResourceKind::Experiment,
            key,
            now,
        )
        .scope(Some(project), Some(env))
        .change(None, to_audit(&experiment))
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(experiment)
    }

    /// Returns one experiment.
    pub async fn get_experiment(&self, project: &str, env: &str, key: &str) -> Result<Experiment> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        fetch_experiment(&mut tx, env_id, key).await
    }

    /// Every running experiment of every environment, ordered by project, environment and key.
    pub async fn running_experiments(&self) -> Result<Vec<Experiment>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS} FROM {EXPERIMENT_FROM} WHERE x.status = $1 \
                     ORDER BY p.key, e.key, x.key"
                ),
                args![ExperimentStatus::Running.as_str()],
            )
            .await?;
        rows.iter().map(experiment_from_row).collect()
    }

    /// Records `alert` on experiment `key` unless it was raised before, with an audit entry
    /// (action `experiment.alert`, by `actor`) in the same transaction. Returns whether it is
    /// new: of several instances raising the same alert, exactly one gets `true`.
    pub async fn raise_experiment_alert(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        key: &str,
        alert: &ExperimentAlertRecord,
    ) -> Result<bool> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let inserted = tx
            .fetch_optional(
                "INSERT INTO experiment_alerts (experiment_id, kind, metric_key, variation, \
                 message, raised_at) \
                 SELECT id, $3, $4, $5, $6, $7 FROM experiments \
                 WHERE environment_id = $1 AND key = $2 \
                 ON CONFLICT (experiment_id, kind, metric_key, variation) DO NOTHING \
                 RETURNING raised_at",
                args![
                    env_id,
                    key,
                    &alert.kind,
                    &alert.metric_key,
                    i64::from(alert.variation),
                    &alert.message,
                    now,
                ],
            )
            .await?
            .is_some();
        if inserted {
            AuditRecord::new(
                actor,
                "experiment.alert",
                ResourceKind::Experiment,
                key,
                now,
            )
            .scope(Some(project), Some(env))
            .change(None, to_audit(alert))
            .write(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Lists an environment's experiments ordered by key.
    pub async fn list_experiments(
        &self,
        project: &str,
        env: &str,
        filter: &ExperimentFilter,
        page: &PageRequest,
    ) -> Result<Page<Experiment>> {
        let limit = page.effective_limit();
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let mut q = QueryBuilder::new(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM {EXPERIMENT_FROM} WHERE "
        ));
        let e = q.arg(env_id);
        let cursor = q.arg(page.cursor.clone().unwrap_or_default());
        q.push(&format!("x.environment_id = {e} AND x.key > {cursor}"));
        if let Some(status) = filter.status {
            let s = q.arg(status.as_str());
            q.push(&format!(" AND x.status = {s}"));
        }
        if let Some(flag) = &filter.flag_key {
            let f = q.arg(flag.as_str());
            q.push(&format!(" AND x.flag_key = {f}"));
        }
        let l = q.arg(limit + 1);
        q.push(&format!(" ORDER BY x.key LIMIT {l}"));
        let rows = tx.fetch_all(&q.sql, q.args).await?;
        page_from_rows(&rows, experiment_from_row, limit, |x| x.key.clone())
    }

    /// Takes an experiment one step in its life: checks its version and status, writes the
    /// new status (and the decision, the previous serve, the start or stop time), and, when
    /// the step carries a flag configuration, writes it too, all in one transaction with
    /// their audit entries. A configuration change bumps the environment (checking the
    /// guards) and fails with a conflict when the configuration moved since it was computed.
    pub async fn advance_experiment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        key: &str,
        expected_version: i64,
        step: &ExperimentStep,
    ) -> Result<(Experiment, Option<FlagConfig>)> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let bumped = match &step.config {
            Some(_) => Some(bump_env(&mut tx, project, env, now, self.guards()).await?),
            None => None,
        };
        let env_id = env_id(&mut tx, project, env).await?;
        let before = fetch_experiment(&mut tx, env_id, key).await?;
        check_version(
            ResourceKind::Experiment,
            key,
            expected_version,
            before.version,
        )?;
        if !step.from.contains(&before.status) {
            return Err(StorageError::FailedPrecondition(format!(
                "experiment `{key}` is {}: {} needs it {}",
                before.status.as_str(),
                step.action,
                step.from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let started_at = match step.to {
            ExperimentStatus::Running if before.started_at.is_none() => Some(now),
            _ => before.started_at,
        };
        let stopped_at = match (before.status, step.to) {
            (ExperimentStatus::Running, ExperimentStatus::Stopped) => Some(now),
            _ => before.stopped_at,
        };
        let previous_serve = step
            .previous_serve
            .as_ref()
            .or(before.previous_serve.as_ref())
            .map(to_text);
        let decision = step
            .decision
            .as_ref()
            .or(before.decision.as_ref())
            .map(to_text);
        tx.execute(
            "UPDATE experiments SET status = $3, previous_serve = $4, decision = $5, \
             started_at = $6, stopped_at = $7, version = version + 1, updated_at = $8 \
             WHERE environment_id = $1 AND key = $2",
            args![
                env_id,
                key,
                step.to.as_str(),
                previous_serve,
                decision,
                started_at,
                stopped_at,
                now,
            ],
        )
        .await?;
        let after = fetch_experiment(&mut tx, env_id, key).await?;
        let mut config_after = None;
        if let (Some(bumped), Some((config_version, update))) = (&bumped, &step.config) {
            let flag = &before.spec.flag_key;
            let (config_before, archived) = fetch_config(&mut tx, bumped.id, flag).await?;
            check_version(
                ResourceKind::FlagConfig,
                flag,
                *config_version,
                config_before.version,
            )?;
            let stamp = Stamp::new(actor, step.action, now);
            rewrite_config(&mut tx, bumped, flag, update, archived, stamp).await?;
            let (written, _) = fetch_config(&mut tx, bumped.id, flag).await?;
            AuditRecord::new(actor, step.action, ResourceKind::FlagConfig, flag, now)
                .scope(Some(project), Some(env))
                .change(to_audit(&config_before), to_audit(&written))
                .write(&mut tx)
                .await?;
            config_after = Some(written);
        }
        AuditRecord::new(actor, step.action, ResourceKind::Experiment, key, now)
            .scope(Some(project), Some(env))
            .change(to_audit(&before), to_audit(&after))
            .write(&mut tx)
            .await?;
        self.commit_and_notify(tx, project, bumped.as_slice())
            .await?;
        Ok((after, config_after))
    }
}
