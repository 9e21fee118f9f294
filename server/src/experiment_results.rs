//! The results of an experiment: its aggregates read from the roll-ups, compared variation
//! by variation with the statistics engine (fixed-horizon, always-valid and Bayesian readings,
//! CUPED, ratio and quantile metrics), and the alerts that are safe to act on at any time.
//! The experiment API answers with them; the watch of running experiments acts on them. A
//! guarded ramp is read the same way, as an experiment of its baseline against its variation.

use tonic::Status;
use vexil_proto::v1 as pb;

use crate::convert;
use crate::storage::{
    self, Experiment, ExperimentMetric, ExperimentSpec, ExperimentStatus, HOUR_MILLIS,
    MetricDirection, MetricKind, Ramp, Storage, WeightedVariation, now_millis,
};

/// Contexts per side a ramp guard's always-valid test is tuned for: its confidence
/// sequence is narrowest there, so a regression shows early in a ramp's first steps.
const GUARD_TUNED_FOR_CONTEXTS: u64 = 1_000;

/// The definitions of `metrics` (each with the request field naming it), in their order;
/// INVALID_ARGUMENT naming the field for a metric the project does not have.
pub(crate) async fn metric_definitions(
    storage: &Storage,
    project: &str,
    metrics: &[(String, &ExperimentMetric)],
) -> Result<Vec<storage::Metric>, Status> {
    let mut out = Vec::new();
    for (field, metric) in metrics {
        match storage.get_metric(project, &metric.metric_key).await {
            Ok(m) => out.push(m),
            Err(storage::StorageError::NotFound {
                kind: storage::ResourceKind::Metric,
                ..
            }) => {
                return Err(Status::invalid_argument(format!(
                    "{field}: project `{project}` has no metric `{}`",
                    metric.metric_key
                )));
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(out)
}

/// The definitions of a ramp guard's metrics, in their order.
pub(crate) async fn guard_definitions(
    storage: &Storage,
    project: &str,
    guard: &storage::RampGuard,
) -> Result<Vec<storage::Metric>, Status> {
    let fields = guard
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("guard.metrics[{i}].metric_key"), m))
        .collect::<Vec<_>>();
    metric_definitions(storage, project, &fields).await
}

/// A guarded ramp's guardrails compared up to `until`: the baseline as control, the rolled-out
/// variation as treatment, every metric a guardrail tested two-sided at the guard's alpha
/// divided among its metrics (Bonferroni), so that the guard as a whole keeps its false-alarm
/// rate. Its GUARDRAIL_REGRESSED alerts are the regressions. The split changes at every step,
/// so there is no sample-ratio check; contexts served both sides are excluded, as in any
/// experiment.
pub(crate) async fn ramp_results(
    storage: &Storage,
    ramp: &Ramp,
    definitions: &[storage::Metric],
    until: storage::Millis,
) -> Result<pb::ExperimentResults, Status> {
    let (Some(guard), Some(key)) = (&ramp.guard, ramp.experiment_key()) else {
        return Err(Status::failed_precondition(format!(
            "ramp {} has no guard",
            ramp.id
        )));
    };
    let whole = vexil_engine::model::TOTAL_WEIGHT;
    let weight = u32::try_from(ramp.weight()).unwrap_or(whole).min(whole);
    let side = |variation: usize, weight: u32| WeightedVariation {
        variation: u32::try_from(variation).unwrap_or(u32::MAX),
        weight,
    };
    let alpha = guard.alpha / guard.metrics.len().max(1) as f64;
    let x = Experiment {
        project_key: ramp.project_key.clone(),
        environment_key: ramp.environment_key.clone(),
        key,
        status: ExperimentStatus::Running,
        spec: ExperimentSpec {
            name: String::new(),
            hypothesis: String::new(),
            flag_key: ramp.flag_key.clone(),
            rule_id: String::new(),
            traffic_allocation: whole,
            layer: String::new(),
            layer_offset: 0,
            variations: vec![
                side(ramp.baseline, whole - weight),
                side(ramp.variation, weight),
            ],
            bucket_by: None,
            primary_metric: guard.metrics[0].clone(),
            guardrail_metrics: guard.metrics[1..].to_vec(),
            alpha,
            power: 0.8,
            minimum_detectable_effect: 0.0,
            baseline_mean: 0.0,
            baseline_std_dev: None,
            required_sample_size: GUARD_TUNED_FOR_CONTEXTS,
            one_sided: false,
            stop_on_guardrail_regression: false,
            cuped_lookback_days: 0,
        },
        previous_serve: None,
        decision: None,
        version: 0,
        created_at: ramp.created_at,
        updated_at: ramp.updated_at,
        started_at: Some(ramp.created_at),
        stopped_at: None,
    };
    let mut results = compute_results(storage, &x, definitions, until).await?;
    for metric in &mut results.metrics {
        metric.primary = false;
    }
    results.srm_p_value = 1.0;
    results.srm_chi_square = 0.0;
    results.srm_detected = false;
    results.required_sample_size = 0;
    results.sample_collected = 0.0;
    results.alerts = alerts_of(&results.metrics, false, 1.0, alpha);
    Ok(results)
}

/// The first regression a ramp's results show, for people; `None` when there is none.
pub(crate) fn ramp_regression(results: &pb::ExperimentResults) -> Option<String> {
    results
        .alerts
        .iter()
        .find(|a| a.kind == pb::ExperimentAlertKind::GuardrailRegressed as i32)
        .map(|a| a.message.clone())
}

/// The statistics engine's analysis of a metric kind.
pub(crate) fn stats_kind(kind: MetricKind) -> vexil_stats::MetricKind {
    match kind {
        MetricKind::Conversion => vexil_stats::MetricKind::Conversion,
        MetricKind::Count => vexil_stats::MetricKind::Count,
        // A ratio is compared through its linearised values, a quantile through its estimate
        // and standard error: both as means.
        MetricKind::Sum | MetricKind::Mean | MetricKind::Ratio | MetricKind::Quantile => {
            vexil_stats::MetricKind::Mean
        }
    }
}

pub(crate) fn control(x: &Experiment) -> u32 {
    x.spec.variations.first().map(|w| w.variation).unwrap_or(0)
}

fn interval(estimate: f64, i: vexil_stats::Interval, level: f64) -> pb::ConfidenceInterval {
    pb::ConfidenceInterval {
        estimate,
        lower: i.lower,
        upper: i.upper,
        level,
    }
}

fn summary(sums: Option<&vexil_stats::Summary>) -> vexil_stats::Summary {
    sums.copied().unwrap_or_default()
}

/// The test of one metric: two-sided, or one-sided toward an improvement for the primary
/// metric and toward a regression for a guardrail.
fn alternative_for(
    one_sided: bool,
    primary: bool,
    direction: MetricDirection,
) -> vexil_stats::Alternative {
    use vexil_stats::Alternative::{Greater, Less, TwoSided};
    match (one_sided, primary, direction) {
        (false, _, _) => TwoSided,
        (true, true, MetricDirection::Increase) | (true, false, MetricDirection::Decrease) => {
            Greater
        }
        (true, true, MetricDirection::Decrease) | (true, false, MetricDirection::Increase) => Less,
    }
}

/// Computes the results of an experiment from its aggregates.
pub(crate) async fn compute_results(
    storage: &Storage,
    x: &Experiment,
    definitions: &[storage::Metric],
    until: storage::Millis,
) -> Result<pb::ExperimentResults, Status> {
    let spec = &x.spec;
    let metrics: Vec<storage::MetricQuery> = definitions
        .iter()
        .map(|m| storage::MetricQuery {
            event_name: m.event_name.clone(),
            kind: m.kind,
            denominator_event_name: m.denominator_event_name.clone(),
            covariate_lookback: i64::from(spec.cuped_lookback_days) * 24 * HOUR_MILLIS,
            quantile: m.quantile,
            quantile_alpha: spec.alpha,
        })
        .collect();
    let aggregates = storage
        .experiment_aggregates(&x.project_key, &x.environment_key, &x.key, &metrics, until)
        .await?;
    let units_of = |variation: u32| -> u64 {
        aggregates
            .units
            .per_variation
            .get(&i64::from(variation))
            .copied()
            .unwrap_or(0)
    };
    let exposures: Vec<pb::VariationExposure> = spec
        .variations
        .iter()
        .map(|w| pb::VariationExposure {
            variation: w.variation,
            units: units_of(w.variation),
            weight: w.weight,
        })
        .collect();
    let observed: Vec<u64> = exposures.iter().map(|e| e.units).collect();
    let weights: Vec<f64> = spec
        .variations
        .iter()
        .map(|w| f64::from(w.weight))
        .collect();
    let (srm_p_value, srm_chi_square, srm_detected) = if observed.iter().sum::<u64>() > 0 {
        match vexil_stats::sample_ratio_mismatch(&observed, &weights) {
            Ok(srm) => (srm.p_value, srm.chi_square, srm.mismatch),
            Err(err) => {
                tracing::warn!(error = %err, experiment = %x.key, "sample ratio check failed");
                (1.0, 0.0, false)
            }
        }
    } else {
        (1.0, 0.0, false)
    };
    let settings = vexil_stats::Settings::tuned_for(spec.alpha, spec.required_sample_size.max(1))
        .map_err(|err| Status::internal(format!("statistics settings: {err}")))?;
    let level = 1.0 - spec.alpha;
    let treatments = u32::try_from(spec.variations.len().saturating_sub(1)).unwrap_or(1);
    let control_variation = i64::from(control(x));

    let mut results = Vec::new();
    // (metric index, variation index in the result) of every fixed-horizon p-value, for Holm.
    let mut tested = Vec::new();
    let mut p_values = Vec::new();
    for (m, (goal, definition)) in spec.metrics().zip(definitions).enumerate() {
        let sums = &aggregates.metrics[m];
        let kind = stats_kind(definition.kind);
        // What the tests compare: each variation's values, or for a ratio metric the
        // linearised values of its pairs (a mean whose mean is the ratio).
        let pairs = |variation: i64| {
            aggregates.ratios[m]
                .get(&variation)
                .copied()
                .unwrap_or_default()
        };
        let analysed = |variation: i64, arm: &'static str| match definition.kind {
            MetricKind::Ratio => pairs(variation).linearized(arm),
            MetricKind::Quantile => match aggregates.quantiles[m].get(&variation) {
                Some(quantile) => quantile.as_mean(arm),
                None => Err(aggregates.quantile_notes[m]
                    .get(&variation)
                    .cloned()
                    .unwrap_or(vexil_stats::StatsError::TooFewContexts {
                        variation: arm,
                        n: 0,
                    })),
            },
            _ => Ok(summary(sums.get(&variation))),
        };
        let control_analysed = analysed(control_variation, "control");
        let control_summary = summary(sums.get(&control_variation));
        let settings = vexil_stats::Settings {
            alternative: alternative_for(spec.one_sided, m == 0, goal.direction),
            ..settings
        };
        let mut variations = Vec::new();
        for (v, w) in spec.variations.iter().enumerate() {
            let s = summary(sums.get(&i64::from(w.variation)));
            let treatment_analysed = analysed(i64::from(w.variation), "treatment");
            let mut result = pb::VariationMetricResult {
                variation: w.variation,
                units: s.n,
                sum: s.sum(),
                sum_of_squares: s.squared_deviations + s.sum() * s.mean(),
                mean: s.mean(),
                variance: s.variance(),
                ..Default::default()
            };
            if definition.kind == MetricKind::Ratio {
                // The ratio Σx/Σy and the delta-method variance of one context's share.
                result.mean = pairs(i64::from(w.variation)).ratio();
                result.variance = treatment_analysed
                    .as_ref()
                    .map_or(0.0, vexil_stats::Summary::variance);
            }
            if definition.kind == MetricKind::Quantile {
                // The sample quantile and its distribution-free interval, or why there is none
                // yet (never the mean of the values in its place).
                match aggregates.quantiles[m].get(&i64::from(w.variation)) {
                    Some(q) => {
                        result.mean = q.estimate;
                        result.quantile_interval = Some(pb::ConfidenceInterval {
                            estimate: q.estimate,
                            lower: q.lower,
                            upper: q.upper,
                            level: 1.0 - q.alpha,
                        });
                    }
                    None => {
                        result.mean = 0.0;
                        if let Err(err) = &treatment_analysed {
                            result.note = err.to_string();
                        }
                    }
                }
            }
            let mut arms = match (&control_analysed, &treatment_analysed) {
                (Ok(c), Ok(t)) => Ok((*c, *t)),
                (Err(err), _) | (_, Err(err)) => Err(err.clone()),
            };
            // CUPED: both arms adjusted by their pre-exposure covariate, then compared as a
            // mean (an adjusted conversion is no longer 0 or 1).
            let mut test_kind = kind;
            if v > 0 && metrics[m].has_covariate() {
                let with_history = |variation: i64| {
                    aggregates.covariates[m]
                        .get(&variation)
                        .copied()
                        .unwrap_or_default()
                };
                arms = vexil_stats::cuped(
                    &with_history(control_variation),
                    &with_history(i64::from(w.variation)),
                )
                .map(|(c, t, reduction)| {
                    result.cuped_variance_reduction = Some(reduction);
                    (c, t)
                });
                test_kind = vexil_stats::MetricKind::Mean;
            }
            if v > 0 {
                let compared = arms
                    .clone()
                    .and_then(|(c, t)| vexil_stats::compare(test_kind, &c, &t, &settings));
                match compared {
                    Ok(c) => {
                        result.absolute_lift =
                            Some(interval(c.absolute_lift, c.absolute_interval, level));
                        if let (Some(lift), Some(relative)) = (c.relative_lift, c.relative_interval)
                        {
                            result.relative_lift = Some(interval(lift, relative, level));
                        }
                        if let Some(reason) = c.relative_undefined {
                            result.relative_lift_note = reason.to_string();
                        }
                        result.sequential_absolute_lift =
                            Some(interval(c.absolute_lift, c.sequential_interval, level));
                        result.p_value = Some(c.p_value);
                        result.sequential_p_value = Some(c.sequential_p_value);
                        result.improvement = Some(match goal.direction {
                            MetricDirection::Increase => c.absolute_lift > 0.0,
                            MetricDirection::Decrease => c.absolute_lift < 0.0,
                        });
                        tested.push((m, v));
                        p_values.push(c.p_value);
                    }
                    Err(err) => result.note = err.to_string(),
                }
                if let Ok(b) =
                    arms.and_then(|(c, t)| vexil_stats::bayesian(test_kind, &c, &t, spec.alpha))
                {
                    let (chance, loss, loss_of_control) = match goal.direction {
                        MetricDirection::Increase => {
                            (b.chance_above, b.expected_loss_above, b.expected_loss_below)
                        }
                        MetricDirection::Decrease => (
                            1.0 - b.chance_above,
                            b.expected_loss_below,
                            b.expected_loss_above,
                        ),
                    };
                    result.chance_to_beat_control = Some(chance);
                    result.expected_loss = Some(loss);
                    result.expected_loss_of_control = Some(loss_of_control);
                    // The posterior is normal: its mean is the interval's midpoint.
                    let posterior_mean =
                        (b.credible_interval.lower + b.credible_interval.upper) / 2.0;
                    result.credible_interval =
                        Some(interval(posterior_mean, b.credible_interval, level));
                }
                if m == 0 {
                    let design = vexil_stats::Design {
                        kind,
                        baseline_mean: spec.baseline_mean,
                        baseline_std_dev: spec.baseline_std_dev,
                        minimum_detectable_effect: spec.minimum_detectable_effect,
                        alpha: spec.alpha,
                        power: spec.power,
                        treatments,
                        one_sided: spec.one_sided,
                    };
                    let n = control_summary.n.min(s.n);
                    if n > 0 {
                        result.power = vexil_stats::achieved_power(&design, n).ok();
                    }
                }
            }
            variations.push(result);
        }
        results.push(pb::MetricResult {
            metric: Some(convert::experiment_metric(goal)),
            primary: m == 0,
            variations,
            definition: Some(convert::metric(definition)),
        });
    }
    let adjusted = vexil_stats::holm(&p_values);
    for ((m, v), p) in tested.into_iter().zip(adjusted) {
        let result = &mut results[m].variations[v];
        result.adjusted_p_value = Some(p);
        result.significant = p < spec.alpha;
    }
    let smallest = observed.iter().copied().min().unwrap_or(0);
    let alerts = alerts_of(&results, srm_detected, srm_p_value, spec.alpha);
    Ok(pb::ExperimentResults {
        experiment_key: x.key.clone(),
        computed_at: Some(convert::timestamp(now_millis())),
        exposures,
        srm_p_value,
        srm_detected,
        metrics: results,
        srm_chi_square,
        multiple_exposure_contexts: aggregates.units.multiple,
        required_sample_size: spec.required_sample_size,
        sample_collected: if spec.required_sample_size > 0 {
            smallest as f64 / spec.required_sample_size as f64
        } else {
            0.0
        },
        until: Some(convert::timestamp(until)),
        alpha: spec.alpha,
        one_sided: spec.one_sided,
        alerts,
    })
}

/// The alerts of a set of results, from the always-valid tests only (the results may be read
/// at any time, so only those are safe to act on): a primary metric whose sequential test
/// crossed its boundary, a guardrail significantly worse, a sample-ratio mismatch.
fn alerts_of(
    metrics: &[pb::MetricResult],
    srm_detected: bool,
    srm_p_value: f64,
    alpha: f64,
) -> Vec<pb::ExperimentAlert> {
    let mut alerts = Vec::new();
    if srm_detected {
        alerts.push(pb::ExperimentAlert {
            kind: pb::ExperimentAlertKind::SampleRatioMismatch as i32,
            metric_key: String::new(),
            variation: 0,
            message: format!(
                "the contexts per variation do not match the weights (chi-square p = {srm_p_value:.2e}): \
                 no result of this experiment should be trusted"
            ),
        });
    }
    for metric in metrics {
        let key = metric
            .metric
            .as_ref()
            .map(|m| m.metric_key.clone())
            .unwrap_or_default();
        for result in metric.variations.iter().skip(1) {
            let (Some(p), Some(lift)) = (result.sequential_p_value, &result.absolute_lift) else {
                continue;
            };
            if p > alpha {
                continue;
            }
            let (kind, what) = if metric.primary {
                let way = if result.improvement == Some(true) {
                    "better"
                } else {
                    "worse"
                };
                (
                    pb::ExperimentAlertKind::SignificanceReached,
                    format!("the primary metric `{key}` is significantly {way}"),
                )
            } else if result.improvement == Some(false) {
                (
                    pb::ExperimentAlertKind::GuardrailRegressed,
                    format!("the guardrail `{key}` regressed"),
                )
            } else {
                continue;
            };
            alerts.push(pb::ExperimentAlert {
                kind: kind as i32,
                metric_key: key.clone(),
                variation: result.variation,
                message: format!(
                    "{what} in variation {}: absolute lift {:+.4}, always-valid p = {p:.2e} (alpha {alpha})",
                    result.variation, lift.estimate
                ),
            });
        }
    }
    alerts
}
