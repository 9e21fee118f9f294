//! `vexil flags usage` and `vexil flags stale`: what the server counted of evaluations.

use serde_json::{Value, json};
use vexil_proto::v1 as pb;

use super::client::{Client, Outcome};
use super::output::{print_list, time};
use crate::convert;

fn error_kind_name(kind: i32) -> String {
    convert::enum_value_name(kind, pb::ErrorKind::as_str_name, "")
}

/// `vexil flags usage`: evaluations per flag, hour and variation.
pub async fn usage(
    c: &Client,
    environment: &str,
    flag: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Outcome {
    let start = convert::parse_optional_time("--since", since.as_deref())?;
    let end = convert::parse_optional_time("--until", until.as_deref())?;
    let request = c.req(pb::GetFlagUsageRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        flag_key: flag.unwrap_or_default(),
        start,
        end,
    })?;
    let buckets = c
        .experiments()
        .get_flag_usage(request)
        .await?
        .into_inner()
        .buckets;
    let outcome = |b: &pb::FlagUsageBucket| match b.variation {
        Some(v) => v.to_string(),
        None => match error_kind_name(b.error_kind).as_str() {
            "" => "default".to_owned(),
            error => format!("default ({error})"),
        },
    };
    let bucket_json = |b: &pb::FlagUsageBucket| {
        json!({
            "flag": b.flag_key,
            "hour": time(b.hour.as_ref()),
            "variation": b.variation,
            "error_kind": match error_kind_name(b.error_kind).as_str() { "" => Value::Null, e => Value::from(e) },
            "count": b.count,
        })
    };
    let headers = ["FLAG", "HOUR", "VARIATION", "EVALUATIONS"];
    print_list(c.json, &buckets, bucket_json, &headers, |b| {
        vec![
            b.flag_key.clone(),
            time(b.hour.as_ref()),
            outcome(b),
            b.count.to_string(),
        ]
    });
    Ok(())
}

/// `vexil flags stale`: flags not evaluated, or serving one variation, for N days.
pub async fn stale(c: &Client, environment: &str, days: u32) -> Outcome {
    let request = c.req(pb::ListStaleFlagsRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        days,
    })?;
    let flags = c
        .experiments()
        .list_stale_flags(request)
        .await?
        .into_inner()
        .flags;
    let reason = |s: &pb::StaleFlag| match pb::StaleReason::try_from(s.reason) {
        Ok(pb::StaleReason::NotEvaluated) => "not_evaluated",
        Ok(pb::StaleReason::SingleVariation) => "single_variation",
        _ => "unknown",
    };
    let stale_json = |s: &pb::StaleFlag| {
        json!({
            "flag": s.flag_key,
            "reason": reason(s),
            "variation": s.variation,
            "evaluations": s.evaluations,
            "last_evaluated": convert::time_json(s.last_evaluated.as_ref()),
        })
    };
    let headers = ["FLAG", "REASON", "DETAIL", "LAST EVALUATED"];
    print_list(c.json, &flags, stale_json, &headers, |s| {
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
    });
    Ok(())
}
