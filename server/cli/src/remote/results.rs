//! An experiment's results: as JSON, as a table, and over time as an SVG chart.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, Outcome};
use super::metrics::{kind_label, kind_name};
use super::output::{print_json, table, time};
use crate::convert;

pub(super) async fn results_at(
    c: &Client,
    environment: &str,
    key: &str,
    until: Option<prost_types::Timestamp>,
) -> Outcome<pb::ExperimentResults> {
    let request = c.req(pb::GetExperimentResultsRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: key.to_owned(),
        until,
    })?;
    Ok(c.experiments()
        .get_experiment_results(request)
        .await?
        .into_inner())
}

pub(super) fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn interval_json(i: Option<&pb::ConfidenceInterval>) -> Value {
    // An infinite end (a one-sided bound) is null: JSON has no infinity.
    let end = |x: f64| {
        if x.is_finite() {
            Value::from(x)
        } else {
            Value::Null
        }
    };
    i.map_or(
        Value::Null,
        |i| json!({ "estimate": i.estimate, "lower": end(i.lower), "upper": end(i.upper), "level": i.level }),
    )
}

fn results_json(r: &pb::ExperimentResults) -> Value {
    json!({
        "experiment": r.experiment_key,
        "computed_at": time(r.computed_at.as_ref()),
        "until": time(r.until.as_ref()),
        "alpha": r.alpha,
        "one_sided": r.one_sided,
        "alerts": r.alerts.iter().map(|a| json!({
            "kind": vexil_proto::experiment_alert_kind_name(a.kind),
            "metric": if a.metric_key.is_empty() { Value::Null } else { Value::from(a.metric_key.clone()) },
            "variation": a.variation,
            "message": a.message,
        })).collect::<Vec<_>>(),
        "exposures": r.exposures.iter().map(|e| json!({"variation": e.variation, "contexts": e.units, "weight": e.weight})).collect::<Vec<_>>(),
        "multiple_exposure_contexts": r.multiple_exposure_contexts,
        "srm": { "chi_square": r.srm_chi_square, "p_value": r.srm_p_value, "mismatch": r.srm_detected },
        "required_sample_size": r.required_sample_size,
        "sample_collected": r.sample_collected,
        "metrics": r.metrics.iter().map(|m| json!({
            "metric": goal_json(m.metric.as_ref()),
            "kind": m.definition.as_ref().map(|d| kind_name(d.kind)),
            "event": m.definition.as_ref().map(|d| d.event_name.clone()),
            "primary": m.primary,
            "variations": m.variations.iter().map(|v| json!({
                "variation": v.variation,
                "contexts": v.units,
                "sum": v.sum,
                "sum_of_squares": v.sum_of_squares,
                "mean": v.mean,
                "variance": v.variance,
                "quantile_interval": interval_json(v.quantile_interval.as_ref()),
                "absolute_lift": interval_json(v.absolute_lift.as_ref()),
                "relative_lift": interval_json(v.relative_lift.as_ref()),
                "relative_lift_note": if v.relative_lift_note.is_empty() { Value::Null } else { Value::from(v.relative_lift_note.clone()) },
                "cuped_variance_reduction": v.cuped_variance_reduction,
                "sequential_absolute_lift": interval_json(v.sequential_absolute_lift.as_ref()),
                "p_value": v.p_value,
                "sequential_p_value": v.sequential_p_value,
                "adjusted_p_value": v.adjusted_p_value,
                "power": v.power,
                "bayesian": v.chance_to_beat_control.map(|chance| json!({
                    "chance_to_beat_control": chance,
                    "expected_loss": v.expected_loss,
                    "expected_loss_of_control": v.expected_loss_of_control,
                    "credible_interval": interval_json(v.credible_interval.as_ref()),
                })),
                "significant": v.significant,
                "improvement": v.improvement,
                "note": if v.note.is_empty() { Value::Null } else { Value::from(v.note.clone()) },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn number(value: f64) -> String {
    if value == 0.0 || (value.abs() >= 0.001 && value.abs() < 1e6) {
        format!("{value:.4}")
    } else {
        format!("{value:.3e}")
    }
}

fn p(value: Option<f64>) -> String {
    match value {
        Some(v) if v < 0.0001 => "<0.0001".to_owned(),
        Some(v) => format!("{v:.4}"),
        None => "-".to_owned(),
    }
}

fn interval_text(i: Option<&pb::ConfidenceInterval>, scale: f64, unit: &str) -> String {
    let end = |x: f64| {
        if x.is_finite() {
            format!("{:+.4}", x * scale)
        } else if x > 0.0 {
            "+inf".to_owned()
        } else {
            "-inf".to_owned()
        }
    };
    match i {
        Some(i) => format!(
            "{:+.4}{unit} [{}, {}]",
            i.estimate * scale,
            end(i.lower),
            end(i.upper)
        ),
        None => "-".to_owned(),
    }
}

/// Prints results: with `--json` as JSON, else as tables for people.
pub(super) fn print_results(json: bool, r: &pb::ExperimentResults) {
    if json {
        print_json(&results_json(r));
        return;
    }
    println!(
        "experiment {} as of {} (alpha {})",
        r.experiment_key,
        time(r.until.as_ref()),
        r.alpha
    );
    println!();
    let rows: Vec<Vec<String>> = r
        .exposures
        .iter()
        .enumerate()
        .map(|(i, e)| {
            vec![
                if i == 0 {
                    format!("{} (control)", e.variation)
                } else {
                    e.variation.to_string()
                },
                format!("{}%", percent(e.weight)),
                e.units.to_string(),
            ]
        })
        .collect();
    table(&["VARIATION", "WEIGHT", "CONTEXTS"], &rows);
    println!();
    println!(
        "sample ratio: chi-square {:.3}, p = {} -> {}",
        r.srm_chi_square,
        p(Some(r.srm_p_value)),
        if r.srm_detected {
            "MISMATCH: the split does not match the weights; do not trust these results"
        } else {
            "ok"
        }
    );
    println!(
        "excluded: {} contexts exposed to more than one variation",
        r.multiple_exposure_contexts
    );
    for alert in &r.alerts {
        println!(
            "ALERT {}: {}",
            vexil_proto::experiment_alert_kind_name(alert.kind),
            alert.message
        );
    }
    if r.one_sided {
        println!(
            "tests: one-sided at alpha {}: the primary metric for an improvement, guardrails for a \
             regression (significant = regressed); intervals are bounds",
            r.alpha
        );
    }
    println!(
        "sample: {:.1}% of the {} contexts needed per variation",
        r.sample_collected * 100.0,
        r.required_sample_size
    );
    for m in &r.metrics {
        let goal = m.metric.as_ref();
        let definition = m.definition.as_ref();
        println!();
        println!(
            "metric {} ({}{}, {} is better, event {})",
            goal.map(|g| g.metric_key.as_str()).unwrap_or_default(),
            definition.map(kind_label).unwrap_or_default(),
            if m.primary {
                ", primary"
            } else {
                ", guardrail"
            },
            goal.map(|g| if direction_name(g.direction) == "decrease" {
                "lower"
            } else {
                "higher"
            })
            .unwrap_or("higher"),
            definition
                .map(|d| d.event_name.as_str())
                .unwrap_or_default(),
        );
        let rows: Vec<Vec<String>> = m
            .variations
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i == 0 {
                    return vec![
                        format!("{} (control)", v.variation),
                        v.units.to_string(),
                        number(v.mean),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        String::new(),
                    ];
                }
                let verdict = if !v.note.is_empty() {
                    format!("n/a: {}", v.note)
                } else if v.significant {
                    if v.improvement == Some(true) {
                        "better".to_owned()
                    } else {
                        "WORSE".to_owned()
                    }
                } else {
                    "not significant".to_owned()
                };
                vec![
                    v.variation.to_string(),
                    v.units.to_string(),
                    number(v.mean),
                    interval_text(v.absolute_lift.as_ref(), 1.0, ""),
                    if v.relative_lift.is_none() && !v.relative_lift_note.is_empty() {
                        "undefined (see below)".to_owned()
                    } else {
                        interval_text(v.relative_lift.as_ref(), 100.0, "%")
                    },
                    p(v.p_value),
                    p(v.sequential_p_value),
                    p(v.adjusted_p_value),
                    v.power
                        .map_or_else(|| "-".to_owned(), |x| format!("{:.0}%", x * 100.0)),
                    v.chance_to_beat_control
                        .map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", x * 100.0)),
                    verdict,
                ]
            })
            .collect();
        table(
            &[
                "VARIATION",
                "CONTEXTS",
                "MEAN",
                "ABSOLUTE LIFT [CI]",
                "RELATIVE LIFT [CI]",
                "P",
                "ALWAYS-VALID P",
                "HOLM P",
                "POWER",
                "P(BETTER)",
                "VERDICT",
            ],
            &rows,
        );
        for v in &m.variations {
            if let (Some(q), Some(d)) = (&v.quantile_interval, definition) {
                println!(
                    "variation {}: {} {} [{}, {}] ({:.0}% distribution-free interval)",
                    v.variation,
                    super::metrics::percentile(d.quantile),
                    number(q.estimate),
                    number(q.lower),
                    number(q.upper),
                    q.level * 100.0
                );
            }
            if let Some(reduction) = v.cuped_variance_reduction {
                println!(
                    "variation {}: CUPED removed {:.0}% of the variance",
                    v.variation,
                    reduction * 100.0
                );
            }
            if v.relative_lift.is_none() && !v.relative_lift_note.is_empty() {
                println!(
                    "variation {}: no relative lift: {}",
                    v.variation, v.relative_lift_note
                );
            }
        }
    }
}

/// Results at successive cut-offs from the start (or creation) to `end` (seconds).
pub(super) async fn results_over_time(
    c: &Client,
    environment: &str,
    x: &pb::Experiment,
    end: i64,
    step: StepArg,
) -> Outcome<Vec<(i64, pb::ExperimentResults)>> {
    const MAX_POINTS: i64 = 60;
    let start = x
        .started_at
        .as_ref()
        .or(x.created_at.as_ref())
        .map_or(end, |t| t.seconds);
    let end = x.stopped_at.as_ref().map_or(end, |t| t.seconds.min(end));
    let span = (end - start).max(0);
    let hour = 3600;
    let step = match step {
        StepArg::Hourly => hour,
        StepArg::Daily => 24 * hour,
        StepArg::Auto if span <= 3 * 24 * hour => hour,
        StepArg::Auto => 24 * hour,
    };
    // Too many points for one chart: widen the step, in whole hours.
    let step = step.max((span + MAX_POINTS - 1) / MAX_POINTS).max(1);
    let step = (step + hour - 1) / hour * hour;
    // Points on hour boundaries, each read as of the millisecond before it: the server
    // then sums whole hourly roll-ups and never recounts raw events. The last point is
    // the end itself.
    let mut cut_offs = Vec::new();
    let mut t = start - start.rem_euclid(hour) + step;
    while t < end {
        cut_offs.push(t);
        t += step;
    }
    cut_offs.push(end);
    let mut series = Vec::with_capacity(cut_offs.len());
    for t in cut_offs {
        let until = if t < end {
            prost_types::Timestamp {
                seconds: t - 1,
                nanos: 999_000_000,
            }
        } else {
            prost_types::Timestamp {
                seconds: t,
                nanos: 0,
            }
        };
        series.push((t, results_at(c, environment, &x.key, Some(until)).await?));
    }
    Ok(series)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A point of a lift chart: time, estimate, interval bounds, confidence sequence bounds.
type Point = (i64, f64, f64, f64, f64, f64);

/// One panel per metric and treatment: the relative lift over time with its confidence
/// interval (band) and confidence sequence (dashed), and the zero line.
pub(super) fn render_svg(x: &pb::Experiment, series: &[(i64, pb::ExperimentResults)]) -> String {
    const WIDTH: f64 = 760.0;
    const PANEL: f64 = 220.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 50.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = PANEL - 70.0;
    // Panels: (metric index, variation index).
    let mut panels = Vec::new();
    if let Some((_, last)) = series.last() {
        for (m, metric) in last.metrics.iter().enumerate() {
            for v in 1..metric.variations.len() {
                panels.push((m, v));
            }
        }
    }
    // The latest results' alerts, one line each under the subtitle, in red.
    let alerts: Vec<&pb::ExperimentAlert> = series
        .last()
        .map(|(_, last)| last.alerts.iter().collect())
        .unwrap_or_default();
    let top_margin = TOP + 16.0 * alerts.len() as f64;
    let height = top_margin + PANEL * panels.len().max(1) as f64 + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}: absolute lift over time</text>"#,
        escape(&x.key)
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="40" fill="#555">band: {:.0}% confidence {}; dashed: confidence sequence (valid at any time)</text>"##,
        (1.0 - x.alpha) * 100.0,
        if x.one_sided {
            "bound (one-sided: the band runs to the edge)"
        } else {
            "interval"
        }
    );
    for (i, alert) in alerts.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{}" fill="#c00">ALERT {}: {}</text>"##,
            TOP + 6.0 + 16.0 * i as f64,
            vexil_proto::experiment_alert_kind_name(alert.kind),
            escape(&alert.message)
        );
    }
    if panels.is_empty() || series.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}">no data yet</text>"#,
            top_margin + 20.0
        );
        out.push_str("</svg>\n");
        return out;
    }
    let (t0, t1) = (series[0].0, series[series.len() - 1].0);
    let tx = |t: i64| {
        if t1 > t0 {
            LEFT + (t - t0) as f64 / (t1 - t0) as f64 * plot_width
        } else {
            LEFT + plot_width / 2.0
        }
    };
    for (p, &(m, v)) in panels.iter().enumerate() {
        let top = top_margin + PANEL * p as f64 + 20.0;
        // (time, estimate, lower, upper, sequential lower, sequential upper)
        let points: Vec<Point> = series
            .iter()
            .filter_map(|(t, r)| {
                let result = r.metrics.get(m)?.variations.get(v)?;
                let lift = result.absolute_lift.as_ref()?;
                let seq = result.sequential_absolute_lift.as_ref().unwrap_or(lift);
                // A one-sided bound has an infinite end, drawn to the panel's edge.
                let values = [lift.estimate, lift.lower, lift.upper, seq.lower, seq.upper];
                values.iter().all(|x| !x.is_nan()).then_some((
                    *t,
                    lift.estimate,
                    lift.lower,
                    lift.upper,
                    seq.lower,
                    seq.upper,
                ))
            })
            .collect();
        let last = &series[series.len() - 1].1;
        let metric_key = last.metrics[m]
            .metric
            .as_ref()
            .map(|g| g.metric_key.clone())
            .unwrap_or_default();
        // What the lift is a lift of, for the kinds whose value is not a plain mean.
        let kind = last.metrics[m]
            .definition
            .as_ref()
            .filter(|d| {
                d.kind == pb::MetricKind::Quantile as i32 || d.kind == pb::MetricKind::Ratio as i32
            })
            .map(|d| format!(" ({})", kind_label(d)))
            .unwrap_or_default();
        let latest = &last.metrics[m].variations[v];
        let variation = latest.variation;
        let chance = latest
            .chance_to_beat_control
            .map(|chance| format!(" (chance to beat control {:.1}%)", chance * 100.0))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{}{kind} — variation {variation} vs control{chance}</text>"#,
            top - 6.0,
            escape(&metric_key)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#ccc"/>"##
        );
        if points.is_empty() {
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" fill="#555">not enough data for a comparison yet</text>"##,
                LEFT + 10.0,
                top + plot_height / 2.0
            );
            continue;
        }
        let mut low = 0.0_f64;
        let mut high = 0.0_f64;
        for p in &points {
            for value in [p.1, p.2, p.3, p.4, p.5] {
                if value.is_finite() {
                    low = low.min(value);
                    high = high.max(value);
                }
            }
        }
        if high - low < 1e-12 {
            high += 1.0;
            low -= 1.0;
        }
        let pad = (high - low) * 0.05;
        let (low, high) = (low - pad, high + pad);
        let ty = |y: f64| top + (high - y.clamp(low, high)) / (high - low) * plot_height;
        // Axis labels.
        for (value, label) in [(high, high), (0.0, 0.0), (low, low)] {
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
                LEFT - 6.0,
                ty(value) + 4.0,
                number(label)
            );
        }
        // Confidence band.
        let mut band = String::new();
        for p in &points {
            let _ = write!(band, "{:.1},{:.1} ", tx(p.0), ty(p.3));
        }
        for p in points.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", tx(p.0), ty(p.2));
        }
        let _ = writeln!(
            out,
            r##"<polygon points="{}" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>"##,
            band.trim_end()
        );
        let line = |pick: &dyn Fn(&Point) -> f64| {
            points
                .iter()
                .map(|p| format!("{:.1},{:.1}", tx(p.0), ty(pick(p))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for pick in [
            &(|p: &Point| p.4) as &dyn Fn(&Point) -> f64,
            &|p: &Point| p.5,
        ] {
            let _ = writeln!(
                out,
                r##"<polyline points="{}" fill="none" stroke="#08519c" stroke-dasharray="4 3"/>"##,
                line(pick)
            );
        }
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#08306b" stroke-width="2"/>"##,
            line(&|p| p.1)
        );
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#d62728"/>"##,
            LEFT + plot_width,
            y = ty(0.0)
        );
        // Time labels: first and last cut-off.
        for (t, anchor) in [(t0, "start"), (t1, "end")] {
            let label = convert::format_time(&prost_types::Timestamp {
                seconds: t,
                nanos: 0,
            });
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{}" text-anchor="{anchor}" fill="#555">{}</text>"##,
                tx(t),
                top + plot_height + 16.0,
                &label[..16]
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StepArg {
    Auto,
    Hourly,
    Daily,
}

pub(super) fn direction_name(direction: i32) -> &'static str {
    match pb::MetricDirection::try_from(direction) {
        Ok(pb::MetricDirection::Decrease) => "decrease",
        _ => "increase",
    }
}

pub(super) fn goal_json(m: Option<&pb::ExperimentMetric>) -> Value {
    m.map_or(
        Value::Null,
        |m| json!({ "metric_key": m.metric_key, "direction": direction_name(m.direction) }),
    )
}

pub(super) fn percent(thousandths: u32) -> String {
    let value = f64::from(thousandths) / 1000.0;
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift(estimate: f64, lower: f64, upper: f64) -> Option<pb::ConfidenceInterval> {
        Some(pb::ConfidenceInterval {
            estimate,
            lower,
            upper,
            level: 0.95,
        })
    }

    /// A one-sided experiment's bound (an infinite end) is drawn to the panel's edge, the
    /// chance to beat control is in the panel's title, and alerts are listed in red.
    #[test]
    fn the_chart_draws_bounds_chances_and_alerts() {
        let experiment = pb::Experiment {
            key: "checkout".into(),
            alpha: 0.05,
            one_sided: true,
            ..Default::default()
        };
        let results = |t: i64| {
            let treatment = pb::VariationMetricResult {
                variation: 1,
                absolute_lift: lift(0.02 + t as f64 * 1e-5, 0.005, f64::INFINITY),
                sequential_absolute_lift: lift(0.02, -0.01, f64::INFINITY),
                chance_to_beat_control: Some(0.973),
                ..Default::default()
            };
            pb::ExperimentResults {
                metrics: vec![pb::MetricResult {
                    metric: Some(pb::ExperimentMetric {
                        metric_key: "purchase-rate".into(),
                        direction: pb::MetricDirection::Increase as i32,
                    }),
                    primary: true,
                    variations: vec![pb::VariationMetricResult::default(), treatment],
                    definition: Some(pb::Metric {
                        kind: pb::MetricKind::Quantile as i32,
                        quantile: 0.9,
                        ..Default::default()
                    }),
                }],
                alerts: vec![pb::ExperimentAlert {
                    kind: pb::ExperimentAlertKind::GuardrailRegressed as i32,
                    metric_key: "latency".into(),
                    variation: 1,
                    message: "the guardrail `latency` regressed in variation 1".into(),
                }],
                ..Default::default()
            }
        };
        let series = vec![(0, results(0)), (3600, results(3600))];
        let chart = render_svg(&experiment, &series);
        assert!(chart.contains("one-sided"), "{chart}");
        assert!(chart.contains("chance to beat control 97.3%"), "{chart}");
        assert!(
            chart.contains("purchase-rate (quantile p90) — variation 1"),
            "{chart}"
        );
        assert_eq!(super::super::metrics::percentile(0.999), "p99.9");
        assert_eq!(super::super::metrics::percentile(0.5), "p50");
        assert!(
            chart.contains("ALERT guardrail_regressed: the guardrail `latency` regressed"),
            "{chart}"
        );
        assert!(!chart.contains("not enough data"), "{chart}");
        assert!(!chart.contains("inf") && !chart.contains("NaN"), "{chart}");
        assert!(chart.contains("<polygon"), "{chart}");
    }
}
