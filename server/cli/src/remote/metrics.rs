//! `vexil metrics`: the metrics experiments measure.

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, InProject, Outcome, all_pages};
use super::output::{print_json_or, print_list, time};

/// `vexil metrics`.
pub type MetricsArgs = InProject<MetricsCommand>;

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Define a metric of the project.
    Create {
        /// The metric's key.
        key: String,
        /// The tracked event it reads.
        #[arg(long)]
        event: String,
        /// How the event aggregates per context.
        #[arg(long, value_enum)]
        kind: MetricKindArg,
        /// The denominator's event of a `ratio` metric (an event without a value counts 1).
        #[arg(long, required_if_eq("kind", "ratio"))]
        denominator: Option<String>,
        /// The level of a `quantile` metric, strictly between 0 and 1 (0.5 for the median,
        /// 0.9 for p90).
        #[arg(long, required_if_eq("kind", "quantile"))]
        quantile: Option<f64>,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
        /// A description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the project's metrics.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MetricKindArg {
    /// Whether the context sent the event after its first exposure.
    Conversion,
    /// How many times it sent the event.
    Count,
    /// The sum of the event's values per context.
    Sum,
    /// The mean of the event's values per context.
    Mean,
    /// Σ of the event's values over Σ of the --denominator event's, such as revenue per
    /// session.
    Ratio,
    /// The --quantile level (p50, p90, ...) across contexts of each context's mean value, such
    /// as latency.
    Quantile,
}

pub async fn metrics(c: Client, args: MetricsArgs) -> Outcome {
    let mut svc = c.experiments();
    match args.command {
        MetricsCommand::Create {
            key,
            event,
            kind,
            denominator,
            quantile,
            name,
            description,
        } => {
            let kind = match kind {
                MetricKindArg::Conversion => pb::MetricKind::Conversion,
                MetricKindArg::Count => pb::MetricKind::Count,
                MetricKindArg::Sum => pb::MetricKind::Sum,
                MetricKindArg::Mean => pb::MetricKind::Mean,
                MetricKindArg::Ratio => pb::MetricKind::Ratio,
                MetricKindArg::Quantile => pb::MetricKind::Quantile,
            };
            let request = c.req(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    project_key: c.project.clone(),
                    key,
                    name,
                    description,
                    event_name: event,
                    kind: kind as i32,
                    denominator_event_name: denominator.unwrap_or_default(),
                    quantile: quantile.unwrap_or_default(),
                    ..Default::default()
                }),
            })?;
            let m = svc.create_metric(request).await?.into_inner();
            let per = if m.denominator_event_name.is_empty() {
                String::new()
            } else {
                format!(" per event {}", m.denominator_event_name)
            };
            print_json_or(
                c.json,
                &metric_json(&m),
                format_args!(
                    "created metric {} ({} of event {}{per})",
                    m.key,
                    kind_label(&m),
                    m.event_name
                ),
            );
        }
        MetricsCommand::List => {
            let all = all_pages!(c, svc, list_metrics, metrics, |page| {
                pb::ListMetricsRequest {
                    project_key: c.project.clone(),
                    page: Some(page),
                }
            })
            .await?;
            print_list(
                c.json,
                &all,
                metric_json,
                &["KEY", "KIND", "EVENT", "NAME"],
                |m| {
                    let event = if m.denominator_event_name.is_empty() {
                        m.event_name.clone()
                    } else {
                        format!("{} / {}", m.event_name, m.denominator_event_name)
                    };
                    vec![m.key.clone(), kind_label(m), event, m.name.clone()]
                },
            );
        }
    }
    Ok(())
}

fn metric_json(m: &pb::Metric) -> Value {
    json!({
        "key": m.key,
        "name": m.name,
        "description": m.description,
        "event": m.event_name,
        "kind": kind_name(m.kind),
        "denominator_event": if m.denominator_event_name.is_empty() { Value::Null } else { Value::from(m.denominator_event_name.clone()) },
        "quantile": if m.kind == pb::MetricKind::Quantile as i32 { Value::from(m.quantile) } else { Value::Null },
        "version": m.version,
        "created_at": time(m.created_at.as_ref()),
    })
}

/// The name of a metric kind.
pub(super) fn kind_name(kind: i32) -> String {
    crate::convert::enum_value_name(kind, pb::MetricKind::as_str_name, "unknown")
}

/// A metric's kind for people: a quantile metric with its level as a percentile (`quantile
/// p90`, `quantile p99.9`).
pub(super) fn kind_label(m: &pb::Metric) -> String {
    if m.kind == pb::MetricKind::Quantile as i32 {
        format!("quantile {}", percentile(m.quantile))
    } else {
        kind_name(m.kind)
    }
}

/// `p90` for 0.9, `p99.9` for 0.999: the level in percent without trailing zeros.
pub(super) fn percentile(level: f64) -> String {
    let percent = format!("{:.4}", level * 100.0);
    format!("p{}", percent.trim_end_matches('0').trim_end_matches('.'))
}
