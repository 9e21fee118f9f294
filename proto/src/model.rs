//! The flag model (the engine's typed model, `conformance/SCHEMA.md`) and the `vexil.v1`
//! messages, each way: the one converter the server, the `vexil` command and the SDK core
//! share, so that the two forms cannot drift apart.
//!
//! Models become messages without loss. Messages become models strictly: a value the model
//! cannot hold (an unspecified operator, kind or algorithm) is a [`FieldError`] naming the
//! field (`rules[0].clauses[1].op`). Everything else a message can say is taken as it is and
//! judged by the engine when it compiles the model, which reports each problem once, with its
//! path (a serve with neither a variation nor a rollout, a variation out of range, …).

use std::collections::BTreeMap;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct};
use serde_json::{Map, Number, Value};
use vexil_engine::ValueKind;
use vexil_engine::model::{
    BucketBy, BucketingAlgorithm, Clause, Experiment, Flag, FlagConfiguration, KeyList, Operator,
    Prerequisite, Rollout, Rule, Segment, SegmentRule, Serve, TOTAL_WEIGHT, Target,
    WeightedVariation,
};

use crate::v1 as pb;

/// A message field whose value the model cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, as in the engine's problems (`fallthrough.rollout.algorithm`).
    pub path: String,
    pub problem: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

impl std::error::Error for FieldError {}

/// `path.field`, or `field` at the top.
fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn field_error(path: String, problem: impl Into<String>) -> FieldError {
    FieldError {
        path,
        problem: problem.into(),
    }
}

// ----- values ------------------------------------------------------------------------------

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

// ----- enumerations ------------------------------------------------------------------------

pub fn kind_to_proto(kind: ValueKind) -> i32 {
    (match kind {
        ValueKind::Bool => pb::FlagKind::Bool,
        ValueKind::String => pb::FlagKind::String,
        ValueKind::Number => pb::FlagKind::Number,
        ValueKind::Json => pb::FlagKind::Json,
    }) as i32
}

/// The value kind of a `FlagKind`; an unspecified or unknown one fails, naming `path`.
pub fn kind_from_proto(kind: i32, path: &str) -> Result<ValueKind, FieldError> {
    match pb::FlagKind::try_from(kind) {
        Ok(pb::FlagKind::Bool) => Ok(ValueKind::Bool),
        Ok(pb::FlagKind::String) => Ok(ValueKind::String),
        Ok(pb::FlagKind::Number) => Ok(ValueKind::Number),
        Ok(pb::FlagKind::Json) => Ok(ValueKind::Json),
        Ok(pb::FlagKind::Unspecified) => Err(field_error(
            path.to_owned(),
            "must be bool, string, number or json",
        )),
        Err(_) => Err(field_error(
            path.to_owned(),
            format!("unknown flag kind {kind}"),
        )),
    }
}

pub fn operator_to_proto(op: Operator) -> i32 {
    pb::Operator::from_str_name(&format!("OPERATOR_{}", op.as_str().to_ascii_uppercase()))
        .map_or(pb::Operator::Unspecified as i32, |op| op as i32)
}

/// The operator of an `Operator`; an unspecified or unknown one fails, naming `path`.
pub fn operator_from_proto(op: i32, path: &str) -> Result<Operator, FieldError> {
    let name = match pb::Operator::try_from(op) {
        Ok(pb::Operator::Unspecified) => {
            return Err(field_error(path.to_owned(), "an operator is required"));
        }
        Ok(op) => op
            .as_str_name()
            .trim_start_matches("OPERATOR_")
            .to_ascii_lowercase(),
        Err(_) => {
            return Err(field_error(
                path.to_owned(),
                format!("unknown operator {op}"),
            ));
        }
    };
    Operator::ALL
        .into_iter()
        .find(|candidate| candidate.as_str() == name)
        .ok_or_else(|| field_error(path.to_owned(), format!("unknown operator {name}")))
}

// ----- model to messages -------------------------------------------------------------------

fn index_to_proto(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// A context kind as messages carry it: empty for the default, `user`.
fn kind_text(kind: &str) -> String {
    if kind == "user" {
        String::new()
    } else {
        kind.to_owned()
    }
}

pub fn target_to_proto(target: &Target) -> pb::Target {
    pb::Target {
        context_kind: kind_text(&target.context_kind),
        values: target.values.clone(),
        variation: index_to_proto(target.variation),
    }
}

pub fn clause_to_proto(clause: &Clause) -> pb::Clause {
    pb::Clause {
        context_kind: kind_text(&clause.context_kind),
        attribute: clause.attribute.clone().unwrap_or_default(),
        op: operator_to_proto(clause.op),
        values: clause.values.iter().map(json_to_value).collect(),
        negate: clause.negate,
    }
}

pub fn serve_to_proto(serve: &Serve) -> pb::Serve {
    let kind = match (&serve.variation, &serve.rollout) {
        (Some(variation), _) => Some(pb::serve::Kind::Variation(index_to_proto(*variation))),
        (None, Some(rollout)) => Some(pb::serve::Kind::Rollout(rollout_to_proto(rollout))),
        (None, None) => None,
    };
    pb::Serve {
        kind,
        experiment: serve.experiment.as_ref().map(|e| pb::ExperimentAllocation {
            key: e.key.clone(),
            traffic_allocation: (e.traffic_allocation != i64::from(TOTAL_WEIGHT))
                .then(|| u32::try_from(e.traffic_allocation).unwrap_or(0)),
            layer: e.layer.clone().unwrap_or_default(),
            layer_offset: u32::try_from(e.layer_offset).unwrap_or(0),
        }),
    }
}

fn rollout_to_proto(rollout: &Rollout) -> pb::Rollout {
    let default = BucketBy::default();
    pb::Rollout {
        variations: rollout
            .variations
            .iter()
            .map(|w| pb::WeightedVariation {
                variation: index_to_proto(w.variation),
                weight: u32::try_from(w.weight).unwrap_or(0),
            })
            .collect(),
        bucket_by: (rollout.bucket_by != default).then(|| pb::BucketBy {
            context_kind: kind_text(&rollout.bucket_by.context_kind),
            attribute: if rollout.bucket_by.attribute == default.attribute {
                String::new()
            } else {
                rollout.bucket_by.attribute.clone()
            },
        }),
        algorithm: match rollout.algorithm {
            BucketingAlgorithm::Murmur3V1 => pb::BucketingAlgorithm::Murmur3V1 as i32,
        },
    }
}

pub fn rule_to_proto(rule: &Rule) -> pb::Rule {
    pb::Rule {
        id: rule.id.clone(),
        clauses: rule.clauses.iter().map(clause_to_proto).collect(),
        serve: Some(serve_to_proto(&rule.serve)),
        description: rule.description.clone().unwrap_or_default(),
    }
}

pub fn prerequisite_to_proto(prerequisite: &Prerequisite) -> pb::Prerequisite {
    pb::Prerequisite {
        key: prerequisite.key.clone(),
        variation: index_to_proto(prerequisite.variation),
    }
}

/// A configuration as its message; the output-only fields (environment, version, time) are
/// left for the caller.
pub fn configuration_to_proto(configuration: &FlagConfiguration) -> pb::FlagConfiguration {
    pb::FlagConfiguration {
        on: configuration.on,
        off_variation: configuration.off_variation.map(index_to_proto),
        targets: configuration.targets.iter().map(target_to_proto).collect(),
        rules: configuration.rules.iter().map(rule_to_proto).collect(),
        fallthrough: Some(serve_to_proto(&configuration.fallthrough)),
        prerequisites: configuration
            .prerequisites
            .iter()
            .map(prerequisite_to_proto)
            .collect(),
        salt: configuration.salt.clone(),
        ..Default::default()
    }
}

/// A flag of a ruleset as Sync sends it.
pub fn flag_to_proto(flag: &Flag) -> pb::RulesetFlag {
    pb::RulesetFlag {
        key: flag.key.clone(),
        kind: kind_to_proto(flag.kind),
        variations: flag.variations.iter().map(json_to_value).collect(),
        on: flag.on,
        off_variation: flag.off_variation.map(index_to_proto),
        targets: flag.targets.iter().map(target_to_proto).collect(),
        rules: flag.rules.iter().map(rule_to_proto).collect(),
        fallthrough: Some(serve_to_proto(&flag.fallthrough)),
        prerequisites: flag
            .prerequisites
            .iter()
            .map(prerequisite_to_proto)
            .collect(),
        salt: flag.salt.clone(),
        version: i64::try_from(flag.version).unwrap_or(i64::MAX),
        client_side: flag.client_side,
    }
}

pub fn key_list_to_proto(list: &KeyList) -> pb::SegmentTarget {
    pb::SegmentTarget {
        context_kind: kind_text(&list.context_kind),
        values: list.values.clone(),
    }
}

/// A segment as its message; the fields of the server's own (environment, name,
/// description, times) are left for the caller.
pub fn segment_rule_to_proto(rule: &SegmentRule) -> pb::SegmentRule {
    pb::SegmentRule {
        id: rule.id.clone(),
        clauses: rule.clauses.iter().map(clause_to_proto).collect(),
    }
}

pub fn segment_to_proto(segment: &Segment) -> pb::Segment {
    pb::Segment {
        key: segment.key.clone(),
        included: segment.included.iter().map(key_list_to_proto).collect(),
        excluded: segment.excluded.iter().map(key_list_to_proto).collect(),
        rules: segment.rules.iter().map(segment_rule_to_proto).collect(),
        version: i64::try_from(segment.version).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

// ----- messages to model -------------------------------------------------------------------

/// A context kind from a message: empty is the default, `user`.
fn kind_or_user(kind: &str) -> String {
    if kind.is_empty() {
        "user".to_owned()
    } else {
        kind.to_owned()
    }
}

fn index(value: u32) -> usize {
    value as usize
}

pub fn target_from_proto(target: &pb::Target) -> Target {
    Target {
        context_kind: kind_or_user(&target.context_kind),
        values: target.values.clone(),
        variation: index(target.variation),
    }
}

pub fn clause_from_proto(clause: &pb::Clause, path: &str) -> Result<Clause, FieldError> {
    Ok(Clause {
        context_kind: kind_or_user(&clause.context_kind),
        attribute: (!clause.attribute.is_empty()).then(|| clause.attribute.clone()),
        op: operator_from_proto(clause.op, &at(path, "op"))?,
        values: clause.values.iter().map(value_to_json).collect(),
        negate: clause.negate,
    })
}

fn clauses_from_proto(clauses: &[pb::Clause], path: &str) -> Result<Vec<Clause>, FieldError> {
    clauses
        .iter()
        .enumerate()
        .map(|(i, c)| clause_from_proto(c, &format!("{}[{i}]", at(path, "clauses"))))
        .collect()
}

/// A serve; a missing one is a serve of nothing, which the engine refuses with its path.
pub fn serve_from_proto(serve: Option<&pb::Serve>, path: &str) -> Result<Serve, FieldError> {
    let Some(serve) = serve else {
        return Ok(Serve {
            variation: None,
            rollout: None,
            experiment: None,
        });
    };
    let (variation, rollout) = match &serve.kind {
        Some(pb::serve::Kind::Variation(v)) => (Some(index(*v)), None),
        Some(pb::serve::Kind::Rollout(r)) => (None, Some(rollout_from_proto(r, path)?)),
        None => (None, None),
    };
    Ok(Serve {
        variation,
        rollout,
        experiment: serve.experiment.as_ref().map(|e| Experiment {
            key: e.key.clone(),
            traffic_allocation: e
                .traffic_allocation
                .map_or(i64::from(TOTAL_WEIGHT), i64::from),
            layer: (!e.layer.is_empty()).then(|| e.layer.clone()),
            layer_offset: i64::from(e.layer_offset),
        }),
    })
}

fn rollout_from_proto(rollout: &pb::Rollout, path: &str) -> Result<Rollout, FieldError> {
    let algorithm = match pb::BucketingAlgorithm::try_from(rollout.algorithm) {
        Ok(pb::BucketingAlgorithm::Unspecified | pb::BucketingAlgorithm::Murmur3V1) => {
            BucketingAlgorithm::Murmur3V1
        }
        Err(_) => {
            return Err(field_error(
                at(path, "rollout.algorithm"),
                format!("unknown bucketing algorithm {}", rollout.algorithm),
            ));
        }
    };
    let default = BucketBy::default();
    Ok(Rollout {
        variations: rollout
            .variations
            .iter()
            .map(|w| WeightedVariation {
                variation: index(w.variation),
                weight: i64::from(w.weight),
            })
            .collect(),
        bucket_by: match &rollout.bucket_by {
            None => default,
            Some(by) => BucketBy {
                context_kind: kind_or_user(&by.context_kind),
                attribute: if by.attribute.is_empty() {
                    default.attribute
                } else {
                    by.attribute.clone()
                },
            },
        },
        algorithm,
    })
}

pub fn rule_from_proto(rule: &pb::Rule, path: &str) -> Result<Rule, FieldError> {
    Ok(Rule {
        id: rule.id.clone(),
        clauses: clauses_from_proto(&rule.clauses, path)?,
        serve: serve_from_proto(rule.serve.as_ref(), &at(path, "serve"))?,
        description: (!rule.description.is_empty()).then(|| rule.description.clone()),
    })
}

pub fn prerequisite_from_proto(prerequisite: &pb::Prerequisite) -> Prerequisite {
    Prerequisite {
        key: prerequisite.key.clone(),
        variation: index(prerequisite.variation),
    }
}

fn rules_from_proto(rules: &[pb::Rule], path: &str) -> Result<Vec<Rule>, FieldError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule_from_proto(r, &format!("{}[{i}]", at(path, "rules"))))
        .collect()
}

/// A configuration from its message; fields are named under `path` (`configuration`).
pub fn configuration_from_proto(
    configuration: &pb::FlagConfiguration,
    path: &str,
) -> Result<FlagConfiguration, FieldError> {
    Ok(FlagConfiguration {
        on: configuration.on,
        off_variation: configuration.off_variation.map(index),
        targets: configuration
            .targets
            .iter()
            .map(target_from_proto)
            .collect(),
        rules: rules_from_proto(&configuration.rules, path)?,
        fallthrough: serve_from_proto(
            configuration.fallthrough.as_ref(),
            &at(path, "fallthrough"),
        )?,
        prerequisites: configuration
            .prerequisites
            .iter()
            .map(prerequisite_from_proto)
            .collect(),
        salt: configuration.salt.clone(),
    })
}

/// A flag of a ruleset as Sync sends it.
pub fn flag_from_proto(flag: &pb::RulesetFlag) -> Result<Flag, FieldError> {
    Ok(Flag {
        key: flag.key.clone(),
        kind: kind_from_proto(flag.kind, "kind")?,
        variations: flag.variations.iter().map(value_to_json).collect(),
        on: flag.on,
        off_variation: flag.off_variation.map(index),
        targets: flag.targets.iter().map(target_from_proto).collect(),
        rules: rules_from_proto(&flag.rules, "")?,
        fallthrough: serve_from_proto(flag.fallthrough.as_ref(), "fallthrough")?,
        prerequisites: flag
            .prerequisites
            .iter()
            .map(prerequisite_from_proto)
            .collect(),
        salt: flag.salt.clone(),
        version: u64::try_from(flag.version).unwrap_or(0),
        client_side: flag.client_side,
    })
}

pub fn key_list_from_proto(list: &pb::SegmentTarget) -> KeyList {
    KeyList {
        context_kind: kind_or_user(&list.context_kind),
        values: list.values.clone(),
    }
}

/// A segment from its message; fields are named under `path` (`segment`).
pub fn segment_from_proto(segment: &pb::Segment, path: &str) -> Result<Segment, FieldError> {
    Ok(Segment {
        key: segment.key.clone(),
        included: segment.included.iter().map(key_list_from_proto).collect(),
        excluded: segment.excluded.iter().map(key_list_from_proto).collect(),
        rules: segment
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let path = format!("{}[{i}]", at(path, "rules"));
                Ok(SegmentRule {
                    id: rule.id.clone(),
                    clauses: clauses_from_proto(&rule.clauses, &path)?,
                })
            })
            .collect::<Result<_, FieldError>>()?,
        version: u64::try_from(segment.version).unwrap_or(0),
    })
}

/// The JSON a flag of a Sync message stands for in a ruleset: its model's, or, when the
/// message holds a value the model cannot (a kind or operator this version does not know),
/// a flag the engine keeps as malformed (it evaluates to `MALFORMED_FLAG`), so that one such
/// flag never costs the others.
pub fn flag_json_from_proto(flag: &pb::RulesetFlag) -> Value {
    match flag_from_proto(flag) {
        Ok(model) => serde_json::to_value(model).unwrap_or(Value::Null),
        Err(err) => {
            let mut out = Map::new();
            out.insert("key".into(), Value::String(flag.key.clone()));
            out.insert("kind".into(), Value::String(format!("({err})")));
            out.insert("version".into(), Value::from(flag.version.max(0)));
            Value::Object(out)
        }
    }
}

/// The JSON a segment of a Sync message stands for in a ruleset (see
/// [`flag_json_from_proto`]).
pub fn segment_json_from_proto(segment: &pb::Segment) -> Value {
    match segment_from_proto(segment, "") {
        Ok(model) => serde_json::to_value(model).unwrap_or(Value::Null),
        Err(err) => serde_json::json!({ "key": segment.key, "rules": format!("({err})") }),
    }
}

// ----- contexts ----------------------------------------------------------------------------

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
    if !context.redacted_attributes.is_empty() {
        let names = context
            .redacted_attributes
            .iter()
            .cloned()
            .map(Value::String);
        out.insert("redacted_attributes".into(), Value::Array(names.collect()));
    }
    Value::Object(out)
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
    let redacted_attributes = match object.get("redacted_attributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| name.as_str().map(str::to_owned))
            .collect::<Option<_>>()?,
        Some(_) => return None,
    };
    Some(pb::Context {
        kind,
        key,
        attributes,
        contexts: Vec::new(),
        redacted_attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag() -> Flag {
        serde_json::from_value(json!({
            "key": "f", "kind": "string", "variations": ["a", "b", 3],
            "on": true, "off_variation": 1,
            "targets": [{"context_kind": "org", "values": ["o1"], "variation": 0},
                        {"values": ["u1"], "variation": 1}],
            "rules": [{"id": "r", "description": "staff first",
                "clauses": [{"context_kind": "org", "attribute": "/a/b",
                "op": "semver_gt", "values": ["1.2.3"], "negate": true},
                {"op": "segment_match", "values": ["beta"]}],
                "serve": {"rollout": {"variations": [{"variation": 0, "weight": 60000},
                    {"variation": 1, "weight": 40000}],
                    "bucket_by": {"context_kind": "org", "attribute": "id"},
                    "algorithm": "murmur3_v1"},
                    "experiment": {"key": "e", "traffic_allocation": 50000, "layer": "l",
                        "layer_offset": 10}}},
                {"id": "r2", "clauses": [], "serve": {"rollout": {"variations": [
                    {"variation": 2, "weight": 100000}]},
                    "experiment": {"key": "e2"}}}],
            "fallthrough": {"variation": 0},
            "prerequisites": [{"key": "p", "variation": 1}],
            "salt": "s", "version": 4, "client_side": true
        }))
        .unwrap()
    }

    #[test]
    fn flags_and_segments_round_trip_without_loss() {
        let flag = flag();
        assert_eq!(flag_from_proto(&flag_to_proto(&flag)).unwrap(), flag);
        let configuration = flag.configuration();
        assert_eq!(
            configuration_from_proto(&configuration_to_proto(&configuration), "configuration")
                .unwrap(),
            configuration
        );
        let segment: Segment = serde_json::from_value(json!({
            "key": "s", "included": [{"values": ["a"]}, {"context_kind": "org", "values": ["o"]}],
            "rules": [{"id": "r", "clauses": [{"attribute": "email", "op": "ends_with",
                "values": ["@x"]}]}], "version": 2
        }))
        .unwrap();
        assert_eq!(
            segment_from_proto(&segment_to_proto(&segment), "segment").unwrap(),
            segment
        );
        for op in Operator::ALL {
            assert_eq!(
                operator_from_proto(operator_to_proto(op), "op").unwrap(),
                op
            );
        }
    }

    #[test]
    fn what_the_model_cannot_hold_is_named_by_its_path() {
        let mut message = configuration_to_proto(&flag().configuration());
        message.rules[0].clauses[1].op = pb::Operator::Unspecified as i32;
        let err = configuration_from_proto(&message, "configuration").unwrap_err();
        assert_eq!(err.path, "configuration.rules[0].clauses[1].op");
        message.rules[0].clauses[1].op = 99;
        let err = configuration_from_proto(&message, "configuration").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration.rules[0].clauses[1].op: unknown operator 99"
        );
        let mut sent = flag_to_proto(&flag());
        sent.key = "g".into();
        sent.kind = 0;
        assert_eq!(flag_from_proto(&sent).unwrap_err().path, "kind");
        // In a ruleset such a flag stays, as a malformed one.
        let ruleset = vexil_engine::Ruleset::from_value(&json!({
            "flags": [flag_json_from_proto(&sent), flag_json_from_proto(&flag_to_proto(&flag()))]
        }))
        .unwrap();
        assert!(ruleset.is_malformed("g"));
        assert_eq!(ruleset.flag_count(), 2);
        // ... and costs the others nothing: `f` is judged as it is without it.
        let alone = vexil_engine::Ruleset::from_value(&json!({
            "flags": [flag_json_from_proto(&flag_to_proto(&flag()))]
        }))
        .unwrap();
        let of_f = |r: &vexil_engine::Ruleset| -> Vec<vexil_engine::Problem> {
            r.problems()
                .iter()
                .filter(|p| p.key == "f")
                .cloned()
                .collect()
        };
        assert_eq!(of_f(&ruleset), of_f(&alone));
    }

    #[test]
    fn contexts_round_trip() {
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
