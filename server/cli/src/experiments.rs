//! `vexil experiments …`, `vexil metrics …`, `vexil flags usage` and `vexil flags stale`:
//! the ExperimentService from the command line, with a results table and an SVG chart of
//! each lift over time.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use vexil_proto::v1 as pb;
use vexil_proto::v1::experiment_service_client::ExperimentServiceClient;

use crate::convert;
use crate::remote::{Client, Connection, EnvironmentArg, Outcome, print_json, table, time};

#[derive(Debug, Args)]
pub struct ExperimentsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(flatten)]
    env: EnvironmentArg,
    #[command(subcommand)]
    command: ExperimentsCommand,
}

#[derive(Debug, Subcommand)]
enum ExperimentsCommand {
    /// Create an experiment (a draft) on a flag's rule or fallthrough; prints the sample
    /// size it needs.
    Create(Box<CreateExperiment>),
    /// List the environment's experiments.
    List {
        /// Only experiments in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only experiments on this flag.
        #[arg(long)]
        flag: Option<String>,
    },
    /// Show one experiment.
    Get {
        /// The experiment's key.
        key: String,
    },
    /// Start a draft: the flag's rule or fallthrough starts serving the experiment.
    Start {
        /// The experiment's key.
        key: String,
        /// The experiment version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Stop a running experiment: its serve becomes the control for everyone.
    Stop {
        /// The experiment's key.
        key: String,
        /// The experiment version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Record the decision: ship a variation (`--ship N`) or roll back (`--roll-back`).
    Decide {
        /// The experiment's key.
        key: String,
        /// The variation index that ships.
        #[arg(
            long,
            conflicts_with = "roll_back",
            required_unless_present = "roll_back"
        )]
        ship: Option<u32>,
        /// Put back the serve the flag had before the experiment.
        #[arg(long)]
        roll_back: bool,
        /// Why.
        #[arg(long, default_value = "")]
        rationale: String,
        /// Write the decision into the flag's configuration.
        #[arg(long)]
        apply: bool,
        /// The experiment version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Print the results: contexts per variation, the sample-ratio check, and per metric
    /// each treatment against the control.
    Results {
        /// The experiment's key.
        key: String,
        /// Results as of this time (RFC 3339, a date, or epoch seconds); now when not given.
        #[arg(long)]
        until: Option<String>,
        /// Also write an SVG chart of each lift and its intervals over time to this file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Points of the chart: hourly or daily cut-offs (auto: hourly up to three days).
        #[arg(long, value_enum, default_value = "auto")]
        step: StepArg,
    },
}

#[derive(Debug, Args)]
struct CreateExperiment {
    /// The experiment's key.
    key: String,
    /// The flag experimented on.
    #[arg(long)]
    flag: String,
    /// The rule (by id) whose serve carries the experiment; the fallthrough when not given.
    #[arg(long)]
    rule: Option<String>,
    /// A name for people.
    #[arg(long, default_value = "")]
    name: String,
    /// The hypothesis tested.
    #[arg(long, default_value = "")]
    hypothesis: String,
    /// The variation indexes compared, control first, such as `0,1`.
    #[arg(long, value_delimiter = ',', required = true)]
    variations: Vec<u32>,
    /// Their weights in percent, such as `50,50`; an equal split when not given.
    #[arg(long, value_delimiter = ',')]
    weights: Vec<f64>,
    /// Share of the contexts reaching the serve that enter the experiment, in percent.
    #[arg(long, default_value_t = 100.0)]
    traffic: f64,
    /// The layer whose experiments are mutually exclusive; the key when not given.
    #[arg(long, default_value = "")]
    layer: String,
    /// Where the experiment's range starts in its layer, in percent.
    #[arg(long, default_value_t = 0.0)]
    layer_offset: f64,
    /// The primary metric's key; append `:decrease` when lower is better.
    #[arg(long)]
    primary: String,
    /// A guardrail metric's key, `:decrease` when lower is better (repeatable).
    #[arg(long = "guardrail")]
    guardrails: Vec<String>,
    /// The smallest relative lift worth detecting, such as 0.05 for +5 %.
    #[arg(long)]
    mde: f64,
    /// The primary metric's expected control mean (a rate for conversions).
    #[arg(long)]
    baseline: f64,
    /// The primary metric's expected per-context standard deviation (not for conversions).
    #[arg(long)]
    baseline_std_dev: Option<f64>,
    /// Significance level.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Desired power.
    #[arg(long, default_value_t = 0.8)]
    power: f64,
    /// Bucket by `kind:attribute` instead of the user key.
    #[arg(long)]
    bucket_by: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Draft,
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StepArg {
    Auto,
    Hourly,
    Daily,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    command: MetricsCommand,
}

#[derive(Debug, Subcommand)]
enum MetricsCommand {
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
enum MetricKindArg {
    /// Whether the context sent the event after its first exposure.
    Conversion,
    /// How many times it sent the event.
    Count,
    /// The sum of the event's values per context.
    Sum,
    /// The mean of the event's values per context.
    Mean,
}

fn service(c: &Client) -> ExperimentServiceClient<tonic::transport::Channel> {
    ExperimentServiceClient::new(c.channel.clone())
}

/// Percent to thousandths of a percent.
fn thousandths(field: &str, percent: f64) -> anyhow::Result<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        bail!("{field}: a percentage from 0 to 100, got {percent}");
    }
    Ok((percent * 1000.0).round() as u32)
}

fn metric_goal(text: &str) -> anyhow::Result<pb::ExperimentMetric> {
    let (key, direction) = match text.rsplit_once(':') {
        Some((key, "decrease")) => (key, pb::MetricDirection::Decrease),
        Some((key, "increase")) => (key, pb::MetricDirection::Increase),
        Some((_, other)) => {
            bail!("{text}: the direction is `increase` or `decrease`, not `{other}`")
        }
        None => (text, pb::MetricDirection::Increase),
    };
    Ok(pb::ExperimentMetric {
        metric_key: key.to_owned(),
        direction: direction as i32,
    })
}

fn weighted(args: &CreateExperiment) -> anyhow::Result<Vec<pb::WeightedVariation>> {
    let n = args.variations.len();
    if n == 0 {
        bail!("--variations: give the variation indexes, control first");
    }
    let weights: Vec<u32> = if args.weights.is_empty() {
        let share = 100_000 / n as u32;
        (0..n)
            .map(|i| {
                if i + 1 == n {
                    100_000 - share * (n as u32 - 1)
                } else {
                    share
                }
            })
            .collect()
    } else if args.weights.len() != n {
        bail!(
            "--weights: {} weights for {n} variations",
            args.weights.len()
        );
    } else {
        args.weights
            .iter()
            .map(|w| thousandths("--weights", *w))
            .collect::<anyhow::Result<_>>()?
    };
    Ok(args
        .variations
        .iter()
        .zip(weights)
        .map(|(&variation, weight)| pb::WeightedVariation { variation, weight })
        .collect())
}

fn status_name(status: i32) -> &'static str {
    match pb::ExperimentStatus::try_from(status) {
        Ok(pb::ExperimentStatus::Draft) => "draft",
        Ok(pb::ExperimentStatus::Running) => "running",
        Ok(pb::ExperimentStatus::Stopped) => "stopped",
        _ => "unknown",
    }
}

fn kind_name(kind: i32) -> &'static str {
    match pb::MetricKind::try_from(kind) {
        Ok(pb::MetricKind::Conversion) => "conversion",
        Ok(pb::MetricKind::Count) => "count",
        Ok(pb::MetricKind::Sum) => "sum",
        Ok(pb::MetricKind::Mean) => "mean",
        _ => "unknown",
    }
}

fn direction_name(direction: i32) -> &'static str {
    match pb::MetricDirection::try_from(direction) {
        Ok(pb::MetricDirection::Decrease) => "decrease",
        _ => "increase",
    }
}

fn goal_json(m: Option<&pb::ExperimentMetric>) -> Value {
    m.map_or(
        Value::Null,
        |m| json!({ "metric_key": m.metric_key, "direction": direction_name(m.direction) }),
    )
}

fn experiment_json(x: &pb::Experiment) -> Value {
    json!({
        "key": x.key,
        "environment": x.environment_key,
        "name": x.name,
        "hypothesis": x.hypothesis,
        "flag": x.flag_key,
        "rule_id": if x.rule_id.is_empty() { Value::Null } else { Value::from(x.rule_id.clone()) },
        "status": status_name(x.status),
        "variations": x.variations.iter().map(|w| json!({"variation": w.variation, "weight": w.weight})).collect::<Vec<_>>(),
        "traffic_allocation": x.traffic_allocation,
        "layer": x.layer,
        "layer_offset": x.layer_offset,
        "primary_metric": goal_json(x.primary_metric.as_ref()),
        "guardrail_metrics": x.guardrail_metrics.iter().map(|g| goal_json(Some(g))).collect::<Vec<_>>(),
        "minimum_detectable_effect": x.minimum_detectable_effect,
        "baseline_mean": x.baseline_mean,
        "baseline_std_dev": x.baseline_std_dev,
        "alpha": x.alpha,
        "power": x.power,
        "required_sample_size": x.required_sample_size,
        "decision": x.decision.as_ref().map(|d| json!({
            "variation": d.variation,
            "rationale": d.rationale,
            "decided_by": d.decided_by,
            "decided_at": time(d.decided_at.as_ref()),
            "rolled_back": d.rolled_back,
            "applied": d.applied,
        })),
        "version": x.version,
        "created_at": time(x.created_at.as_ref()),
        "started_at": x.started_at.as_ref().map(convert::format_time),
        "stopped_at": x.stopped_at.as_ref().map(convert::format_time),
    })
}

fn print_experiment(c: &Client, x: &pb::Experiment) {
    if c.json {
        print_json(&experiment_json(x));
        return;
    }
    println!("key:          {}", x.key);
    if !x.name.is_empty() && x.name != x.key {
        println!("name:         {}", x.name);
    }
    if !x.hypothesis.is_empty() {
        println!("hypothesis:   {}", x.hypothesis);
    }
    let serve = if x.rule_id.is_empty() {
        "fallthrough".to_owned()
    } else {
        format!("rule {}", x.rule_id)
    };
    println!("flag:         {} ({serve})", x.flag_key);
    println!("status:       {}", status_name(x.status));
    let variations: Vec<String> = x
        .variations
        .iter()
        .map(|w| format!("{} ({}%)", w.variation, percent(w.weight)))
        .collect();
    println!("variations:   {} (control first)", variations.join(", "));
    println!(
        "traffic:      {}% of layer {} from {}%",
        percent(x.traffic_allocation),
        if x.layer.is_empty() { &x.key } else { &x.layer },
        percent(x.layer_offset)
    );
    if let Some(m) = &x.primary_metric {
        println!(
            "primary:      {} ({})",
            m.metric_key,
            direction_name(m.direction)
        );
    }
    for g in &x.guardrail_metrics {
        println!(
            "guardrail:    {} ({})",
            g.metric_key,
            direction_name(g.direction)
        );
    }
    println!(
        "plan:         detect {:+}% relative at alpha {} with power {}: {} contexts per variation",
        x.minimum_detectable_effect * 100.0,
        x.alpha,
        x.power,
        x.required_sample_size
    );
    if let Some(d) = &x.decision {
        let what = if d.rolled_back {
            "rolled back".to_owned()
        } else {
            format!("ship variation {}", d.variation)
        };
        println!(
            "decision:     {what}{} by {} at {}: {}",
            if d.applied { " (applied)" } else { "" },
            d.decided_by,
            time(d.decided_at.as_ref()),
            d.rationale
        );
    }
    println!("version:      {}", x.version);
    println!("created:      {}", time(x.created_at.as_ref()));
    if x.started_at.is_some() {
        println!("started:      {}", time(x.started_at.as_ref()));
    }
    if x.stopped_at.is_some() {
        println!("stopped:      {}", time(x.stopped_at.as_ref()));
    }
}

fn percent(thousandths: u32) -> String {
    let value = f64::from(thousandths) / 1000.0;
    format!("{value}")
}

async fn get_experiment(c: &Client, environment: &str, key: &str) -> Outcome<pb::Experiment> {
    let request = c.req(pb::GetExperimentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(service(c).get_experiment(request).await?.into_inner())
}

async fn version_of(
    c: &Client,
    environment: &str,
    key: &str,
    expected: Option<i64>,
) -> Outcome<i64> {
    match expected {
        Some(v) => Ok(v),
        None => Ok(get_experiment(c, environment, key).await?.version),
    }
}

pub async fn experiments(c: Client, args: ExperimentsArgs) -> Outcome {
    let environment = args.env.environment.as_str();
    let mut svc = service(&c);
    match args.command {
        ExperimentsCommand::Create(create) => {
            let bucket_by = match &create.bucket_by {
                Some(text) => {
                    let Some((kind, attribute)) = text.split_once(':') else {
                        return Err(anyhow::anyhow!(
                            "--bucket-by: give kind:attribute, such as user:key"
                        )
                        .into());
                    };
                    Some(pb::BucketBy {
                        context_kind: kind.to_owned(),
                        attribute: attribute.to_owned(),
                    })
                }
                None => None,
            };
            let experiment = pb::Experiment {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: create.key.clone(),
                name: create.name.clone(),
                hypothesis: create.hypothesis.clone(),
                flag_key: create.flag.clone(),
                rule_id: create.rule.clone().unwrap_or_default(),
                traffic_allocation: thousandths("--traffic", create.traffic)?,
                layer: create.layer.clone(),
                layer_offset: thousandths("--layer-offset", create.layer_offset)?,
                variations: weighted(&create)?,
                bucket_by,
                primary_metric: Some(metric_goal(&create.primary)?),
                guardrail_metrics: create
                    .guardrails
                    .iter()
                    .map(|g| metric_goal(g))
                    .collect::<anyhow::Result<_>>()?,
                alpha: create.alpha,
                power: create.power,
                minimum_detectable_effect: create.mde,
                baseline_mean: create.baseline,
                baseline_std_dev: create.baseline_std_dev,
                ..Default::default()
            };
            let request = c.req(pb::CreateExperimentRequest {
                experiment: Some(experiment),
            })?;
            let x = svc.create_experiment(request).await?.into_inner();
            print_experiment(&c, &x);
        }
        ExperimentsCommand::List { status, flag } => {
            let status = match status {
                None => pb::ExperimentStatus::Unspecified,
                Some(StatusArg::Draft) => pb::ExperimentStatus::Draft,
                Some(StatusArg::Running) => pb::ExperimentStatus::Running,
                Some(StatusArg::Stopped) => pb::ExperimentStatus::Stopped,
            };
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = c.req(pb::ListExperimentsRequest {
                    project_key: c.project.clone(),
                    environment_key: environment.to_owned(),
                    status: status as i32,
                    flag_key: flag.clone().unwrap_or_default(),
                    page: Some(pb::PageRequest {
                        page_size: 1000,
                        page_token: page_token.clone(),
                    }),
                })?;
                let page = svc.list_experiments(request).await?.into_inner();
                all.extend(page.experiments);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if c.json {
                print_json(&Value::Array(all.iter().map(experiment_json).collect()));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|x| {
                        vec![
                            x.key.clone(),
                            status_name(x.status).to_owned(),
                            x.flag_key.clone(),
                            if x.rule_id.is_empty() {
                                "fallthrough".to_owned()
                            } else {
                                format!("rule {}", x.rule_id)
                            },
                            x.primary_metric
                                .as_ref()
                                .map(|m| m.metric_key.clone())
                                .unwrap_or_default(),
                            x.required_sample_size.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "KEY",
                        "STATUS",
                        "FLAG",
                        "SERVE",
                        "PRIMARY",
                        "NEEDED/VARIATION",
                    ],
                    &rows,
                );
            }
        }
        ExperimentsCommand::Get { key } => {
            let x = get_experiment(&c, environment, &key).await?;
            print_experiment(&c, &x);
        }
        ExperimentsCommand::Start {
            key,
            expected_version,
        } => {
            let version = version_of(&c, environment, &key, expected_version).await?;
            let request = c.req(pb::StartExperimentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key,
                expected_version: version,
            })?;
            let x = svc.start_experiment(request).await?.into_inner();
            print_experiment(&c, &x);
        }
        ExperimentsCommand::Stop {
            key,
            expected_version,
        } => {
            let version = version_of(&c, environment, &key, expected_version).await?;
            let request = c.req(pb::StopExperimentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key,
                expected_version: version,
            })?;
            let x = svc.stop_experiment(request).await?.into_inner();
            print_experiment(&c, &x);
        }
        ExperimentsCommand::Decide {
            key,
            ship,
            roll_back,
            rationale,
            apply,
            expected_version,
        } => {
            let version = version_of(&c, environment, &key, expected_version).await?;
            let request = c.req(pb::DecideExperimentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key,
                expected_version: version,
                variation: ship.unwrap_or(0),
                rationale,
                roll_back,
                apply,
            })?;
            let x = svc.decide_experiment(request).await?.into_inner();
            print_experiment(&c, &x);
        }
        ExperimentsCommand::Results {
            key,
            until,
            svg,
            step,
        } => {
            let until = until
                .as_deref()
                .map(convert::parse_time)
                .transpose()
                .context("--until")?;
            let results = results_at(&c, environment, &key, until).await?;
            if c.json {
                print_json(&results_json(&results));
            } else {
                print_results(&results);
            }
            if let Some(path) = svg {
                let x = get_experiment(&c, environment, &key).await?;
                let end = until.map_or_else(now_seconds, |t| t.seconds);
                let series = results_over_time(&c, environment, &x, end, step).await?;
                let chart = render_svg(&x, &series);
                std::fs::write(&path, chart)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                if !c.json {
                    println!();
                    println!("chart written to {}", path.display());
                }
            }
        }
    }
    Ok(())
}

async fn results_at(
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
    Ok(service(c)
        .get_experiment_results(request)
        .await?
        .into_inner())
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn interval_json(i: Option<&pb::ConfidenceInterval>) -> Value {
    i.map_or(
        Value::Null,
        |i| json!({ "estimate": i.estimate, "lower": i.lower, "upper": i.upper, "level": i.level }),
    )
}

fn results_json(r: &pb::ExperimentResults) -> Value {
    json!({
        "experiment": r.experiment_key,
        "computed_at": time(r.computed_at.as_ref()),
        "until": time(r.until.as_ref()),
        "alpha": r.alpha,
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
                "absolute_lift": interval_json(v.absolute_lift.as_ref()),
                "relative_lift": interval_json(v.relative_lift.as_ref()),
                "sequential_absolute_lift": interval_json(v.sequential_absolute_lift.as_ref()),
                "p_value": v.p_value,
                "sequential_p_value": v.sequential_p_value,
                "adjusted_p_value": v.adjusted_p_value,
                "power": v.power,
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
    match i {
        Some(i) => format!(
            "{:+.4}{unit} [{:+.4}, {:+.4}]",
            i.estimate * scale,
            i.lower * scale,
            i.upper * scale
        ),
        None => "-".to_owned(),
    }
}

fn print_results(r: &pb::ExperimentResults) {
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
            definition.map(|d| kind_name(d.kind)).unwrap_or_default(),
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
                    interval_text(v.relative_lift.as_ref(), 100.0, "%"),
                    p(v.p_value),
                    p(v.sequential_p_value),
                    p(v.adjusted_p_value),
                    v.power
                        .map_or_else(|| "-".to_owned(), |x| format!("{:.0}%", x * 100.0)),
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
                "VERDICT",
            ],
            &rows,
        );
    }
}

/// Results at successive cut-offs from the start (or creation) to `end` (seconds).
async fn results_over_time(
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
fn render_svg(x: &pb::Experiment, series: &[(i64, pb::ExperimentResults)]) -> String {
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
    let height = TOP + PANEL * panels.len().max(1) as f64 + 10.0;
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
        r##"<text x="{LEFT}" y="40" fill="#555">band: {:.0}% confidence interval; dashed: confidence sequence (valid at any time)</text>"##,
        (1.0 - x.alpha) * 100.0
    );
    if panels.is_empty() || series.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}">no data yet</text>"#,
            TOP + 20.0
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
        let top = TOP + PANEL * p as f64 + 20.0;
        // (time, estimate, lower, upper, sequential lower, sequential upper)
        let points: Vec<Point> = series
            .iter()
            .filter_map(|(t, r)| {
                let result = r.metrics.get(m)?.variations.get(v)?;
                let lift = result.absolute_lift.as_ref()?;
                let seq = result.sequential_absolute_lift.as_ref().unwrap_or(lift);
                let values = [lift.estimate, lift.lower, lift.upper, seq.lower, seq.upper];
                values.iter().all(|x| x.is_finite()).then_some((
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
        let variation = last.metrics[m].variations[v].variation;
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{} — variation {variation} vs control</text>"#,
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
            low = low.min(p.2).min(p.4);
            high = high.max(p.3).max(p.5);
        }
        if high - low < 1e-12 {
            high += 1.0;
            low -= 1.0;
        }
        let pad = (high - low) * 0.05;
        let (low, high) = (low - pad, high + pad);
        let ty = |y: f64| top + (high - y) / (high - low) * plot_height;
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

pub async fn metrics(c: Client, args: MetricsArgs) -> Outcome {
    let mut svc = service(&c);
    match args.command {
        MetricsCommand::Create {
            key,
            event,
            kind,
            name,
            description,
        } => {
            let kind = match kind {
                MetricKindArg::Conversion => pb::MetricKind::Conversion,
                MetricKindArg::Count => pb::MetricKind::Count,
                MetricKindArg::Sum => pb::MetricKind::Sum,
                MetricKindArg::Mean => pb::MetricKind::Mean,
            };
            let request = c.req(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    project_key: c.project.clone(),
                    key,
                    name,
                    description,
                    event_name: event,
                    kind: kind as i32,
                    ..Default::default()
                }),
            })?;
            let m = svc.create_metric(request).await?.into_inner();
            if c.json {
                print_json(&metric_json(&m));
            } else {
                println!(
                    "created metric {} ({} of event {})",
                    m.key,
                    kind_name(m.kind),
                    m.event_name
                );
            }
        }
        MetricsCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = c.req(pb::ListMetricsRequest {
                    project_key: c.project.clone(),
                    page: Some(pb::PageRequest {
                        page_size: 1000,
                        page_token: page_token.clone(),
                    }),
                })?;
                let page = svc.list_metrics(request).await?.into_inner();
                all.extend(page.metrics);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if c.json {
                print_json(&Value::Array(all.iter().map(metric_json).collect()));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|m| {
                        vec![
                            m.key.clone(),
                            kind_name(m.kind).to_owned(),
                            m.event_name.clone(),
                            m.name.clone(),
                        ]
                    })
                    .collect();
                table(&["KEY", "KIND", "EVENT", "NAME"], &rows);
            }
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
        "version": m.version,
        "created_at": time(m.created_at.as_ref()),
    })
}

fn error_kind_name(kind: i32) -> &'static str {
    match pb::ErrorKind::try_from(kind) {
        Ok(pb::ErrorKind::FlagNotFound) => "flag_not_found",
        Ok(pb::ErrorKind::WrongType) => "wrong_type",
        Ok(pb::ErrorKind::MalformedFlag) => "malformed_flag",
        Ok(pb::ErrorKind::InvalidContext) => "invalid_context",
        Ok(pb::ErrorKind::ClientNotReady) => "client_not_ready",
        _ => "",
    }
}

/// `vexil flags usage`: evaluations per flag, hour and variation.
pub async fn usage(
    c: &Client,
    environment: &str,
    flag: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Outcome {
    let start = since
        .as_deref()
        .map(convert::parse_time)
        .transpose()
        .context("--since")?;
    let end = until
        .as_deref()
        .map(convert::parse_time)
        .transpose()
        .context("--until")?;
    let request = c.req(pb::GetFlagUsageRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        flag_key: flag.unwrap_or_default(),
        start,
        end,
    })?;
    let buckets = service(c)
        .get_flag_usage(request)
        .await?
        .into_inner()
        .buckets;
    let outcome = |b: &pb::FlagUsageBucket| match b.variation {
        Some(v) => v.to_string(),
        None => match error_kind_name(b.error_kind) {
            "" => "default".to_owned(),
            error => format!("default ({error})"),
        },
    };
    if c.json {
        print_json(&Value::Array(
            buckets
                .iter()
                .map(|b| {
                    json!({
                        "flag": b.flag_key,
                        "hour": time(b.hour.as_ref()),
                        "variation": b.variation,
                        "error_kind": match error_kind_name(b.error_kind) { "" => Value::Null, e => Value::from(e) },
                        "count": b.count,
                    })
                })
                .collect(),
        ));
    } else {
        let rows: Vec<Vec<String>> = buckets
            .iter()
            .map(|b| {
                vec![
                    b.flag_key.clone(),
                    time(b.hour.as_ref()),
                    outcome(b),
                    b.count.to_string(),
                ]
            })
            .collect();
        table(&["FLAG", "HOUR", "VARIATION", "EVALUATIONS"], &rows);
    }
    Ok(())
}

/// `vexil flags stale`: flags not evaluated, or serving one variation, for N days.
pub async fn stale(c: &Client, environment: &str, days: u32) -> Outcome {
    let request = c.req(pb::ListStaleFlagsRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        days,
    })?;
    let flags = service(c)
        .list_stale_flags(request)
        .await?
        .into_inner()
        .flags;
    let reason = |s: &pb::StaleFlag| match pb::StaleReason::try_from(s.reason) {
        Ok(pb::StaleReason::NotEvaluated) => "not_evaluated",
        Ok(pb::StaleReason::SingleVariation) => "single_variation",
        _ => "unknown",
    };
    if c.json {
        print_json(&Value::Array(
            flags
                .iter()
                .map(|s| {
                    json!({
                        "flag": s.flag_key,
                        "reason": reason(s),
                        "variation": s.variation,
                        "evaluations": s.evaluations,
                        "last_evaluated": s.last_evaluated.as_ref().map(convert::format_time),
                    })
                })
                .collect(),
        ));
    } else {
        let rows: Vec<Vec<String>> = flags
            .iter()
            .map(|s| {
                let why = match s.variation {
                    Some(v) => format!("served only variation {v} ({} evaluations)", s.evaluations),
                    None => "not evaluated".to_owned(),
                };
                vec![
                    s.flag_key.clone(),
                    reason(s).to_owned(),
                    why,
                    time(s.last_evaluated.as_ref()),
                ]
            })
            .collect();
        table(&["FLAG", "REASON", "DETAIL", "LAST EVALUATED"], &rows);
    }
    Ok(())
}
