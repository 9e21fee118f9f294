//! The one place where the gRPC messages of `vexil.v1` meet the storage records.
//!
//! The flag model itself (flags, configurations, segments, serves) goes through
//! `vexil_proto::model`, the converter the `vexil` command and the SDK core share: going in,
//! a value the model cannot hold is an error naming its field, and the engine judges the
//! rest when the change is checked; going out, the typed records become messages without
//! loss.

use prost_types::Timestamp;
use tonic::Status;
use vexil_proto::v1 as pb;

use vexil_proto::model::{self as model, FieldError};
pub use vexil_proto::model::{context_to_json, json_to_context, json_to_value, value_to_json};

use crate::storage::{self, Millis, Role, SdkKeyKind, ValueKind};

// ----- times ---------------------------------------------------------------------------------

/// Milliseconds since the epoch as a timestamp.
pub fn timestamp(ms: Millis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A timestamp as milliseconds since the epoch.
pub fn millis(ts: &Timestamp) -> Millis {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

// ----- enums --------------------------------------------------------------------------------

pub fn flag_kind_from_proto(kind: i32, field: &str) -> Result<ValueKind, Status> {
    match pb::FlagKind::try_from(kind) {
        Ok(pb::FlagKind::Bool) => Ok(ValueKind::Bool),
        Ok(pb::FlagKind::String) => Ok(ValueKind::String),
        Ok(pb::FlagKind::Number) => Ok(ValueKind::Number),
        Ok(pb::FlagKind::Json) => Ok(ValueKind::Json),
        _ => Err(Status::invalid_argument(format!(
            "{field}: a flag kind is required (bool, string, number or json)"
        ))),
    }
}

/// An optional filter: unspecified means any kind.
pub fn flag_kind_filter(kind: i32) -> Result<Option<ValueKind>, Status> {
    if kind == pb::FlagKind::Unspecified as i32 {
        Ok(None)
    } else {
        flag_kind_from_proto(kind, "kind").map(Some)
    }
}

pub fn sdk_key_kind_from_proto(kind: i32) -> Result<SdkKeyKind, Status> {
    match pb::SdkKeyKind::try_from(kind) {
        Ok(pb::SdkKeyKind::Server) => Ok(SdkKeyKind::Server),
        Ok(pb::SdkKeyKind::Client) => Ok(SdkKeyKind::Client),
        Ok(pb::SdkKeyKind::Mobile) => Ok(SdkKeyKind::Mobile),
        _ => Err(Status::invalid_argument(
            "kind: an SDK key kind is required (server, client or mobile)",
        )),
    }
}

pub fn sdk_key_kind_to_proto(kind: SdkKeyKind) -> i32 {
    (match kind {
        SdkKeyKind::Server => pb::SdkKeyKind::Server,
        SdkKeyKind::Client => pb::SdkKeyKind::Client,
        SdkKeyKind::Mobile => pb::SdkKeyKind::Mobile,
    }) as i32
}

pub fn role_from_proto(role: i32, field: &str) -> Result<Role, Status> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        Ok(pb::Role::Editor) => Ok(Role::Editor),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        _ => Err(Status::invalid_argument(format!(
            "{field}: a role is required (viewer, editor or admin)"
        ))),
    }
}

pub fn role_to_proto(role: Role) -> i32 {
    (match role {
        Role::Viewer => pb::Role::Viewer,
        Role::Editor => pb::Role::Editor,
        Role::Admin => pb::Role::Admin,
    }) as i32
}

// ----- segments: proto to the storage's input ----------------------------------------------

/// A segment message as the storage's input; fields are named under `segment`.
pub fn segment_input(segment: &pb::Segment) -> Result<storage::SegmentInput, FieldError> {
    let model = model::segment_from_proto(segment, "segment")?;
    Ok(storage::SegmentInput {
        key: model.key,
        name: segment.name.clone(),
        description: segment.description.clone(),
        included: model.included,
        excluded: model.excluded,
        rules: model.rules,
    })
}

// ----- records to proto ---------------------------------------------------------------------

pub fn project(p: &storage::Project) -> pb::Project {
    pb::Project {
        key: p.key.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        version: p.version,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
    }
}

pub fn environment(e: &storage::Environment) -> pb::Environment {
    pb::Environment {
        project_key: e.project_key.clone(),
        key: e.key.clone(),
        name: e.name.clone(),
        description: e.description.clone(),
        version: e.version,
        created_at: Some(timestamp(e.created_at)),
        updated_at: Some(timestamp(e.updated_at)),
        allowed_origins: e.allowed_origins.clone(),
        event_retention_days: e.event_retention_days,
    }
}

pub fn flag(f: &storage::Flag, configs: &[storage::FlagConfig]) -> pb::Flag {
    pb::Flag {
        key: f.key.clone(),
        name: f.name.clone(),
        description: f.description.clone(),
        kind: vexil_proto::model::kind_to_proto(f.kind),
        variations: f.variations.iter().map(json_to_value).collect(),
        tags: f.tags.clone(),
        client_side: f.client_side,
        archived: f.archived,
        version: f.version,
        created_at: Some(timestamp(f.created_at)),
        updated_at: Some(timestamp(f.updated_at)),
        configurations: configs.iter().map(flag_configuration).collect(),
    }
}

pub fn flag_configuration(c: &storage::FlagConfig) -> pb::FlagConfiguration {
    pb::FlagConfiguration {
        environment_key: c.environment_key.clone(),
        version: c.version,
        updated_at: Some(timestamp(c.updated_at)),
        ..model::configuration_to_proto(&c.configuration)
    }
}

pub fn segment(s: &storage::Segment) -> pb::Segment {
    pb::Segment {
        key: s.key.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        included: s.included.iter().map(model::key_list_to_proto).collect(),
        excluded: s.excluded.iter().map(model::key_list_to_proto).collect(),
        rules: s.rules.iter().map(model::segment_rule_to_proto).collect(),
        version: s.version,
        environment_key: s.environment_key.clone(),
        created_at: Some(timestamp(s.created_at)),
        updated_at: Some(timestamp(s.updated_at)),
    }
}

pub fn sdk_key(k: &storage::SdkKey) -> pb::SdkKey {
    pb::SdkKey {
        id: k.id,
        project_key: k.project_key.clone(),
        environment_key: k.environment_key.clone(),
        kind: sdk_key_kind_to_proto(k.kind),
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        created_at: Some(timestamp(k.created_at)),
        expires_at: k.expires_at.map(timestamp),
        revoked_at: k.revoked_at.map(timestamp),
    }
}

pub fn admin_token(t: &storage::AdminToken) -> pb::AdminToken {
    pb::AdminToken {
        id: t.id.clone(),
        principal: t.principal.clone(),
        description: t.description.clone(),
        roles: t
            .roles
            .iter()
            .map(|b| pb::RoleBinding {
                project_key: b.project_key.clone(),
                role: role_to_proto(b.role),
            })
            .collect(),
        created_at: Some(timestamp(t.created_at)),
        expires_at: t.expires_at.map(timestamp),
        revoked_at: t.revoked_at.map(timestamp),
    }
}

pub fn audit_entry(a: &storage::AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: a.id,
        time: Some(timestamp(a.at)),
        actor: a.actor.clone(),
        action: a.action.clone(),
        resource_kind: a.resource_kind.clone(),
        resource_key: a.resource_key.clone(),
        project_key: a.project_key.clone().unwrap_or_default(),
        environment_key: a.environment_key.clone().unwrap_or_default(),
        before: a.before.as_ref().map(json_to_value),
        after: a.after.as_ref().map(json_to_value),
    }
}

// ----- experiments ----------------------------------------------------------------------------

pub fn metric_kind_to_proto(kind: storage::MetricKind) -> i32 {
    (match kind {
        storage::MetricKind::Conversion => pb::MetricKind::Conversion,
        storage::MetricKind::Count => pb::MetricKind::Count,
        storage::MetricKind::Sum => pb::MetricKind::Sum,
        storage::MetricKind::Mean => pb::MetricKind::Mean,
        storage::MetricKind::Ratio => pb::MetricKind::Ratio,
        storage::MetricKind::Quantile => pb::MetricKind::Quantile,
    }) as i32
}

pub fn direction_to_proto(direction: storage::MetricDirection) -> i32 {
    (match direction {
        storage::MetricDirection::Increase => pb::MetricDirection::Increase,
        storage::MetricDirection::Decrease => pb::MetricDirection::Decrease,
    }) as i32
}

/// A metric as an experiment or a ramp's guard measures it, from its message at `field`.
pub fn experiment_metric_from_proto(
    metric: &pb::ExperimentMetric,
    field: &str,
) -> Result<storage::ExperimentMetric, Status> {
    crate::limits::key(&format!("{field}.metric_key"), &metric.metric_key)?;
    let direction = match pb::MetricDirection::try_from(metric.direction) {
        Ok(pb::MetricDirection::Unspecified | pb::MetricDirection::Increase) => {
            storage::MetricDirection::Increase
        }
        Ok(pb::MetricDirection::Decrease) => storage::MetricDirection::Decrease,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "{field}.direction: unknown direction {}",
                metric.direction
            )));
        }
    };
    Ok(storage::ExperimentMetric {
        metric_key: metric.metric_key.clone(),
        direction,
    })
}

/// A metric definition as its message.
pub fn metric(m: &storage::Metric) -> pb::Metric {
    pb::Metric {
        project_key: m.project_key.clone(),
        key: m.key.clone(),
        name: m.name.clone(),
        description: m.description.clone(),
        event_name: m.event_name.clone(),
        kind: metric_kind_to_proto(m.kind),
        version: m.version,
        created_at: Some(timestamp(m.created_at)),
        denominator_event_name: m.denominator_event_name.clone(),
        quantile: m.quantile,
    }
}

/// An experiment's use of a metric as its message.
pub fn experiment_metric(m: &storage::ExperimentMetric) -> pb::ExperimentMetric {
    pb::ExperimentMetric {
        metric_key: m.metric_key.clone(),
        direction: direction_to_proto(m.direction),
    }
}

/// A string field that proto3 cannot mark absent: empty means not given.
pub fn given(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// A page request from the wire: an empty token is the first page.
pub fn page_request(page: Option<&pb::PageRequest>) -> storage::PageRequest {
    match page {
        Some(p) => storage::PageRequest {
            limit: p.page_size,
            cursor: (!p.page_token.is_empty()).then(|| p.page_token.clone()),
        },
        None => storage::PageRequest::default(),
    }
}

// ----- ruleset JSON to the Sync messages -----------------------------------------------------

/// A stored patch as the Sync message.
pub fn patch(patch: &storage::RulesetPatch, environment_key: &str) -> pb::Patch {
    pb::Patch {
        from_version: patch.from_version,
        version: patch.version,
        upserted_flags: patch
            .upserted_flags
            .iter()
            .map(model::flag_to_proto)
            .collect(),
        deleted_flags: patch.deleted_flags.clone(),
        upserted_segments: patch
            .upserted_segments
            .iter()
            .map(|s| ruleset_segment(s, environment_key))
            .collect(),
        deleted_segments: patch.deleted_segments.clone(),
    }
}

/// A segment of a ruleset as Sync sends it.
pub fn ruleset_segment(segment: &storage::SegmentModel, environment_key: &str) -> pb::Segment {
    pb::Segment {
        environment_key: environment_key.to_owned(),
        ..model::segment_to_proto(segment)
    }
}

// ----- contexts and results -----------------------------------------------------------------

/// An engine reason as the message.
pub fn reason<S: AsRef<str>>(reason: &vexil_engine::Reason<S>) -> pb::Reason {
    use vexil_engine::Reason as R;
    let mut out = pb::Reason::default();
    out.kind = match reason {
        R::Off => pb::ReasonKind::Off,
        R::TargetMatch => pb::ReasonKind::TargetMatch,
        R::RuleMatch {
            rule_index,
            rule_id,
        } => {
            out.rule_index = u32::try_from(*rule_index).ok();
            out.rule_id = rule_id.as_ref().to_owned();
            pb::ReasonKind::RuleMatch
        }
        R::Fallthrough => pb::ReasonKind::Fallthrough,
        R::PrerequisiteFailed { prerequisite_key } => {
            out.prerequisite_key = prerequisite_key.as_ref().to_owned();
            pb::ReasonKind::PrerequisiteFailed
        }
        R::Error { error_kind } => {
            out.error_kind = (match error_kind {
                vexil_engine::ErrorKind::FlagNotFound => pb::ErrorKind::FlagNotFound,
                vexil_engine::ErrorKind::WrongType => pb::ErrorKind::WrongType,
                vexil_engine::ErrorKind::MalformedFlag => pb::ErrorKind::MalformedFlag,
                vexil_engine::ErrorKind::InvalidContext => pb::ErrorKind::InvalidContext,
                vexil_engine::ErrorKind::ClientNotReady => pb::ErrorKind::ClientNotReady,
            }) as i32;
            pb::ReasonKind::Error
        }
    } as i32;
    out
}

/// An evaluation as the message; `default` fills the value where no variation was served
/// (`None`: the value is left empty).
pub fn evaluation_result(
    flag_key: &str,
    evaluation: &vexil_engine::Evaluation<'_>,
    default: Option<&prost_types::Value>,
) -> pb::EvaluationResult {
    pb::EvaluationResult {
        flag_key: flag_key.to_owned(),
        value: match evaluation.value {
            Some(value) => Some(json_to_value(value)),
            None => default.cloned(),
        },
        variation: evaluation.variation.and_then(|v| u32::try_from(v).ok()),
        reason: Some(reason(&evaluation.reason)),
        in_experiment: evaluation.in_experiment,
        flag_version: i64::try_from(evaluation.flag_version).unwrap_or(i64::MAX),
        experiment_key: evaluation.experiment_key.unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1] {
            assert_eq!(millis(&timestamp(ms)), ms);
        }
    }

    #[test]
    fn a_segment_with_an_unspecified_operator_is_refused_naming_the_field() {
        let segment = pb::Segment {
            key: "beta".into(),
            rules: vec![pb::SegmentRule {
                id: "r".into(),
                clauses: vec![pb::Clause {
                    attribute: "email".into(),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        };
        let err = segment_input(&segment).unwrap_err();
        assert_eq!(err.path, "segment.rules[0].clauses[0].op");
    }
}
