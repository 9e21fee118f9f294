//! The one place where the gRPC messages of `vexil.v1` meet the storage records and the
//! engine's canonical JSON (conformance/SCHEMA.md).
//!
//! Going in, typed messages become canonical JSON without judging it: the engine validates the
//! result, so that every problem is reported once, with the engine's field path. Going out,
//! stored records become messages; JSON the server wrote itself is read leniently.

use prost_types::Timestamp;
use serde_json::Value;
use tonic::Status;
use vexil_proto::v1 as pb;

/// The model's canonical JSON to and from messages lives in `vexil-proto`, shared with the
/// SDK core.
pub use vexil_proto::json::{
    clause_from_json, clause_to_json, context_to_json, json_to_context, json_to_value,
    key_list_from_json, key_list_to_json, prerequisite_from_json, prerequisite_to_json,
    rule_from_json, rule_to_json, ruleset_flag_from_json, ruleset_flag_to_json,
    ruleset_segment_from_json, ruleset_segment_to_json, segment_rule_from_json,
    segment_rule_to_json, serve_from_json, serve_to_json, target_from_json, target_to_json,
    value_to_json,
};

use crate::storage::{self, FlagKind, Millis, Role, SdkKeyKind};

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

pub fn flag_kind_from_proto(kind: i32, field: &str) -> Result<FlagKind, Status> {
    match pb::FlagKind::try_from(kind) {
        Ok(pb::FlagKind::Bool) => Ok(FlagKind::Bool),
        Ok(pb::FlagKind::String) => Ok(FlagKind::String),
        Ok(pb::FlagKind::Number) => Ok(FlagKind::Number),
        Ok(pb::FlagKind::Json) => Ok(FlagKind::Json),
        _ => Err(Status::invalid_argument(format!(
            "{field}: a flag kind is required (bool, string, number or json)"
        ))),
    }
}

/// An optional filter: unspecified means any kind.
pub fn flag_kind_filter(kind: i32) -> Result<Option<FlagKind>, Status> {
    if kind == pb::FlagKind::Unspecified as i32 {
        Ok(None)
    } else {
        flag_kind_from_proto(kind, "kind").map(Some)
    }
}

pub fn flag_kind_to_proto(kind: FlagKind) -> i32 {
    (match kind {
        FlagKind::Bool => pb::FlagKind::Bool,
        FlagKind::String => pb::FlagKind::String,
        FlagKind::Number => pb::FlagKind::Number,
        FlagKind::Json => pb::FlagKind::Json,
    }) as i32
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

// ----- flag configuration: proto to canonical JSON ------------------------------------------

/// A flag configuration message as the storage's replacement.
pub fn config_update(config: &pb::FlagConfiguration) -> storage::FlagConfigUpdate {
    storage::FlagConfigUpdate {
        on: config.on,
        off_variation: config.off_variation,
        targets: config.targets.iter().map(target_to_json).collect(),
        rules: config.rules.iter().map(rule_to_json).collect(),
        fallthrough: serve_to_json(config.fallthrough.as_ref()),
        prerequisites: config
            .prerequisites
            .iter()
            .map(prerequisite_to_json)
            .collect(),
        salt: config.salt.clone(),
    }
}

/// A segment message as the storage's input.
pub fn segment_input(segment: &pb::Segment) -> storage::SegmentInput {
    storage::SegmentInput {
        key: segment.key.clone(),
        name: segment.name.clone(),
        description: segment.description.clone(),
        included: segment.included.iter().map(key_list_to_json).collect(),
        excluded: segment.excluded.iter().map(key_list_to_json).collect(),
        rules: segment.rules.iter().map(segment_rule_to_json).collect(),
    }
}

/// The canonical JSON of a segment about to be written, for validation.
pub fn segment_json(input: &storage::SegmentInput, version: i64) -> Value {
    serde_json::json!({
        "key": input.key,
        "included": input.included,
        "excluded": input.excluded,
        "rules": input.rules,
        "version": version,
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
    }
}

pub fn flag(f: &storage::Flag, configs: &[storage::FlagConfig]) -> pb::Flag {
    pb::Flag {
        key: f.key.clone(),
        name: f.name.clone(),
        description: f.description.clone(),
        kind: flag_kind_to_proto(f.kind),
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
        on: c.on,
        off_variation: c.off_variation,
        targets: c.targets.iter().map(target_from_json).collect(),
        rules: c.rules.iter().map(rule_from_json).collect(),
        fallthrough: Some(serve_from_json(&c.fallthrough)),
        prerequisites: c.prerequisites.iter().map(prerequisite_from_json).collect(),
        salt: c.salt.clone(),
        version: c.version,
        updated_at: Some(timestamp(c.updated_at)),
    }
}

pub fn segment(s: &storage::Segment) -> pb::Segment {
    pb::Segment {
        key: s.key.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        included: s.included.iter().map(key_list_from_json).collect(),
        excluded: s.excluded.iter().map(key_list_from_json).collect(),
        rules: s.rules.iter().map(segment_rule_from_json).collect(),
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
            .map(ruleset_flag_from_json)
            .collect(),
        deleted_flags: patch.deleted_flags.clone(),
        upserted_segments: patch
            .upserted_segments
            .iter()
            .map(|s| ruleset_segment_from_json(s, environment_key))
            .collect(),
        deleted_segments: patch.deleted_segments.clone(),
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
    use vexil_proto::json::{operator_from_name, operator_name};

    #[test]
    fn values_round_trip_and_integers_stay_integers() {
        let json = serde_json::json!({"a": [1, 2.5, "x", true, null], "b": {"c": -3}});
        assert_eq!(value_to_json(&json_to_value(&json)), json);
    }

    #[test]
    fn operators_have_canonical_names() {
        assert_eq!(
            operator_name(pb::Operator::StartsWith as i32),
            "starts_with"
        );
        assert_eq!(operator_name(pb::Operator::SemverEq as i32), "semver_eq");
        assert_eq!(operator_name(0), "unspecified");
        assert_eq!(
            operator_from_name("segment_match"),
            pb::Operator::SegmentMatch as i32
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rule = pb::Rule {
            id: "r1".into(),
            clauses: vec![pb::Clause {
                context_kind: "user".into(),
                attribute: "/email".into(),
                op: pb::Operator::EndsWith as i32,
                values: vec![json_to_value(&Value::from("@example.com"))],
                negate: true,
            }],
            serve: Some(pb::Serve {
                kind: Some(pb::serve::Kind::Rollout(pb::Rollout {
                    variations: vec![
                        pb::WeightedVariation {
                            variation: 0,
                            weight: 50000,
                        },
                        pb::WeightedVariation {
                            variation: 1,
                            weight: 50000,
                        },
                    ],
                    bucket_by: None,
                    algorithm: pb::BucketingAlgorithm::Murmur3V1 as i32,
                })),
                experiment: None,
            }),
            description: "staff".into(),
        };
        assert_eq!(rule_from_json(&rule_to_json(&rule)), rule);
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1] {
            assert_eq!(millis(&timestamp(ms)), ms);
        }
    }
}
