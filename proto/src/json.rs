//! The canonical JSON of the flag model (conformance/SCHEMA.md) and the `vexil.v1` messages,
//! each way. The server stores and validates JSON and speaks messages; the SDK core receives
//! messages and evaluates JSON: both convert here, so the two directions cannot drift apart.
//!
//! Messages become JSON without judging it (the engine validates the result and reports each
//! problem once, with its field path); JSON becomes messages leniently (it was validated when
//! written).

use std::collections::BTreeMap;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct};
use serde_json::{Map, Number, Value};

use crate::v1 as pb;

/// Largest integer a `double` holds exactly.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A `google.protobuf.Value` as JSON. Integral numbers become JSON integers, so that `1`
/// stays `1` rather than `1.0`.
pub fn value_to_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

fn number_to_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT {
        // Exact: the value is integral and within the range a double holds exactly.
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// JSON as a `google.protobuf.Value`.
pub fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect::<BTreeMap<_, _>>(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The canonical name of an operator (`OPERATOR_STARTS_WITH` is `starts_with`); an unknown
/// or unspecified operator gets a name the engine refuses with the clause's path.
pub fn operator_name(op: i32) -> String {
    match pb::Operator::try_from(op) {
        Ok(pb::Operator::Unspecified) | Err(_) => "unspecified".to_owned(),
        Ok(op) => op
            .as_str_name()
            .trim_start_matches("OPERATOR_")
            .to_ascii_lowercase(),
    }
}

pub fn operator_from_name(name: &str) -> i32 {
    pb::Operator::from_str_name(&format!("OPERATOR_{}", name.to_ascii_uppercase()))
        .map_or(pb::Operator::Unspecified as i32, |op| op as i32)
}

fn put_nonempty(out: &mut Map<String, Value>, name: &str, text: &str) {
    if !text.is_empty() {
        out.insert(name.into(), Value::String(text.to_owned()));
    }
}

pub fn target_to_json(target: &pb::Target) -> Value {
    let mut out = Map::new();
    put_nonempty(&mut out, "context_kind", &target.context_kind);
    out.insert("values".into(), Value::from(target.values.clone()));
    out.insert("variation".into(), Value::from(target.variation));
    Value::Object(out)
}

pub fn clause_to_json(clause: &pb::Clause) -> Value {
    let mut out = Map::new();
    put_nonempty(&mut out, "context_kind", &clause.context_kind);
    put_nonempty(&mut out, "attribute", &clause.attribute);
    out.insert("op".into(), Value::String(operator_name(clause.op)));
    out.insert(
        "values".into(),
        Value::Array(clause.values.iter().map(value_to_json).collect()),
    );
    if clause.negate {
        out.insert("negate".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// A serve as canonical JSON; a missing serve becomes `{}`, which the engine refuses.
pub fn serve_to_json(serve: Option<&pb::Serve>) -> Value {
    let mut out = Map::new();
    let Some(serve) = serve else {
        return Value::Object(out);
    };
    match &serve.kind {
        Some(pb::serve::Kind::Variation(v)) => {
            out.insert("variation".into(), Value::from(*v));
        }
        Some(pb::serve::Kind::Rollout(rollout)) => {
            let mut r = Map::new();
            r.insert(
                "variations".into(),
                Value::Array(
                    rollout
                        .variations
                        .iter()
                        .map(
                            |w| serde_json::json!({ "variation": w.variation, "weight": w.weight }),
                        )
                        .collect(),
                ),
            );
            if let Some(by) = &rollout.bucket_by {
                let mut b = Map::new();
                put_nonempty(&mut b, "context_kind", &by.context_kind);
                put_nonempty(&mut b, "attribute", &by.attribute);
                if !b.is_empty() {
                    r.insert("bucket_by".into(), Value::Object(b));
                }
            }
            match pb::BucketingAlgorithm::try_from(rollout.algorithm) {
                Ok(pb::BucketingAlgorithm::Unspecified) => {}
                Ok(pb::BucketingAlgorithm::Murmur3V1) => {
                    r.insert("algorithm".into(), Value::String("murmur3_v1".into()));
                }
                Err(_) => {
                    r.insert("algorithm".into(), Value::String("unknown".into()));
                }
            }
            out.insert("rollout".into(), Value::Object(r));
        }
        None => {}
    }
    if let Some(exp) = &serve.experiment {
        let mut e = Map::new();
        e.insert("key".into(), Value::String(exp.key.clone()));
        if let Some(traffic) = exp.traffic_allocation {
            e.insert("traffic_allocation".into(), Value::from(traffic));
        }
        put_nonempty(&mut e, "layer", &exp.layer);
        if exp.layer_offset != 0 {
            e.insert("layer_offset".into(), Value::from(exp.layer_offset));
        }
        out.insert("experiment".into(), Value::Object(e));
    }
    Value::Object(out)
}

pub fn rule_to_json(rule: &pb::Rule) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(rule.id.clone()));
    out.insert(
        "clauses".into(),
        Value::Array(rule.clauses.iter().map(clause_to_json).collect()),
    );
    out.insert("serve".into(), serve_to_json(rule.serve.as_ref()));
    put_nonempty(&mut out, "description", &rule.description);
    Value::Object(out)
}

pub fn prerequisite_to_json(prerequisite: &pb::Prerequisite) -> Value {
    serde_json::json!({ "key": prerequisite.key, "variation": prerequisite.variation })
}

pub fn key_list_to_json(list: &pb::SegmentTarget) -> Value {
    let mut out = Map::new();
    put_nonempty(&mut out, "context_kind", &list.context_kind);
    out.insert("values".into(), Value::from(list.values.clone()));
    Value::Object(out)
}

pub fn segment_rule_to_json(rule: &pb::SegmentRule) -> Value {
    serde_json::json!({
        "id": rule.id,
        "clauses": rule.clauses.iter().map(clause_to_json).collect::<Vec<_>>(),
    })
}

fn str_field(obj: &Value, name: &str) -> String {
    obj.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn u32_field(obj: &Value, name: &str) -> u32 {
    obj.get(name)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or_default()
}

fn array_field<'a>(obj: &'a Value, name: &str) -> &'a [Value] {
    obj.get(name)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

pub fn target_from_json(t: &Value) -> pb::Target {
    pb::Target {
        context_kind: str_field(t, "context_kind"),
        values: strings(array_field(t, "values")),
        variation: u32_field(t, "variation"),
    }
}

pub fn clause_from_json(c: &Value) -> pb::Clause {
    pb::Clause {
        context_kind: str_field(c, "context_kind"),
        attribute: str_field(c, "attribute"),
        op: operator_from_name(&str_field(c, "op")),
        values: array_field(c, "values").iter().map(json_to_value).collect(),
        negate: c.get("negate").and_then(Value::as_bool).unwrap_or(false),
    }
}

pub fn serve_from_json(s: &Value) -> pb::Serve {
    let kind = if let Some(v) = s.get("variation").and_then(Value::as_u64) {
        Some(pb::serve::Kind::Variation(
            u32::try_from(v).unwrap_or_default(),
        ))
    } else {
        s.get("rollout").map(|r| {
            pb::serve::Kind::Rollout(pb::Rollout {
                variations: array_field(r, "variations")
                    .iter()
                    .map(|w| pb::WeightedVariation {
                        variation: u32_field(w, "variation"),
                        weight: u32_field(w, "weight"),
                    })
                    .collect(),
                bucket_by: r.get("bucket_by").map(|b| pb::BucketBy {
                    context_kind: str_field(b, "context_kind"),
                    attribute: str_field(b, "attribute"),
                }),
                algorithm: if r.get("algorithm").is_some() {
                    pb::BucketingAlgorithm::Murmur3V1 as i32
                } else {
                    pb::BucketingAlgorithm::Unspecified as i32
                },
            })
        })
    };
    pb::Serve {
        kind,
        experiment: s.get("experiment").map(|e| pb::ExperimentAllocation {
            key: str_field(e, "key"),
            traffic_allocation: e
                .get("traffic_allocation")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            layer: str_field(e, "layer"),
            layer_offset: u32_field(e, "layer_offset"),
        }),
    }
}

pub fn rule_from_json(r: &Value) -> pb::Rule {
    pb::Rule {
        id: str_field(r, "id"),
        clauses: array_field(r, "clauses")
            .iter()
            .map(clause_from_json)
            .collect(),
        serve: r.get("serve").map(serve_from_json),
        description: str_field(r, "description"),
    }
}

pub fn key_list_from_json(l: &Value) -> pb::SegmentTarget {
    pb::SegmentTarget {
        context_kind: str_field(l, "context_kind"),
        values: strings(array_field(l, "values")),
    }
}

pub fn prerequisite_from_json(p: &Value) -> pb::Prerequisite {
    pb::Prerequisite {
        key: str_field(p, "key"),
        variation: u32_field(p, "variation"),
    }
}

pub fn segment_rule_from_json(r: &Value) -> pb::SegmentRule {
    pb::SegmentRule {
        id: str_field(r, "id"),
        clauses: array_field(r, "clauses")
            .iter()
            .map(clause_from_json)
            .collect(),
    }
}

fn flag_kind_from_name(name: &str) -> i32 {
    (match name {
        "bool" => pb::FlagKind::Bool,
        "string" => pb::FlagKind::String,
        "number" => pb::FlagKind::Number,
        "json" => pb::FlagKind::Json,
        _ => pb::FlagKind::Unspecified,
    }) as i32
}

/// A flag of the engine's ruleset JSON as sent by Sync.
pub fn ruleset_flag_from_json(f: &Value) -> pb::RulesetFlag {
    pb::RulesetFlag {
        key: str_field(f, "key"),
        kind: flag_kind_from_name(&str_field(f, "kind")),
        variations: array_field(f, "variations")
            .iter()
            .map(json_to_value)
            .collect(),
        on: f.get("on").and_then(Value::as_bool).unwrap_or(false),
        off_variation: f
            .get("off_variation")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        targets: array_field(f, "targets")
            .iter()
            .map(target_from_json)
            .collect(),
        rules: array_field(f, "rules").iter().map(rule_from_json).collect(),
        fallthrough: f.get("fallthrough").map(serve_from_json),
        prerequisites: array_field(f, "prerequisites")
            .iter()
            .map(prerequisite_from_json)
            .collect(),
        salt: f.get("salt").and_then(Value::as_str).map(str::to_owned),
        version: f.get("version").and_then(Value::as_i64).unwrap_or(0),
        client_side: f
            .get("client_side")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// A segment of the engine's ruleset JSON as sent by Sync.
pub fn ruleset_segment_from_json(s: &Value, environment_key: &str) -> pb::Segment {
    pb::Segment {
        key: str_field(s, "key"),
        included: array_field(s, "included")
            .iter()
            .map(key_list_from_json)
            .collect(),
        excluded: array_field(s, "excluded")
            .iter()
            .map(key_list_from_json)
            .collect(),
        rules: array_field(s, "rules")
            .iter()
            .map(segment_rule_from_json)
            .collect(),
        version: s.get("version").and_then(Value::as_i64).unwrap_or(0),
        environment_key: environment_key.to_owned(),
        ..Default::default()
    }
}

/// A context message as the engine's canonical context JSON. An empty kind is left out (the
/// engine reads it as `user`); whether the result is a valid context is the engine's call.
pub fn context_to_json(context: &pb::Context) -> Value {
    let mut out = Map::new();
    if !context.kind.is_empty() {
        out.insert("kind".into(), Value::String(context.kind.clone()));
    }
    if context.kind == "multi" {
        out.insert(
            "contexts".into(),
            Value::Array(context.contexts.iter().map(context_to_json).collect()),
        );
        return Value::Object(out);
    }
    out.insert("key".into(), Value::String(context.key.clone()));
    if let Some(attributes) = &context.attributes {
        out.insert(
            "attributes".into(),
            Value::Object(
                attributes
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), value_to_json(v)))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}

/// A flag of the Sync messages as the engine's ruleset JSON.
pub fn ruleset_flag_to_json(flag: &pb::RulesetFlag) -> Value {
    let mut out = Map::new();
    out.insert("key".into(), Value::String(flag.key.clone()));
    let kind = match pb::FlagKind::try_from(flag.kind) {
        Ok(pb::FlagKind::Bool) => "bool",
        Ok(pb::FlagKind::String) => "string",
        Ok(pb::FlagKind::Number) => "number",
        Ok(pb::FlagKind::Json) => "json",
        _ => "unspecified",
    };
    out.insert("kind".into(), Value::String(kind.into()));
    out.insert(
        "variations".into(),
        Value::Array(flag.variations.iter().map(value_to_json).collect()),
    );
    out.insert("on".into(), Value::Bool(flag.on));
    if let Some(off) = flag.off_variation {
        out.insert("off_variation".into(), Value::from(off));
    }
    if !flag.targets.is_empty() {
        out.insert(
            "targets".into(),
            Value::Array(flag.targets.iter().map(target_to_json).collect()),
        );
    }
    if !flag.rules.is_empty() {
        out.insert(
            "rules".into(),
            Value::Array(flag.rules.iter().map(rule_to_json).collect()),
        );
    }
    out.insert(
        "fallthrough".into(),
        serve_to_json(flag.fallthrough.as_ref()),
    );
    if !flag.prerequisites.is_empty() {
        out.insert(
            "prerequisites".into(),
            Value::Array(
                flag.prerequisites
                    .iter()
                    .map(prerequisite_to_json)
                    .collect(),
            ),
        );
    }
    if let Some(salt) = &flag.salt {
        out.insert("salt".into(), Value::String(salt.clone()));
    }
    out.insert("version".into(), Value::from(flag.version));
    if flag.client_side {
        out.insert("client_side".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// A segment of the Sync messages as the engine's ruleset JSON.
pub fn ruleset_segment_to_json(segment: &pb::Segment) -> Value {
    serde_json::json!({
        "key": segment.key,
        "included": segment.included.iter().map(key_list_to_json).collect::<Vec<_>>(),
        "excluded": segment.excluded.iter().map(key_list_to_json).collect::<Vec<_>>(),
        "rules": segment.rules.iter().map(segment_rule_to_json).collect::<Vec<_>>(),
        "version": segment.version,
    })
}

/// A context's canonical JSON as the message; `None` for JSON that is not a context the
/// message can carry (a kind or key that is not a string, attributes that are not an object).
pub fn json_to_context(value: &Value) -> Option<pb::Context> {
    let object = value.as_object()?;
    let kind = match object.get("kind") {
        None => String::new(),
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return None,
    };
    if kind == "multi" {
        let parts = object.get("contexts").and_then(Value::as_array)?;
        return Some(pb::Context {
            kind,
            contexts: parts.iter().map(json_to_context).collect::<Option<_>>()?,
            ..Default::default()
        });
    }
    let key = match object.get("key") {
        None => String::new(),
        Some(Value::String(key)) => key.clone(),
        Some(_) => return None,
    };
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(fields)) => Some(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
        Some(_) => return None,
    };
    Some(pb::Context {
        kind,
        key,
        attributes,
        contexts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ruleset_flags_and_segments_round_trip() {
        let flag = json!({
            "key": "f", "kind": "string", "variations": ["a", "b", 3],
            "on": true, "off_variation": 1,
            "targets": [{"context_kind": "org", "values": ["o1"], "variation": 0}],
            "rules": [{"id": "r", "clauses": [{"context_kind": "user", "attribute": "/a/b",
                "op": "semver_gt", "values": ["1.2.3"], "negate": true}],
                "serve": {"rollout": {"variations": [{"variation": 0, "weight": 60000},
                    {"variation": 1, "weight": 40000}],
                    "bucket_by": {"context_kind": "org", "attribute": "id"},
                    "algorithm": "murmur3_v1"},
                    "experiment": {"key": "e", "traffic_allocation": 50000, "layer": "l",
                        "layer_offset": 10}}}],
            "fallthrough": {"variation": 0},
            "prerequisites": [{"key": "p", "variation": 1}],
            "salt": "s", "version": 4, "client_side": true
        });
        assert_eq!(ruleset_flag_to_json(&ruleset_flag_from_json(&flag)), flag);
        let segment = json!({
            "key": "s", "included": [{"values": ["a"]}], "excluded": [],
            "rules": [{"id": "r", "clauses": [{"attribute": "email", "op": "ends_with",
                "values": ["@x"]}]}], "version": 2
        });
        assert_eq!(
            ruleset_segment_to_json(&ruleset_segment_from_json(&segment, "prod")),
            segment
        );
        let context = json!({"kind": "multi", "contexts": [
            {"kind": "user", "key": "u", "attributes": {"n": 1, "t": [true, null]}},
            {"kind": "org", "key": "o"}]});
        assert_eq!(
            context_to_json(&json_to_context(&context).unwrap()),
            context
        );
        assert!(json_to_context(&json!({"key": 42})).is_none());
    }
}
