//! `vexil.v1.ExperimentService`: metrics, experiments, their results, and flag usage.
//!
//! Roles are those of the admin API: viewers read, editors write. Input is checked before
//! anything is stored, and a bad field is refused with `INVALID_ARGUMENT` naming it
//! (`experiment.variations[1].variation: …`). Starting, stopping and deciding change what
//! the flag serves: the new configuration is validated by the engine against the whole
//! environment, like every admin write, and written with the experiment's new status and
//! both audit entries in one transaction, under the storage guards (retried a few times
//! when the environment moved in between).
//!
//! Results are computed from SQL aggregates (sufficient statistics per variation, see
//! `storage/analytics.rs`) by the `vexil_stats` engine: Welch's t-test or the two-proportion
//! z-test, delta-method relative intervals, mSPRT always-valid p-values and confidence
//! sequences, a chi-squared sample-ratio check and Holm's correction across every treatment
//! and metric.

use std::collections::HashSet;

use serde_json::Value;
use tonic::{Request, Response, Status};
use vexil_proto::v1 as pb;
use vexil_proto::v1::experiment_service_server::ExperimentService;

use crate::auth::{Authenticator, Caller};
use crate::convert;
use crate::experiment_results::{compute_results, control, stats_kind};
use crate::limits;
use crate::live::Hub;
use crate::ruleset_changes::{RulesetChange, RulesetChecker};

mod watch;
use crate::storage::{
    self, Decision, EnvGuards, Experiment, ExperimentFilter, ExperimentMetric, ExperimentSpec,
    ExperimentStatus, ExperimentStep, FlagConfiguration, HOUR_MILLIS, MetricKind, NewMetric, Role,
    Serve, Storage, hour_of, now_millis,
};
pub use watch::{DEFAULT_WATCH_INTERVAL, WATCH_ACTOR};

/// Weights of a rollout sum to this (thousandths of a percent).
const TOTAL_WEIGHT: u32 = 100_000;
/// Most guardrail metrics of one experiment.
const MAX_GUARDRAILS: usize = 20;
/// Most variations of one experiment.
const MAX_EXPERIMENT_VARIATIONS: usize = 20;
/// Longest hypothesis or rationale, in characters.
const MAX_TEXT: usize = 4096;
/// Longest flag usage period (bounds the rows returned).
const MAX_USAGE_DAYS: i64 = 90;
const DAY_MILLIS: i64 = 24 * HOUR_MILLIS;

/// The experiment API over a storage.
#[derive(Debug, Clone)]
pub struct ExperimentApi {
    storage: Storage,
    auth: Authenticator,
    hub: Option<Hub>,
    checker: RulesetChecker,
}

type Reply<T> = Result<Response<T>, Status>;

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

impl ExperimentApi {
    pub fn new(storage: Storage, auth: Authenticator) -> ExperimentApi {
        ExperimentApi {
            checker: RulesetChecker::new(storage.clone(), None),
            storage,
            auth,
            hub: None,
        }
    }

    /// Makes every flag change wait until this instance's rulesets hold it.
    pub fn with_hub(mut self, hub: Hub) -> ExperimentApi {
        self.checker = RulesetChecker::new(self.storage.clone(), Some(hub.clone()));
        self.hub = Some(hub);
        self
    }

    async fn settle(&self, project: &str) {
        if let Some(hub) = &self.hub {
            hub.refresh_project(project).await;
        }
    }

    async fn caller<T>(&self, request: Request<T>) -> Result<(Caller, T), Status> {
        let caller = self.auth.authenticate(request.metadata()).await?;
        Ok((caller, request.into_inner()))
    }

    /// Checks the experiment's metrics exist; returns their definitions, primary first.
    async fn metric_definitions(
        &self,
        project: &str,
        spec: &ExperimentSpec,
    ) -> Result<Vec<storage::Metric>, Status> {
        let fields: Vec<_> = spec
            .metrics()
            .enumerate()
            .map(|(i, metric)| {
                let field = if i == 0 {
                    "experiment.primary_metric.metric_key".to_owned()
                } else {
                    format!("experiment.guardrail_metrics[{}].metric_key", i - 1)
                };
                (field, metric)
            })
            .collect();
        crate::experiment_results::metric_definitions(&self.storage, project, &fields).await
    }

    /// Writes an experiment step that may change the flag: `plan` computes the step from
    /// the experiment and the flag's current configuration; the resulting configuration is
    /// validated, then written under guards, again when the environment moved meanwhile.
    async fn advance(
        &self,
        actor: &str,
        target: &impl StepTarget,
        plan: impl Fn(&Experiment, &storage::FlagConfig) -> Result<ExperimentStep, Status>,
    ) -> Result<Experiment, Status> {
        let (project, env, key, expected_version) = target.experiment_at();
        let mut attempt = 0;
        let experiment = loop {
            let experiment = self.storage.get_experiment(project, env, key).await?;
            let flag_key = experiment.spec.flag_key.clone();
            let flag = self.storage.get_flag(project, &flag_key).await?;
            let config = self
                .storage
                .get_flag_config(project, env, &flag_key)
                .await?;
            let step = plan(&experiment, &config)?;
            let mut guards = EnvGuards::new();
            if let Some((version, update)) = &step.config {
                let change = RulesetChange::upsert_flag(flag.model(update, *version));
                let validated = self.checker.check(project, env, &change).await?;
                guards.insert(env.to_owned(), validated);
            }
            match self
                .storage
                .guarded(guards)
                .advance_experiment(actor, project, env, key, expected_version, &step)
                .await
            {
                Err(err) if self.checker.moved(&err, attempt, project).await => attempt += 1,
                written => break written?.0,
            }
        };
        self.settle(project).await;
        Ok(experiment)
    }
}

/// What names the experiment a step is written to, at the version expected: a Start, Stop
/// or Decide request, or the experiment as read.
trait StepTarget {
    /// The experiment's project, environment and key, and the version expected.
    fn experiment_at(&self) -> (&str, &str, &str, i64);
}

impl StepTarget for Experiment {
    fn experiment_at(&self) -> (&str, &str, &str, i64) {
        (
            &self.project_key,
            &self.environment_key,
            &self.key,
            self.version,
        )
    }
}

macro_rules! step_targets {
    ($($request:ty),*) => {$(
        impl StepTarget for $request {
            fn experiment_at(&self) -> (&str, &str, &str, i64) {
                (
                    &self.project_key,
                    &self.environment_key,
                    &self.key,
                    self.expected_version,
                )
            }
        }
    )*};
}

step_targets!(
    pb::StartExperimentRequest,
    pb::StopExperimentRequest,
    pb::DecideExperimentRequest
);

// ----- input ---------------------------------------------------------------------------------

fn metric_kind_from_proto(kind: i32, field: &str) -> Result<MetricKind, Status> {
    match pb::MetricKind::try_from(kind) {
        Ok(pb::MetricKind::Conversion) => Ok(MetricKind::Conversion),
        Ok(pb::MetricKind::Count) => Ok(MetricKind::Count),
        Ok(pb::MetricKind::Sum) => Ok(MetricKind::Sum),
        Ok(pb::MetricKind::Mean) => Ok(MetricKind::Mean),
        Ok(pb::MetricKind::Ratio) => Ok(MetricKind::Ratio),
        Ok(pb::MetricKind::Quantile) => Ok(MetricKind::Quantile),
        Ok(pb::MetricKind::Unspecified) => Err(invalid(format!(
            "{field}: required (CONVERSION, COUNT, SUM, MEAN, RATIO or QUANTILE)"
        ))),
        Err(_) => Err(invalid(format!("{field}: unknown metric kind {kind}"))),
    }
}

fn experiment_metric(
    metric: Option<&pb::ExperimentMetric>,
    field: &str,
) -> Result<ExperimentMetric, Status> {
    let metric = metric.ok_or_else(|| invalid(format!("{field}: required")))?;
    convert::experiment_metric_from_proto(metric, field)
}

/// A finite number in an open interval, with a default for 0.
fn fraction(field: &str, value: f64, default: f64, max: f64) -> Result<f64, Status> {
    if value == 0.0 {
        return Ok(default);
    }
    if !value.is_finite() || value <= 0.0 || value >= max {
        return Err(invalid(format!(
            "{field}: must be between 0 and {max} (exclusive), got {value}"
        )));
    }
    Ok(value)
}

fn positive(field: &str, value: f64) -> Result<f64, Status> {
    if !value.is_finite() || value <= 0.0 {
        return Err(invalid(format!(
            "{field}: required, a positive number (got {value})"
        )));
    }
    Ok(value)
}

/// The design of a new experiment from its message, checked field by field, with the
/// sample size computed. The flag and rule are checked by the caller.
fn experiment_spec(
    x: &pb::Experiment,
    flag_variations: usize,
    primary_kind: impl Fn(&str) -> Option<MetricKind>,
) -> Result<ExperimentSpec, Status> {
    limits::text("experiment.name", &x.name, limits::MAX_NAME_LEN)?;
    limits::text("experiment.hypothesis", &x.hypothesis, MAX_TEXT)?;
    if !x.rule_id.is_empty() {
        limits::text("experiment.rule_id", &x.rule_id, limits::MAX_KEY_LEN)?;
    }
    if !x.layer.is_empty() {
        limits::key("experiment.layer", &x.layer)?;
    }
    let traffic = match x.traffic_allocation {
        0 => TOTAL_WEIGHT,
        t if t > TOTAL_WEIGHT => {
            return Err(invalid(format!(
                "experiment.traffic_allocation: at most {TOTAL_WEIGHT} (thousandths of a percent), got {t}"
            )));
        }
        t => t,
    };
    if u64::from(x.layer_offset) + u64::from(traffic) > u64::from(TOTAL_WEIGHT) {
        return Err(invalid(format!(
            "experiment.layer_offset: the range [{}, {}) passes {TOTAL_WEIGHT}",
            x.layer_offset,
            u64::from(x.layer_offset) + u64::from(traffic)
        )));
    }
    if x.variations.len() < 2 {
        return Err(invalid(
            "experiment.variations: at least two (a control, then treatments)".into(),
        ));
    }
    limits::count(
        "experiment.variations",
        x.variations.len(),
        MAX_EXPERIMENT_VARIATIONS,
    )?;
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    for (i, w) in x.variations.iter().enumerate() {
        if w.variation as usize >= flag_variations {
            return Err(invalid(format!(
                "experiment.variations[{i}].variation: the flag has {flag_variations} variations, no index {}",
                w.variation
            )));
        }
        if !seen.insert(w.variation) {
            return Err(invalid(format!(
                "experiment.variations[{i}].variation: variation {} is listed twice",
                w.variation
            )));
        }
        if w.weight == 0 {
            return Err(invalid(format!(
                "experiment.variations[{i}].weight: must be positive"
            )));
        }
        total += u64::from(w.weight);
    }
    if total != u64::from(TOTAL_WEIGHT) {
        return Err(invalid(format!(
            "experiment.variations: weights sum to {total}, not {TOTAL_WEIGHT}"
        )));
    }
    let primary = experiment_metric(x.primary_metric.as_ref(), "experiment.primary_metric")?;
    limits::count(
        "experiment.guardrail_metrics",
        x.guardrail_metrics.len(),
        MAX_GUARDRAILS,
    )?;
    let mut guardrails = Vec::new();
    let mut keys = HashSet::from([primary.metric_key.clone()]);
    for (i, g) in x.guardrail_metrics.iter().enumerate() {
        let field = format!("experiment.guardrail_metrics[{i}]");
        let metric = experiment_metric(Some(g), &field)?;
        if !keys.insert(metric.metric_key.clone()) {
            return Err(invalid(format!(
                "{field}.metric_key: metric `{}` is measured twice",
                metric.metric_key
            )));
        }
        guardrails.push(metric);
    }
    let alpha = fraction("experiment.alpha", x.alpha, 0.05, 0.5)?;
    let power = fraction("experiment.power", x.power, 0.8, 1.0)?;
    let mde = positive(
        "experiment.minimum_detectable_effect",
        x.minimum_detectable_effect,
    )?;
    let baseline_mean = positive("experiment.baseline_mean", x.baseline_mean)?;
    let kind = primary_kind(&primary.metric_key).ok_or_else(|| {
        invalid(format!(
            "experiment.primary_metric.metric_key: no metric `{}` in the project",
            primary.metric_key
        ))
    })?;
    let baseline_std_dev = match (kind, x.baseline_std_dev) {
        (MetricKind::Conversion, _) => {
            if baseline_mean >= 1.0 {
                return Err(invalid(format!(
                    "experiment.baseline_mean: a conversion rate must be below 1, got {baseline_mean}"
                )));
            }
            None
        }
        (_, Some(sd)) => Some(positive("experiment.baseline_std_dev", sd)?),
        (_, None) => {
            return Err(invalid(
                "experiment.baseline_std_dev: required when the primary metric is not a conversion"
                    .into(),
            ));
        }
    };
    let treatments = u32::try_from(x.variations.len() - 1).unwrap_or(u32::MAX);
    let required = vexil_stats::required_sample_size(&vexil_stats::Design {
        kind: stats_kind(kind),
        baseline_mean,
        baseline_std_dev,
        minimum_detectable_effect: mde,
        alpha,
        power,
        treatments,
        one_sided: x.one_sided,
    })
    .map_err(|err| invalid(format!("experiment: cannot plan the sample size: {err}")))?;
    let bucket_by = x.bucket_by.as_ref().and_then(|b| {
        let mut out = serde_json::Map::new();
        if !b.context_kind.is_empty() {
            out.insert("context_kind".into(), Value::String(b.context_kind.clone()));
        }
        if !b.attribute.is_empty() {
            out.insert("attribute".into(), Value::String(b.attribute.clone()));
        }
        (!out.is_empty()).then_some(Value::Object(out))
    });
    Ok(ExperimentSpec {
        name: x.name.clone(),
        hypothesis: x.hypothesis.clone(),
        flag_key: x.flag_key.clone(),
        rule_id: x.rule_id.clone(),
        traffic_allocation: traffic,
        layer: x.layer.clone(),
        layer_offset: x.layer_offset,
        variations: x
            .variations
            .iter()
            .map(|w| storage::WeightedVariation {
                variation: w.variation,
                weight: w.weight,
            })
            .collect(),
        bucket_by,
        primary_metric: primary,
        guardrail_metrics: guardrails,
        alpha,
        power,
        minimum_detectable_effect: mde,
        baseline_mean,
        baseline_std_dev,
        required_sample_size: required,
        one_sided: x.one_sided,
        stop_on_guardrail_regression: x.stop_on_guardrail_regression,
        cuped_lookback_days: if x.cuped_lookback_days <= MAX_CUPED_LOOKBACK_DAYS {
            x.cuped_lookback_days
        } else {
            return Err(invalid(format!(
                "experiment.cuped_lookback_days: at most {MAX_CUPED_LOOKBACK_DAYS}, got {}",
                x.cuped_lookback_days
            )));
        },
    })
}

// ----- serves ----------------------------------------------------------------------------------

/// The serve that carries experiment `key` while it runs.
fn experiment_serve(x: &Experiment) -> Result<Serve, Status> {
    let spec = &x.spec;
    let bucket_by = spec.bucket_by.as_ref().map(|b| pb::BucketBy {
        context_kind: b
            .get("context_kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        attribute: b
            .get("attribute")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    });
    let serve = pb::Serve {
        kind: Some(pb::serve::Kind::Rollout(pb::Rollout {
            variations: spec
                .variations
                .iter()
                .map(|w| pb::WeightedVariation {
                    variation: w.variation,
                    weight: w.weight,
                })
                .collect(),
            bucket_by,
            algorithm: pb::BucketingAlgorithm::Murmur3V1 as i32,
        })),
        experiment: Some(pb::ExperimentAllocation {
            key: x.key.clone(),
            traffic_allocation: Some(spec.traffic_allocation),
            layer: spec.layer.clone(),
            layer_offset: spec.layer_offset,
        }),
    };
    vexil_proto::model::serve_from_proto(Some(&serve), "experiment")
        .map_err(|err| Status::internal(format!("experiment `{}`: {err}", x.key)))
}

fn fixed_serve(variation: u32) -> Serve {
    Serve::variation(variation as usize)
}

/// Where in a configuration a serve sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServeSlot {
    Rule(usize),
    Fallthrough,
}

fn serve_at(update: &FlagConfiguration, slot: ServeSlot) -> &Serve {
    match slot {
        ServeSlot::Rule(i) => &update.rules[i].serve,
        ServeSlot::Fallthrough => &update.fallthrough,
    }
}

fn set_serve(update: &mut FlagConfiguration, slot: ServeSlot, serve: Serve) {
    match slot {
        ServeSlot::Rule(i) => update.rules[i].serve = serve,
        ServeSlot::Fallthrough => update.fallthrough = serve,
    }
}

/// The slot the experiment was designed for (its rule by id, or the fallthrough).
fn designed_slot(x: &Experiment, update: &FlagConfiguration) -> Result<ServeSlot, Status> {
    if x.spec.rule_id.is_empty() {
        return Ok(ServeSlot::Fallthrough);
    }
    update
        .rules
        .iter()
        .position(|r| r.id == x.spec.rule_id)
        .map(ServeSlot::Rule)
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "flag `{}` has no rule `{}` in environment `{}` any more",
                x.spec.flag_key, x.spec.rule_id, x.environment_key
            ))
        })
}

/// The slot whose serve carries the experiment now, if any (someone may have edited it
/// away).
fn carrying_slot(x: &Experiment, update: &FlagConfiguration) -> Option<ServeSlot> {
    let carries = |serve: &Serve| serve.experiment.as_ref().is_some_and(|e| e.key == x.key);
    if let Some(i) = update.rules.iter().position(|r| carries(&r.serve)) {
        return Some(ServeSlot::Rule(i));
    }
    carries(&update.fallthrough).then_some(ServeSlot::Fallthrough)
}

// ----- output ----------------------------------------------------------------------------------

fn status_to_proto(status: ExperimentStatus) -> i32 {
    (match status {
        ExperimentStatus::Draft => pb::ExperimentStatus::Draft,
        ExperimentStatus::Running => pb::ExperimentStatus::Running,
        ExperimentStatus::Stopped => pb::ExperimentStatus::Stopped,
    }) as i32
}

/// An experiment as its message.
pub fn experiment_message(x: &Experiment) -> pb::Experiment {
    let spec = &x.spec;
    pb::Experiment {
        project_key: x.project_key.clone(),
        environment_key: x.environment_key.clone(),
        key: x.key.clone(),
        name: spec.name.clone(),
        hypothesis: spec.hypothesis.clone(),
        flag_key: spec.flag_key.clone(),
        rule_id: spec.rule_id.clone(),
        traffic_allocation: spec.traffic_allocation,
        layer: spec.layer.clone(),
        layer_offset: spec.layer_offset,
        variations: spec
            .variations
            .iter()
            .map(|w| pb::WeightedVariation {
                variation: w.variation,
                weight: w.weight,
            })
            .collect(),
        bucket_by: spec.bucket_by.as_ref().map(|b| pb::BucketBy {
            context_kind: b
                .get("context_kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            attribute: b
                .get("attribute")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }),
        primary_metric: Some(convert::experiment_metric(&spec.primary_metric)),
        guardrail_metrics: spec
            .guardrail_metrics
            .iter()
            .map(convert::experiment_metric)
            .collect(),
        status: status_to_proto(x.status),
        decision: x.decision.as_ref().map(|d| pb::ExperimentDecision {
            variation: d.variation,
            rationale: d.rationale.clone(),
            decided_by: d.decided_by.clone(),
            decided_at: Some(convert::timestamp(d.decided_at)),
            rolled_back: d.rolled_back,
            applied: d.applied,
        }),
        alpha: spec.alpha,
        version: x.version,
        created_at: Some(convert::timestamp(x.created_at)),
        started_at: x.started_at.map(convert::timestamp),
        stopped_at: x.stopped_at.map(convert::timestamp),
        minimum_detectable_effect: spec.minimum_detectable_effect,
        power: spec.power,
        baseline_mean: spec.baseline_mean,
        baseline_std_dev: spec.baseline_std_dev,
        required_sample_size: spec.required_sample_size,
        one_sided: spec.one_sided,
        stop_on_guardrail_regression: spec.stop_on_guardrail_regression,
        cuped_lookback_days: spec.cuped_lookback_days,
    }
}

fn error_kind_to_proto(kind: Option<&str>) -> i32 {
    (match kind {
        None => pb::ErrorKind::Unspecified,
        Some("flag_not_found") => pb::ErrorKind::FlagNotFound,
        Some("wrong_type") => pb::ErrorKind::WrongType,
        Some("malformed_flag") => pb::ErrorKind::MalformedFlag,
        Some("invalid_context") => pb::ErrorKind::InvalidContext,
        Some("client_not_ready") => pb::ErrorKind::ClientNotReady,
        Some(_) => pb::ErrorKind::Unspecified,
    }) as i32
}

/// The longest CUPED lookback: pre-exposure events are read raw, and older history explains
/// less of the present.
const MAX_CUPED_LOOKBACK_DAYS: u32 = 90;

/// FAILED_PRECONDITION, naming the experiment's status and `rule`, unless it is `status`.
fn require_status(x: &Experiment, status: ExperimentStatus, rule: &str) -> Result<(), Status> {
    if x.status == status {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "experiment `{}` is {}: {rule}",
        x.key,
        x.status.as_str()
    )))
}

/// The step that stops a running experiment: its serve becomes the control for everyone.
fn stop_plan(x: &Experiment, config: &storage::FlagConfig) -> Result<ExperimentStep, Status> {
    require_status(
        x,
        ExperimentStatus::Running,
        "only a running experiment can stop",
    )?;
    let mut update = config.configuration.clone();
    let config_change = carrying_slot(x, &update).map(|slot| {
        set_serve(&mut update, slot, fixed_serve(control(x)));
        (config.version, update)
    });
    Ok(ExperimentStep {
        action: "experiment.stop",
        from: &[ExperimentStatus::Running],
        to: ExperimentStatus::Stopped,
        previous_serve: None,
        decision: None,
        config: config_change,
    })
}

#[tonic::async_trait]
impl ExperimentService for ExperimentApi {
    async fn create_metric(&self, request: Request<pb::CreateMetricRequest>) -> Reply<pb::Metric> {
        let (caller, req) = self.caller(request).await?;
        let metric = req
            .metric
            .ok_or_else(|| invalid("metric: required".into()))?;
        limits::key("metric.project_key", &metric.project_key)?;
        caller.require(&metric.project_key, Role::Editor)?;
        limits::key("metric.key", &metric.key)?;
        limits::name_and_description(&metric.name, &metric.description)?;
        if metric.event_name.is_empty() {
            return Err(invalid("metric.event_name: must not be empty".into()));
        }
        limits::text("metric.event_name", &metric.event_name, limits::MAX_KEY_LEN)?;
        let kind = metric_kind_from_proto(metric.kind, "metric.kind")?;
        match (kind, metric.denominator_event_name.is_empty()) {
            (MetricKind::Ratio, true) => {
                return Err(invalid(
                    "metric.denominator_event_name: required for a RATIO metric".into(),
                ));
            }
            (MetricKind::Ratio, false) => limits::text(
                "metric.denominator_event_name",
                &metric.denominator_event_name,
                limits::MAX_KEY_LEN,
            )?,
            (_, false) => {
                return Err(invalid(
                    "metric.denominator_event_name: only a RATIO metric has a denominator".into(),
                ));
            }
            (_, true) => {}
        }
        match (kind, metric.quantile) {
            (MetricKind::Quantile, level) if !(level > 0.0 && level < 1.0) => {
                return Err(invalid(format!(
                    "metric.quantile: a QUANTILE metric needs a level strictly between 0 and 1 \
                     (0.9 for p90), got {level}"
                )));
            }
            (MetricKind::Quantile, _) => {}
            (_, level) if level != 0.0 => {
                return Err(invalid(
                    "metric.quantile: only a QUANTILE metric has a quantile level".into(),
                ));
            }
            _ => {}
        }
        let stored = self
            .storage
            .create_metric(
                caller.actor(),
                &metric.project_key,
                &NewMetric {
                    key: metric.key,
                    name: metric.name,
                    description: metric.description,
                    event_name: metric.event_name,
                    kind,
                    denominator_event_name: metric.denominator_event_name,
                    quantile: metric.quantile,
                },
            )
            .await?;
        Ok(Response::new(convert::metric(&stored)))
    }

    async fn get_metric(&self, request: Request<pb::GetMetricRequest>) -> Reply<pb::Metric> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let metric = self.storage.get_metric(&req.project_key, &req.key).await?;
        Ok(Response::new(convert::metric(&metric)))
    }

    async fn list_metrics(
        &self,
        request: Request<pb::ListMetricsRequest>,
    ) -> Reply<pb::ListMetricsResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let page = self
            .storage
            .list_metrics(&req.project_key, &convert::page_request(req.page.as_ref()))
            .await?;
        Ok(Response::new(pb::ListMetricsResponse {
            metrics: page.items.iter().map(convert::metric).collect(),
            next_page_token: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn create_experiment(
        &self,
        request: Request<pb::CreateExperimentRequest>,
    ) -> Reply<pb::Experiment> {
        let (caller, req) = self.caller(request).await?;
        let x = req
            .experiment
            .ok_or_else(|| invalid("experiment: required".into()))?;
        limits::key("experiment.project_key", &x.project_key)?;
        caller.require(&x.project_key, Role::Editor)?;
        limits::key("experiment.environment_key", &x.environment_key)?;
        limits::key("experiment.key", &x.key)?;
        if x.key.starts_with(storage::RAMP_EXPERIMENT_PREFIX) {
            return Err(invalid(format!(
                "experiment.key: keys starting with `{}` are the guarded ramps'",
                storage::RAMP_EXPERIMENT_PREFIX
            )));
        }
        limits::key("experiment.flag_key", &x.flag_key)?;
        let flag = match self.storage.get_flag(&x.project_key, &x.flag_key).await {
            Err(storage::StorageError::NotFound {
                kind: storage::ResourceKind::Flag,
                ..
            }) => {
                return Err(invalid(format!(
                    "experiment.flag_key: project `{}` has no flag `{}`",
                    x.project_key, x.flag_key
                )));
            }
            other => other?,
        };
        if flag.archived {
            return Err(invalid(format!(
                "experiment.flag_key: flag `{}` is archived",
                x.flag_key
            )));
        }
        let config = self
            .storage
            .get_flag_config(&x.project_key, &x.environment_key, &x.flag_key)
            .await?;
        if !x.rule_id.is_empty() && !config.configuration.rules.iter().any(|r| r.id == x.rule_id) {
            return Err(invalid(format!(
                "experiment.rule_id: flag `{}` has no rule `{}` in environment `{}`",
                x.flag_key, x.rule_id, x.environment_key
            )));
        }
        // The primary metric's kind decides the planning; look it up first.
        let primary_key = x
            .primary_metric
            .as_ref()
            .map(|m| m.metric_key.clone())
            .unwrap_or_default();
        let primary = if primary_key.is_empty() {
            None
        } else {
            match self.storage.get_metric(&x.project_key, &primary_key).await {
                Ok(m) => Some(m),
                Err(storage::StorageError::NotFound { .. }) => None,
                Err(err) => return Err(err.into()),
            }
        };
        let spec = experiment_spec(&x, flag.variations.len(), |key| {
            primary.as_ref().filter(|m| m.key == key).map(|m| m.kind)
        })?;
        self.metric_definitions(&x.project_key, &spec).await?;
        let stored = self
            .storage
            .create_experiment(
                caller.actor(),
                &x.project_key,
                &x.environment_key,
                &x.key,
                &spec,
            )
            .await?;
        Ok(Response::new(experiment_message(&stored)))
    }

    async fn get_experiment(
        &self,
        request: Request<pb::GetExperimentRequest>,
    ) -> Reply<pb::Experiment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let x = self
            .storage
            .get_experiment(&req.project_key, &req.environment_key, &req.key)
            .await?;
        Ok(Response::new(experiment_message(&x)))
    }

    async fn list_experiments(
        &self,
        request: Request<pb::ListExperimentsRequest>,
    ) -> Reply<pb::ListExperimentsResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let status = match pb::ExperimentStatus::try_from(req.status) {
            Ok(pb::ExperimentStatus::Unspecified) => None,
            Ok(pb::ExperimentStatus::Draft) => Some(ExperimentStatus::Draft),
            Ok(pb::ExperimentStatus::Running) => Some(ExperimentStatus::Running),
            Ok(pb::ExperimentStatus::Stopped) => Some(ExperimentStatus::Stopped),
            Err(_) => return Err(invalid(format!("status: unknown status {}", req.status))),
        };
        let filter = ExperimentFilter {
            status,
            flag_key: (!req.flag_key.is_empty()).then_some(req.flag_key),
        };
        let page = self
            .storage
            .list_experiments(
                &req.project_key,
                &req.environment_key,
                &filter,
                &convert::page_request(req.page.as_ref()),
            )
            .await?;
        Ok(Response::new(pb::ListExperimentsResponse {
            experiments: page.items.iter().map(experiment_message).collect(),
            next_page_token: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn start_experiment(
        &self,
        request: Request<pb::StartExperimentRequest>,
    ) -> Reply<pb::Experiment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let x = self
            .advance(caller.actor(), &req, |x, config| {
                require_status(x, ExperimentStatus::Draft, "only a draft can start")?;
                let mut update = config.configuration.clone();
                let slot = designed_slot(x, &update)?;
                let previous = serve_at(&update, slot).clone();
                set_serve(&mut update, slot, experiment_serve(x)?);
                Ok(ExperimentStep {
                    action: "experiment.start",
                    from: &[ExperimentStatus::Draft],
                    to: ExperimentStatus::Running,
                    previous_serve: Some(previous),
                    decision: None,
                    config: Some((config.version, update)),
                })
            })
            .await?;
        Ok(Response::new(experiment_message(&x)))
    }

    async fn stop_experiment(
        &self,
        request: Request<pb::StopExperimentRequest>,
    ) -> Reply<pb::Experiment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        let x = self.advance(caller.actor(), &req, stop_plan).await?;
        Ok(Response::new(experiment_message(&x)))
    }

    async fn decide_experiment(
        &self,
        request: Request<pb::DecideExperimentRequest>,
    ) -> Reply<pb::Experiment> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Editor)?;
        limits::text("rationale", &req.rationale, MAX_TEXT)?;
        let actor = caller.actor().to_owned();
        let x = self
            .advance(caller.actor(), &req, |x, config| {
                if x.status == ExperimentStatus::Draft {
                    return Err(Status::failed_precondition(format!(
                        "experiment `{}` is a draft: start it before deciding",
                        x.key
                    )));
                }
                if x.decision.is_some() {
                    return Err(Status::failed_precondition(format!(
                        "experiment `{}` is decided already",
                        x.key
                    )));
                }
                let variation = if req.roll_back {
                    control(x)
                } else if x
                    .spec
                    .variations
                    .iter()
                    .any(|w| w.variation == req.variation)
                {
                    req.variation
                } else {
                    return Err(invalid(format!(
                        "variation: {} is not one of the experiment's variations",
                        req.variation
                    )));
                };
                let mut update = config.configuration.clone();
                let carrying = carrying_slot(x, &update);
                let config_change = if req.apply {
                    let slot = match carrying {
                        Some(slot) => slot,
                        None => designed_slot(x, &update)?,
                    };
                    let serve = if req.roll_back {
                        x.previous_serve.clone().ok_or_else(|| {
                            Status::failed_precondition(format!(
                                "experiment `{}` has no serve to roll back to",
                                x.key
                            ))
                        })?
                    } else {
                        fixed_serve(variation)
                    };
                    set_serve(&mut update, slot, serve);
                    Some((config.version, update))
                } else {
                    // Not applied: a running experiment still stops serving.
                    carrying.map(|slot| {
                        set_serve(&mut update, slot, fixed_serve(control(x)));
                        (config.version, update)
                    })
                };
                Ok(ExperimentStep {
                    action: "experiment.decide",
                    from: &[ExperimentStatus::Running, ExperimentStatus::Stopped],
                    to: ExperimentStatus::Stopped,
                    previous_serve: None,
                    decision: Some(Decision {
                        variation,
                        rationale: req.rationale.clone(),
                        decided_by: actor.clone(),
                        decided_at: now_millis(),
                        rolled_back: req.roll_back,
                        applied: req.apply,
                    }),
                    config: config_change,
                })
            })
            .await?;
        Ok(Response::new(experiment_message(&x)))
    }

    async fn get_experiment_results(
        &self,
        request: Request<pb::GetExperimentResultsRequest>,
    ) -> Reply<pb::ExperimentResults> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let x = self
            .storage
            .get_experiment(&req.project_key, &req.environment_key, &req.key)
            .await?;
        let definitions = self.metric_definitions(&x.project_key, &x.spec).await?;
        let until = req
            .until
            .as_ref()
            .map(convert::millis)
            .unwrap_or_else(now_millis);
        let results = compute_results(&self.storage, &x, &definitions, until).await?;
        Ok(Response::new(results))
    }

    async fn get_flag_usage(
        &self,
        request: Request<pb::GetFlagUsageRequest>,
    ) -> Reply<pb::GetFlagUsageResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let end = req
            .end
            .as_ref()
            .map(convert::millis)
            .unwrap_or_else(now_millis);
        let start = req
            .start
            .as_ref()
            .map(convert::millis)
            .unwrap_or(end - DAY_MILLIS);
        if start >= end {
            return Err(invalid("start: must be before end".into()));
        }
        if end - start > MAX_USAGE_DAYS * DAY_MILLIS {
            return Err(invalid(format!(
                "start: the period may span at most {MAX_USAGE_DAYS} days"
            )));
        }
        let flag = convert::given(&req.flag_key);
        // Whole hours: the hour `start` falls in, up to the hour `end` falls in.
        let buckets = self
            .storage
            .flag_usage(
                &req.project_key,
                &req.environment_key,
                flag,
                hour_of(start),
                end,
            )
            .await?;
        Ok(Response::new(pb::GetFlagUsageResponse {
            buckets: buckets
                .iter()
                .map(|b| pb::FlagUsageBucket {
                    flag_key: b.flag_key.clone(),
                    hour: Some(convert::timestamp(b.hour)),
                    variation: b.variation.and_then(|v| u32::try_from(v).ok()),
                    error_kind: error_kind_to_proto(b.error_kind.as_deref()),
                    count: u64::try_from(b.count).unwrap_or(0),
                })
                .collect(),
        }))
    }

    async fn list_stale_flags(
        &self,
        request: Request<pb::ListStaleFlagsRequest>,
    ) -> Reply<pb::ListStaleFlagsResponse> {
        let (caller, req) = self.caller(request).await?;
        caller.require(&req.project_key, Role::Viewer)?;
        let days = match req.days {
            0 => 30,
            d if d > 3650 => {
                return Err(invalid(format!("days: at most 3650, got {d}")));
            }
            d => i64::from(d),
        };
        let since = now_millis() - days * DAY_MILLIS;
        let stale = self
            .storage
            .stale_flags(&req.project_key, &req.environment_key, since)
            .await?;
        Ok(Response::new(pb::ListStaleFlagsResponse {
            flags: stale
                .iter()
                .map(|s| pb::StaleFlag {
                    flag_key: s.flag_key.clone(),
                    reason: (match s.reason {
                        storage::StaleReason::NotEvaluated => pb::StaleReason::NotEvaluated,
                        storage::StaleReason::SingleVariation => pb::StaleReason::SingleVariation,
                    }) as i32,
                    variation: s.variation.and_then(|v| u32::try_from(v).ok()),
                    evaluations: u64::try_from(s.evaluations).unwrap_or(0),
                    last_evaluated: s.last_evaluated.map(convert::timestamp),
                })
                .collect(),
        }))
    }
}
