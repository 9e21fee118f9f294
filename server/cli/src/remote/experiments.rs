//! `vexil experiments …`: experiments from the command line, their results as a table and
//! each lift over time as an SVG chart (see `results`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, InEnvironment, Outcome, all_pages};
use super::output::{print_json, print_list, time};
use super::results::{
    StepArg, direction_name, goal_json, now_seconds, percent, print_results, render_svg,
    results_at, results_over_time,
};
use crate::convert;

/// `vexil experiments`.
pub type ExperimentsArgs = InEnvironment<ExperimentsCommand>;

#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
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
    Start(ExperimentAt),
    /// Stop a running experiment: its serve becomes the control for everyone.
    Stop(ExperimentAt),
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

/// An experiment, and the version a change of it is based on.
#[derive(Debug, Args)]
pub(crate) struct ExperimentAt {
    /// The experiment's key.
    key: String,
    /// The experiment version the change is based on; fetched when not given.
    #[arg(long)]
    expected_version: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateExperiment {
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
    /// Test one way only: the primary metric for an improvement, guardrails for a regression.
    #[arg(long)]
    one_sided: bool,
    /// Stop the experiment (control for everyone) as soon as a guardrail regresses.
    #[arg(long)]
    stop_on_guardrail_regression: bool,
    /// CUPED: adjust conversion, count and sum metrics by the same metric over this many days
    /// before each context's first exposure (at most 90; 0: off).
    #[arg(long, default_value_t = 0)]
    cuped_lookback_days: u32,
    /// Bucket by `kind:attribute` instead of the user key.
    #[arg(long)]
    bucket_by: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StatusArg {
    Draft,
    Running,
    Stopped,
}

/// Percent to thousandths of a percent.
fn thousandths(field: &str, percent: f64) -> anyhow::Result<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        bail!("{field}: a percentage from 0 to 100, got {percent}");
    }
    Ok((percent * 1000.0).round() as u32)
}

pub(super) fn metric_goal(text: &str) -> anyhow::Result<pb::ExperimentMetric> {
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

fn status_name(status: i32) -> String {
    convert::enum_value_name(status, pb::ExperimentStatus::as_str_name, "unknown")
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
        "one_sided": x.one_sided,
        "stop_on_guardrail_regression": x.stop_on_guardrail_regression,
        "cuped_lookback_days": x.cuped_lookback_days,
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
        "started_at": convert::time_json(x.started_at.as_ref()),
        "stopped_at": convert::time_json(x.stopped_at.as_ref()),
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
            "guardrail:    {} ({}{})",
            g.metric_key,
            direction_name(g.direction),
            if x.stop_on_guardrail_regression {
                "; a regression stops the experiment"
            } else {
                ""
            }
        );
    }
    println!(
        "plan:         detect {:+}% relative at alpha {} ({}) with power {}: {} contexts per variation",
        x.minimum_detectable_effect * 100.0,
        x.alpha,
        if x.one_sided {
            "one-sided: primary for an improvement, guardrails for a regression"
        } else {
            "two-sided"
        },
        x.power,
        x.required_sample_size
    );
    if x.cuped_lookback_days > 0 {
        println!(
            "cuped:        metrics adjusted by their {} days before each context's exposure",
            x.cuped_lookback_days
        );
    }
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

async fn get_experiment(c: &Client, environment: &str, key: &str) -> Outcome<pb::Experiment> {
    let request = c.req(pb::GetExperimentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(c.experiments().get_experiment(request).await?.into_inner())
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

pub async fn experiments(c: Client, environment: &str, args: ExperimentsArgs) -> Outcome {
    let mut svc = c.experiments();
    // Calls `$rpc` with a `$request` for the experiment `$at` names in the environment, at the
    // version it expects, plus any further fields; the experiment as changed.
    macro_rules! change {
        ($rpc:ident, $request:ident, $at:expr $(, $field:ident $(: $value:expr)?)* $(,)?) => {{
            let at: ExperimentAt = $at;
            let expected_version =
                version_of(&c, environment, &at.key, at.expected_version).await?;
            let request = c.req(pb::$request {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: at.key,
                expected_version,
                $($field $(: $value)?,)*
            })?;
            svc.$rpc(request).await?.into_inner()
        }};
    }
    let x = match args.command {
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
                one_sided: create.one_sided,
                stop_on_guardrail_regression: create.stop_on_guardrail_regression,
                cuped_lookback_days: create.cuped_lookback_days,
                ..Default::default()
            };
            let request = c.req(pb::CreateExperimentRequest {
                experiment: Some(experiment),
            })?;
            svc.create_experiment(request).await?.into_inner()
        }
        ExperimentsCommand::List { status, flag } => {
            let status = match status {
                None => pb::ExperimentStatus::Unspecified,
                Some(StatusArg::Draft) => pb::ExperimentStatus::Draft,
                Some(StatusArg::Running) => pb::ExperimentStatus::Running,
                Some(StatusArg::Stopped) => pb::ExperimentStatus::Stopped,
            };
            let all = all_pages!(c, svc, list_experiments, experiments, |page| {
                pb::ListExperimentsRequest {
                    project_key: c.project.clone(),
                    environment_key: environment.to_owned(),
                    status: status as i32,
                    flag_key: flag.clone().unwrap_or_default(),
                    page: Some(page),
                }
            })
            .await?;
            let headers = [
                "KEY",
                "STATUS",
                "FLAG",
                "SERVE",
                "PRIMARY",
                "NEEDED/VARIATION",
            ];
            print_list(c.json, &all, experiment_json, &headers, |x| {
                vec![
                    x.key.clone(),
                    status_name(x.status),
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
            });
            return Ok(());
        }
        ExperimentsCommand::Get { key } => get_experiment(&c, environment, &key).await?,
        ExperimentsCommand::Start(at) => change!(start_experiment, StartExperimentRequest, at),
        ExperimentsCommand::Stop(at) => change!(stop_experiment, StopExperimentRequest, at),
        ExperimentsCommand::Decide {
            key,
            ship,
            roll_back,
            rationale,
            apply,
            expected_version,
        } => change!(
            decide_experiment,
            DecideExperimentRequest,
            ExperimentAt {
                key,
                expected_version
            },
            variation: ship.unwrap_or(0),
            rationale,
            roll_back,
            apply,
        ),
        ExperimentsCommand::Results {
            key,
            until,
            svg,
            step,
        } => {
            let until = convert::parse_optional_time("--until", until.as_deref())?;
            let results = results_at(&c, environment, &key, until).await?;
            print_results(c.json, &results);
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
            return Ok(());
        }
    };
    print_experiment(&c, &x);
    Ok(())
}
