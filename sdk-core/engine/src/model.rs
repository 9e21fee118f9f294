//! The flag model in its canonical JSON form (see `conformance/SCHEMA.md`).
//!
//! These are plain serde types: what the server stores, what sync streams and what the
//! offline cache holds. They carry no behaviour; [`crate::Ruleset`] compiles them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Weights of a rollout are thousandths of a percent and sum to this.
pub const TOTAL_WEIGHT: u32 = 100_000;

/// The whole state of one environment: every flag and segment, at a version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RulesetData {
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub flags: Vec<Flag>,
    #[serde(default)]
    pub segments: Vec<Segment>,
}

/// The type every variation of a flag has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    Bool,
    String,
    Number,
    Json,
}

impl ValueKind {
    /// Every kind.
    pub const ALL: [ValueKind; 4] = [
        ValueKind::Bool,
        ValueKind::String,
        ValueKind::Number,
        ValueKind::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Bool => "bool",
            ValueKind::String => "string",
            ValueKind::Number => "number",
            ValueKind::Json => "json",
        }
    }

    /// The kind named `bool`, `string`, `number` or `json`.
    pub fn from_name(name: &str) -> Option<ValueKind> {
        ValueKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Whether `value` is a valid variation of a flag of this kind.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            ValueKind::Bool => value.is_boolean(),
            ValueKind::String => value.is_string(),
            ValueKind::Number => value.is_number(),
            ValueKind::Json => true,
        }
    }

    /// The kind a caller asks for when it passes `default`: bool, string and number
    /// defaults ask for their type, anything else for json.
    pub fn of_default(default: &Value) -> ValueKind {
        match default {
            Value::Bool(_) => ValueKind::Bool,
            Value::String(_) => ValueKind::String,
            Value::Number(_) => ValueKind::Number,
            _ => ValueKind::Json,
        }
    }
}

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A feature flag in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub key: String,
    pub kind: ValueKind,
    pub variations: Vec<Value>,
    #[serde(default)]
    pub on: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variation: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    pub fallthrough: Serve,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<Prerequisite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub client_side: bool,
}

impl Flag {
    /// The salt mixed into this flag's rollout hashes: its own, or its key.
    pub fn effective_salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.key)
    }

    /// The flag's configuration: what decides what it serves in its environment.
    pub fn configuration(&self) -> FlagConfiguration {
        FlagConfiguration {
            on: self.on,
            off_variation: self.off_variation,
            targets: self.targets.clone(),
            rules: self.rules.clone(),
            fallthrough: self.fallthrough.clone(),
            prerequisites: self.prerequisites.clone(),
            salt: self.salt.clone(),
        }
    }

    /// The flag with `configuration` in place of its own.
    pub fn with_configuration(self, configuration: FlagConfiguration) -> Flag {
        Flag {
            on: configuration.on,
            off_variation: configuration.off_variation,
            targets: configuration.targets,
            rules: configuration.rules,
            fallthrough: configuration.fallthrough,
            prerequisites: configuration.prerequisites,
            salt: configuration.salt,
            ..self
        }
    }
}

/// A flag's configuration in one environment: its fields other than those it has in every
/// environment (key, kind, variations, client-side visibility) and its version. A server
/// stores a flag as one set of shared fields and one configuration per environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagConfiguration {
    #[serde(default)]
    pub on: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variation: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    pub fallthrough: Serve,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<Prerequisite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

pub fn default_context_kind() -> String {
    "user".to_owned()
}

fn is_user_kind(kind: &str) -> bool {
    kind == "user"
}

/// Individual targeting: contexts of `context_kind` whose key is listed get `variation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(default = "default_context_kind", skip_serializing_if = "is_user_kind")]
    pub context_kind: String,
    pub values: Vec<String>,
    pub variation: usize,
}

/// Keys of one context kind, as listed in a segment's `included` or `excluded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyList {
    #[serde(default = "default_context_kind", skip_serializing_if = "is_user_kind")]
    pub context_kind: String,
    pub values: Vec<String>,
}

/// A targeting rule: when every clause matches, serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub clauses: Vec<Clause>,
    pub serve: Serve,
    /// Free text for people; evaluation ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a rule or the fallthrough serves: a fixed variation or a rollout, the latter
/// optionally as an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Serve {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Experiment>,
}

impl Serve {
    pub fn variation(index: usize) -> Serve {
        Serve {
            variation: Some(index),
            rollout: None,
            experiment: None,
        }
    }
}

/// A percentage rollout over weighted variations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub variations: Vec<WeightedVariation>,
    #[serde(default)]
    pub bucket_by: BucketBy,
    #[serde(default)]
    pub algorithm: BucketingAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightedVariation {
    pub variation: usize,
    pub weight: i64,
}

/// The attribute whose value places a context in a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketBy {
    #[serde(default = "default_context_kind")]
    pub context_kind: String,
    #[serde(default = "default_bucket_attribute")]
    pub attribute: String,
}

fn default_bucket_attribute() -> String {
    "key".to_owned()
}

impl Default for BucketBy {
    fn default() -> Self {
        BucketBy {
            context_kind: default_context_kind(),
            attribute: default_bucket_attribute(),
        }
    }
}

/// A bucketing algorithm. Once named, an algorithm never changes, so that no upgrade
/// reshuffles the users of an existing rollout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketingAlgorithm {
    /// MurmurHash3 x86_32, seed 0, over `{salt}:{bucket value}`.
    #[default]
    #[serde(rename = "murmur3_v1")]
    Murmur3V1,
}

/// Marks a rollout as an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub key: String,
    #[serde(default = "default_traffic_allocation")]
    pub traffic_allocation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(default)]
    pub layer_offset: i64,
}

fn default_traffic_allocation() -> i64 {
    i64::from(TOTAL_WEIGHT)
}

impl Experiment {
    /// The layer the experiment belongs to: its own, unless it names one.
    pub fn effective_layer(&self) -> &str {
        self.layer.as_deref().unwrap_or(&self.key)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prerequisite {
    pub key: String,
    pub variation: usize,
}

/// The operator of a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    In,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Lt,
    Lte,
    Gt,
    Gte,
    Before,
    After,
    SemverEq,
    SemverLt,
    SemverGt,
    SegmentMatch,
}

impl Operator {
    pub const ALL: [Operator; 15] = [
        Operator::In,
        Operator::StartsWith,
        Operator::EndsWith,
        Operator::Contains,
        Operator::Matches,
        Operator::Lt,
        Operator::Lte,
        Operator::Gt,
        Operator::Gte,
        Operator::Before,
        Operator::After,
        Operator::SemverEq,
        Operator::SemverLt,
        Operator::SemverGt,
        Operator::SegmentMatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Contains => "contains",
            Operator::Matches => "matches",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::Before => "before",
            Operator::After => "after",
            Operator::SemverEq => "semver_eq",
            Operator::SemverLt => "semver_lt",
            Operator::SemverGt => "semver_gt",
            Operator::SegmentMatch => "segment_match",
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clause {
    #[serde(default = "default_context_kind")]
    pub context_kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    pub op: Operator,
    pub values: Vec<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub negate: bool,
}

/// A reusable set of contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included: Vec<KeyList>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<KeyList>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<SegmentRule>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRule {
    pub id: String,
    #[serde(default)]
    pub clauses: Vec<Clause>,
}
