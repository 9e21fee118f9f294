//! `vexil flags ramp`: progressive rollouts of a flag's fallthrough, advanced by the server.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, FlagPart, Outcome, all_pages};
use super::experiments::metric_goal;
use super::output::{print_json, print_list, time};
use super::results::{goal_json, print_results};

/// `vexil flags ramp …`.
#[derive(Debug, Subcommand)]
pub enum RampCommand {
    /// Start a ramp: the flag's fallthrough serves VARIATION to a growing percentage of
    /// contexts, the rest keeping BASELINE, step after step. A context served VARIATION at
    /// one step keeps it at every later one.
    Start {
        /// The flag's key.
        key: String,
        /// The index of the variation rolled out.
        #[arg(long)]
        variation: u32,
        /// The index of the variation every other context keeps.
        #[arg(long)]
        baseline: u32,
        /// The steps, as PERCENT:DURATION separated by commas, the last at 100 (its duration
        /// may be left out): `1:1h,5:1h,25:2h,100`. Durations in s, m, h or d.
        #[arg(long)]
        steps: String,
        /// The configuration version the ramp is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
        /// A guardrail metric, as `KEY` or `KEY:increase|decrease` (the way that is better),
        /// repeatable: a significant regression for the contexts served VARIATION stops the
        /// ramp and serves BASELINE to everyone.
        #[arg(long = "guard", value_name = "METRIC")]
        guards: Vec<String>,
        /// The guard's false-alarm rate, shared by its metrics.
        #[arg(long, default_value_t = 0.05, requires = "guards")]
        guard_alpha: f64,
    },
    /// Show a guarded ramp's guardrails as its guard reads them now: the baseline against
    /// the variation, metric by metric.
    Results {
        /// The ramp's id.
        id: i64,
    },
    /// List the environment's ramps (of one flag when a key is given).
    List {
        /// Only this flag's.
        key: Option<String>,
    },
    /// Pause a running ramp: its step keeps the time it had left.
    Pause {
        /// The ramp's id (from `vexil flags ramp list`).
        id: i64,
    },
    /// Resume a paused ramp.
    Resume {
        /// The ramp's id.
        id: i64,
    },
    /// Cancel a ramp in progress: the flag stays at the step it is at.
    Cancel {
        /// The ramp's id.
        id: i64,
    },
}

/// `90s`, `30m`, `1h`, `2d`, or seconds.
fn parse_duration(text: &str) -> anyhow::Result<prost_types::Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let factor = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(anyhow!("{text:?}: a duration is a number and s, m, h or d")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow!("{text:?}: a duration is a number and s, m, h or d"))?;
    let millis = (value * factor * 1000.0).round() as i64;
    Ok(prost_types::Duration {
        seconds: millis / 1000,
        nanos: ((millis % 1000) * 1_000_000) as i32,
    })
}

fn parse_steps(text: &str) -> anyhow::Result<Vec<pb::RampStep>> {
    text.split(',')
        .map(|part| {
            let (percent, duration) = part.split_once(':').unwrap_or((part, "0"));
            let percent: f64 = percent
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| anyhow!("--steps: {part:?} does not start with a percentage"))?;
            Ok(pb::RampStep {
                percent,
                duration: Some(parse_duration(duration)?),
            })
        })
        .collect()
}

fn state_name(state: i32) -> String {
    crate::convert::enum_value_name(state, pb::RampState::as_str_name, "unknown").replace('_', " ")
}

fn seconds(d: Option<&prost_types::Duration>) -> f64 {
    d.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

fn ramp_json(r: &pb::Ramp) -> Value {
    json!({
        "id": r.id,
        "environment": r.environment_key,
        "flag": r.flag_key,
        "variation": r.variation,
        "baseline": r.baseline,
        "steps": r.steps.iter().map(|s| json!({
            "percent": s.percent, "duration_seconds": seconds(s.duration.as_ref())
        })).collect::<Vec<_>>(),
        "state": state_name(r.state),
        "step": r.step,
        "percent": r.steps.get(r.step as usize).map(|s| s.percent),
        "step_started_at": time(r.step_started_at.as_ref()),
        "next_step_at": crate::convert::time_json(r.next_step_at.as_ref()),
        "created_by": r.created_by,
        "guard": r.guard.as_ref().map(|g| json!({
            "metrics": g.metrics.iter().map(|m| goal_json(Some(m))).collect::<Vec<_>>(),
            "alpha": g.alpha,
        })),
        "guard_checked_at": crate::convert::time_json(r.guard_checked_at.as_ref()),
        "rollback_reason": r.rollback_reason,
        "experiment_key": r.experiment_key,
    })
}

fn print_ramp(c: &Client, r: &pb::Ramp) {
    if c.json {
        print_json(&ramp_json(r));
        return;
    }
    let percent = r.steps.get(r.step as usize).map_or(0.0, |s| s.percent);
    println!(
        "ramp {} of flag {} in {}: {} at step {} of {} ({percent} % get variation {}){}",
        r.id,
        r.flag_key,
        r.environment_key,
        state_name(r.state),
        r.step + 1,
        r.steps.len(),
        r.variation,
        match &r.next_step_at {
            Some(at) => format!(", next step at {}", time(Some(at))),
            None => String::new(),
        }
    );
    if let Some(guard) = &r.guard {
        let metrics: Vec<&str> = guard
            .metrics
            .iter()
            .map(|m| m.metric_key.as_str())
            .collect();
        println!(
            "  guarded by {} (alpha {}), last read {}",
            metrics.join(", "),
            guard.alpha,
            time(r.guard_checked_at.as_ref())
        );
    }
    if !r.rollback_reason.is_empty() {
        println!("  rolled back: {}", r.rollback_reason);
    }
}

pub(crate) async fn ramp(c: &mut Client, environment: &str, command: RampCommand) -> Outcome {
    let project = c.project.clone();
    let state = |id: i64, state: pb::RampState| pb::SetRampStateRequest {
        project_key: project.clone(),
        id,
        state: state as i32,
    };
    let request = match command {
        RampCommand::Start {
            key,
            variation,
            baseline,
            steps,
            expected_version,
            guards,
            guard_alpha,
        } => {
            let steps = parse_steps(&steps)?;
            let guard = if guards.is_empty() {
                None
            } else {
                Some(pb::RampGuard {
                    metrics: guards
                        .iter()
                        .map(|g| metric_goal(g))
                        .collect::<anyhow::Result<_>>()?,
                    alpha: guard_alpha,
                })
            };
            let expected_version = c
                .version_or_current(expected_version, FlagPart::Configuration, &key, environment)
                .await?;
            let request = c.req(pb::StartRampRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key,
                variation,
                baseline,
                steps,
                expected_version,
                guard,
            })?;
            let started = c.admin.start_ramp(request).await?.into_inner();
            print_ramp(c, &started);
            return Ok(());
        }
        RampCommand::List { key } => {
            let all = all_pages!(c, c.admin, list_ramps, ramps, |page| pb::ListRampsRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: key.clone().unwrap_or_default(),
                page: Some(page),
            })
            .await?;
            print_list(
                c.json,
                &all,
                ramp_json,
                &["ID", "FLAG", "STATE", "AT", "NEXT STEP"],
                |r| {
                    let percent = r.steps.get(r.step as usize).map_or(0.0, |s| s.percent);
                    vec![
                        r.id.to_string(),
                        r.flag_key.clone(),
                        state_name(r.state),
                        format!("{percent} %"),
                        time(r.next_step_at.as_ref()),
                    ]
                },
            );
            return Ok(());
        }
        RampCommand::Results { id } => {
            let request = c.req(pb::GetRampResultsRequest {
                project_key: c.project.clone(),
                id,
            })?;
            let results = c.admin.get_ramp_results(request).await?.into_inner();
            print_results(c.json, &results);
            return Ok(());
        }
        RampCommand::Pause { id } => state(id, pb::RampState::Paused),
        RampCommand::Resume { id } => state(id, pb::RampState::Running),
        RampCommand::Cancel { id } => state(id, pb::RampState::Cancelled),
    };
    let request = c.req(request)?;
    let moved = c.admin.set_ramp_state(request).await?.into_inner();
    print_ramp(c, &moved);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_durations_are_read() {
        let steps = parse_steps("1%:1h,5:30m,25:90s,100").unwrap();
        let read: Vec<(f64, i64)> = steps
            .iter()
            .map(|s| (s.percent, s.duration.unwrap().seconds))
            .collect();
        assert_eq!(read, [(1.0, 3600), (5.0, 1800), (25.0, 90), (100.0, 0)]);
        assert_eq!(parse_duration("1.5d").unwrap().seconds, 129_600);
        assert!(parse_steps("x:1h").is_err());
        assert!(parse_duration("3w").is_err());
    }
}
