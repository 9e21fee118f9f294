//! Compiling the model into a [`Ruleset`], and validating it on the way.
//!
//! Compilation is lenient: a flag or segment with a problem is kept, marked malformed (it
//! evaluates to `ERROR`/`MALFORMED_FLAG`), and every problem is recorded. Strict callers (the
//! server refusing a write, `vexil validate`) look at [`Ruleset::problems`].

use std::fmt;
use std::sync::Arc;

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use crate::bucket::bucket_prefix;
use crate::context::{AttributeRef, Name, is_valid_kind};
use crate::date;
use crate::index::KeyIndex;
use crate::model::{
    Clause, Experiment, Flag, Operator, Rollout, RulesetData, Segment, Serve, TOTAL_WEIGHT,
};
use crate::murmur3::Murmur3;
use crate::semver::OwnedVersion;
use crate::short_strings::short_eq;

/// Longest flag, segment, rule or experiment key accepted.
pub const MAX_KEY_LEN: usize = 256;

/// What kind of resource a [`Problem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Flag,
    Segment,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Flag => "flag",
            ResourceKind::Segment => "segment",
        }
    }
}

/// One thing wrong with a ruleset: which resource, where in it, and what.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub resource: ResourceKind,
    /// The resource's key (for a flag that has no readable key, `flags[index]`).
    pub key: String,
    /// The field path inside the resource, such as `rules[2].clauses[0].values[1]`; empty
    /// when the problem is the resource as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.resource.as_str(), self.key)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The ruleset could not be read at all (as opposed to a flag in it having a problem).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("ruleset is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("ruleset must be a JSON object with \"flags\" and \"segments\" arrays: {0}")]
    Shape(String),
}

pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// ---------------------------------------------------------------------------------------
// Compiled forms
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct CompiledTarget {
    pub kind: Name,
    pub keys: StringSet,
    pub variation: usize,
}

#[derive(Debug)]
pub(crate) struct CompiledKeyList {
    pub kind: Name,
    pub keys: StringSet,
}

#[derive(Debug)]
pub(crate) enum Matcher {
    In {
        strings: StringSet,
        numbers: Box<[f64]>,
        has_true: bool,
        has_false: bool,
    },
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    Contains(Box<[Box<str>]>),
    Matches(Box<[Regex]>),
    Number(Operator, Box<[f64]>),
    /// `before` (false) or `after` (true), against epoch milliseconds.
    Date {
        after: bool,
        millis: Box<[f64]>,
    },
    Semver(Operator, Box<[OwnedVersion]>),
}

impl Matcher {
    /// A rough rank of evaluation cost, to order the clauses of a rule. A numeric
    /// comparison (one float compare per value) ranks below `in`, which compares strings.
    fn cost(&self) -> u8 {
        match self {
            Matcher::Number(..) => 0,
            Matcher::In { .. } => 1,
            Matcher::StartsWith(_) | Matcher::EndsWith(_) | Matcher::Contains(_) => 2,
            Matcher::Date { .. } | Matcher::Semver(..) => 3,
            Matcher::Matches(_) => 4,
        }
    }
}

/// Strings to test membership in: a short list is scanned (cheaper than hashing the
/// candidate), a long one hashed.
#[derive(Debug)]
pub(crate) enum StringSet {
    Few(Box<[Box<str>]>),
    Many(FxHashSet<Box<str>>),
}

impl StringSet {
    const SCAN_LIMIT: usize = 8;

    fn new(strings: Vec<Box<str>>) -> StringSet {
        if strings.len() <= StringSet::SCAN_LIMIT {
            StringSet::Few(strings.into_boxed_slice())
        } else {
            StringSet::Many(strings.into_iter().collect())
        }
    }

    #[inline]
    pub(crate) fn contains(&self, candidate: &str) -> bool {
        match self {
            StringSet::Few(strings) => strings.iter().any(|s| short_eq(s, candidate)),
            StringSet::Many(strings) => strings.contains(candidate),
        }
    }
}

#[derive(Debug)]
pub(crate) struct CompiledClause {
    pub kind: Name,
    pub negate: bool,
    pub test: ClauseTest,
}

/// What a clause tests. The commonest shape has a form of its own, which the clause loop
/// evaluates inline; it means exactly what the general form with the same operator,
/// attribute and values means. An explicit tag (`repr`) makes telling the forms apart one
/// byte comparison rather than a decoding of the fields' spare values.
#[derive(Debug)]
#[repr(u8)]
pub(crate) enum ClauseTest {
    /// `in` over a few strings (no numbers or booleans), of a top-level attribute named
    /// literally (not `key` or `kind`).
    AttributeIn { name: Name, values: Box<[Box<str>]> },
    /// `segment_match`: reads no attribute.
    Segment(Box<[Box<str>]>),
    General {
        attribute: AttributeRef,
        matcher: Matcher,
    },
}

impl ClauseTest {
    fn cost(&self) -> u8 {
        match self {
            ClauseTest::AttributeIn { .. } => 1,
            ClauseTest::General { matcher, .. } => matcher.cost(),
            ClauseTest::Segment(_) => 5,
        }
    }
}

/// The clauses of a rule (of a flag or a segment), AND-ed, cheapest first.
#[derive(Debug)]
pub(crate) struct Clauses {
    /// The context kind every clause but `segment_match` reads, when they all read the
    /// same one (and there is at least one such clause): evaluation then finds that kind
    /// once for the rule. Segment clauses sort last, so a context without the kind fails
    /// the rule before any segment is looked at, as it would clause by clause.
    pub kind: Option<Name>,
    pub clauses: Box<[CompiledClause]>,
}

#[derive(Debug)]
pub(crate) struct CompiledExperiment {
    pub key: Box<str>,
    /// The bucketing hash state after `layer/{layer}:`.
    pub layer_prefix: Murmur3,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug)]
pub(crate) struct CompiledRollout {
    /// (variation, running sum of weights), in order.
    pub thresholds: Box<[(usize, u32)]>,
    pub bucket_kind: Name,
    pub bucket_attribute: AttributeRef,
    pub experiment: Option<CompiledExperiment>,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variation(usize),
    Rollout(CompiledRollout),
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub id: Box<str>,
    pub clauses: Clauses,
    pub serve: CompiledServe,
}

/// A flag ready to evaluate. Keeps its model for export and sync.
#[derive(Debug)]
pub struct CompiledFlag {
    pub(crate) model: Flag,
    /// The bucketing hash state after `{salt}:`.
    pub(crate) salt_prefix: Murmur3,
    pub(crate) targets: Box<[CompiledTarget]>,
    pub(crate) rules: Box<[CompiledRule]>,
    pub(crate) fallthrough: CompiledServe,
    /// Problems found in the flag on its own (not counting references to others).
    pub(crate) problems: Vec<Problem>,
    /// Segment keys this flag's clauses name, with the path of each mention.
    pub(crate) segment_refs: Vec<(Box<str>, String)>,
    /// The outcome when it does not depend on the context (an off flag, or an on flag with
    /// nothing but a fixed fallthrough): evaluation then looks at nothing else.
    pub(crate) fixed: Option<FixedOutcome>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedOutcome {
    pub variation: Option<usize>,
    pub off: bool,
}

impl CompiledFlag {
    pub fn model(&self) -> &Flag {
        &self.model
    }
}

#[derive(Debug)]
pub struct CompiledSegment {
    pub(crate) model: Segment,
    pub(crate) included: Box<[CompiledKeyList]>,
    pub(crate) excluded: Box<[CompiledKeyList]>,
    pub(crate) rules: Box<[Clauses]>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) segment_refs: Vec<(Box<str>, String)>,
}

impl CompiledSegment {
    pub fn model(&self) -> &Segment {
        &self.model
    }
}

/// A flag of the ruleset: compiled, or only its raw JSON when it did not fit the model.
#[derive(Debug, Clone)]
pub(crate) struct FlagEntry {
    pub key: Box<str>,
    pub compiled: Option<Arc<CompiledFlag>>,
    /// The JSON as received, kept only when it did not deserialize.
    pub raw: Option<Arc<Value>>,
    pub malformed: bool,
    /// The number of this flag's first outcome in its ruleset (see [`Ruleset::flag_outcomes`]),
    /// assigned when the ruleset is built.
    pub first_outcome: u32,
    /// How many outcomes the flag has: its variations and "no variation" (0 when it did not
    /// fit the model).
    pub outcomes: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct SegmentEntry {
    pub compiled: Option<Arc<CompiledSegment>>,
    pub raw: Option<Arc<Value>>,
    pub malformed: bool,
}

/// An immutable, compiled snapshot of one environment: every flag and segment at a version.
///
/// Build it once (from JSON or from [`RulesetData`]), share it behind an `Arc`, evaluate from
/// any number of threads. Changes produce a new ruleset with [`Ruleset::patched`], which
/// reuses every unchanged compiled flag.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    pub(crate) version: u64,
    /// Sorted by key.
    pub(crate) flags: Vec<FlagEntry>,
    /// Position of each flag in `flags`, by key.
    pub(crate) flag_index: KeyIndex,
    pub(crate) segments: FxHashMap<Box<str>, SegmentEntry>,
    pub(crate) problems: Vec<Problem>,
    /// Outcomes numbered over every flag (see [`Ruleset::flag_outcomes`]).
    pub(crate) outcome_count: u32,
}

/// A ruleset in which every flag and segment fits the model, for [`Ruleset::from_json`]'s
/// fast path. `null` stands for an absent field, as in [`Ruleset::from_value`].
#[derive(serde::Deserialize)]
struct TypedRuleset {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    flags: Option<Vec<Flag>>,
    #[serde(default)]
    segments: Option<Vec<Segment>>,
}

/// Changes to apply to a ruleset: upserted and deleted flags and segments, and the version
/// they bring the ruleset to.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Patch {
    pub version: u64,
    #[serde(default)]
    pub upsert_flags: Vec<Value>,
    #[serde(default)]
    pub delete_flags: Vec<String>,
    #[serde(default)]
    pub upsert_segments: Vec<Value>,
    #[serde(default)]
    pub delete_segments: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------

impl Ruleset {
    /// Reads and compiles a ruleset from its JSON text.
    pub fn from_json(text: &str) -> Result<Ruleset, LoadError> {
        // Fast path: read the text straight into the model, skipping the intermediate
        // `Value` tree (building and dropping it costs more than the typed parse). It
        // accepts only what the slow path accepts, and builds the same ruleset: every flag
        // and segment deserializes, so the slow path would compile exactly these. Anything
        // else (a malformed flag, a bad shape, invalid JSON) goes the slow way, which keeps
        // the raw JSON and explains the problem.
        // A derived struct would also read a JSON array (by position): only objects qualify.
        let object = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{');
        if object && let Ok(typed) = serde_json::from_str::<TypedRuleset>(text) {
            let mut builder = Builder::default();
            for flag in typed.flags.unwrap_or_default() {
                builder.add_flag(flag);
            }
            for segment in typed.segments.unwrap_or_default() {
                builder.add_segment(segment);
            }
            return Ok(builder.finish(typed.version.unwrap_or(0)));
        }
        let value: Value = serde_json::from_str(text)?;
        Ruleset::from_value(&value)
    }

    /// Compiles a ruleset from its JSON value. Only a value that is not a ruleset at all is
    /// an error; problems in flags and segments are recorded (see [`Ruleset::problems`]).
    pub fn from_value(value: &Value) -> Result<Ruleset, LoadError> {
        Ruleset::from_value_with(value, false)
    }

    /// [`Ruleset::from_value`] with every clause in its general form, for the tests that
    /// check the specialised forms against it.
    #[cfg(test)]
    pub(crate) fn from_value_general(value: &Value) -> Result<Ruleset, LoadError> {
        Ruleset::from_value_with(value, true)
    }

    fn from_value_with(value: &Value, general_only: bool) -> Result<Ruleset, LoadError> {
        let object = value
            .as_object()
            .ok_or_else(|| LoadError::Shape("not an object".into()))?;
        let version = match object.get("version") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                LoadError::Shape("\"version\" must be a non-negative integer".into())
            })?,
        };
        let array = |name: &str| -> Result<&[Value], LoadError> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(&[]),
                Some(Value::Array(items)) => Ok(items.as_slice()),
                Some(_) => Err(LoadError::Shape(format!("{name:?} must be an array"))),
            }
        };
        let flags = array("flags")?;
        let segments = array("segments")?;
        let mut builder = Builder {
            general_only,
            ..Builder::default()
        };
        for (index, flag) in flags.iter().enumerate() {
            builder.add_flag_value(flag, index);
        }
        for (index, segment) in segments.iter().enumerate() {
            builder.add_segment_value(segment, index);
        }
        Ok(builder.finish(version))
    }

    /// Compiles already-typed data.
    pub fn from_data(data: &RulesetData) -> Ruleset {
        Ruleset::from_model(data.clone())
    }

    /// Compiles already-typed data it is given.
    pub fn from_model(data: RulesetData) -> Ruleset {
        let mut builder = Builder::default();
        for flag in data.flags {
            builder.add_flag(flag);
        }
        for segment in data.segments {
            builder.add_segment(segment);
        }
        builder.finish(data.version)
    }

    /// A new ruleset with `patch` applied; unchanged flags and segments are shared, not
    /// recompiled.
    pub fn patched(&self, patch: &Patch) -> Ruleset {
        let mut builder = Builder::default();
        let deleted_flags: FxHashSet<&str> =
            patch.delete_flags.iter().map(String::as_str).collect();
        let upserted_flags: FxHashSet<&str> = patch
            .upsert_flags
            .iter()
            .filter_map(|f| f.get("key").and_then(Value::as_str))
            .collect();
        for entry in &self.flags {
            if deleted_flags.contains(&*entry.key) || upserted_flags.contains(&*entry.key) {
                continue;
            }
            builder.reuse_flag(entry);
        }
        for (index, flag) in patch.upsert_flags.iter().enumerate() {
            builder.add_flag_value(flag, index);
        }
        let deleted_segments: FxHashSet<&str> =
            patch.delete_segments.iter().map(String::as_str).collect();
        let upserted_segments: FxHashSet<&str> = patch
            .upsert_segments
            .iter()
            .filter_map(|s| s.get("key").and_then(Value::as_str))
            .collect();
        for (key, entry) in &self.segments {
            if deleted_segments.contains(&**key) || upserted_segments.contains(&**key) {
                continue;
            }
            builder.reuse_segment(key, entry);
        }
        for (index, segment) in patch.upsert_segments.iter().enumerate() {
            builder.add_segment_value(segment, index);
        }
        builder.finish(patch.version)
    }

    /// The position of a flag in `flags`.
    #[inline]
    pub(crate) fn flag_position(&self, key: &str) -> Option<usize> {
        find_flag(&self.flag_index, &self.flags, key)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every problem found while building, flags first, in key order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn flag_count(&self) -> usize {
        self.flags.len()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Flag keys in order.
    pub fn flag_keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|e| &*e.key)
    }

    /// A flag's position in this ruleset, in `0..flag_count()` (flags are in key order). For
    /// callers that keep per-flag state in an array for one ruleset: look the key up once,
    /// then [`Ruleset::evaluate_at`] and [`Ruleset::flag_at`] need no second lookup.
    #[inline]
    pub fn flag_index(&self, key: &str) -> Option<usize> {
        self.flag_position(key)
    }

    /// How many outcomes the flags of this ruleset have between them (see
    /// [`Ruleset::flag_outcomes`]).
    pub fn outcome_count(&self) -> usize {
        self.outcome_count as usize
    }

    /// The numbers of the outcomes of the flag at `index`, in `0..outcome_count()`: the first
    /// is "no variation served" (an off flag without an off variation), then one per
    /// variation, in order. Numbered over the flags in key order, so that a caller can keep
    /// one array of counters per ruleset; [`Served::ordinary_outcome`] gives the number of
    /// what an evaluation served. Empty for a flag that did not fit the model.
    ///
    /// [`Served::ordinary_outcome`]: crate::Served::ordinary_outcome
    pub fn flag_outcomes(&self, index: usize) -> std::ops::Range<usize> {
        self.flags.get(index).map_or(0..0, |entry| {
            let start = entry.first_outcome as usize;
            start..start + entry.outcomes as usize
        })
    }

    /// The key and model of the flag at `index` (the model is `None` when the flag did not
    /// fit it).
    pub fn flag_at(&self, index: usize) -> Option<(&str, Option<&Flag>)> {
        let entry = self.flags.get(index)?;
        Some((
            &entry.key,
            entry.compiled.as_deref().map(CompiledFlag::model),
        ))
    }

    /// The model of a flag, if it exists and fits the model.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        let entry = &self.flags[self.flag_position(key)?];
        entry.compiled.as_deref().map(CompiledFlag::model)
    }

    /// Whether the flag exists and is malformed.
    pub fn is_malformed(&self, key: &str) -> bool {
        self.flag_position(key)
            .is_some_and(|i| self.flags[i].malformed)
    }

    /// The JSON of a flag as it would be exported (its raw form if it did not fit the model).
    pub fn flag_json(&self, key: &str) -> Option<Value> {
        let entry = &self.flags[self.flag_position(key)?];
        Some(flag_entry_json(entry))
    }

    /// The JSON of a segment as it would be exported.
    pub fn segment_json(&self, key: &str) -> Option<Value> {
        self.segments.get(key).map(segment_entry_json)
    }

    /// The whole ruleset in its canonical JSON form (flags and segments sorted by key).
    pub fn to_value(&self) -> Value {
        let mut segment_keys: Vec<&Box<str>> = self.segments.keys().collect();
        segment_keys.sort();
        serde_json::json!({
            "version": self.version,
            "flags": self.flags.iter().map(flag_entry_json).collect::<Vec<_>>(),
            "segments": segment_keys.into_iter().map(|k| segment_entry_json(&self.segments[k])).collect::<Vec<_>>(),
        })
    }
}

#[inline(always)]
fn find_flag(index: &KeyIndex, flags: &[FlagEntry], key: &str) -> Option<usize> {
    index.get(key, |p| flags.get(p).map_or("", |e| &*e.key))
}

fn flag_entry_json(entry: &FlagEntry) -> Value {
    match (&entry.compiled, &entry.raw) {
        (Some(compiled), _) => serde_json::to_value(&compiled.model).unwrap_or(Value::Null),
        (None, Some(raw)) => (**raw).clone(),
        (None, None) => Value::Null,
    }
}

fn segment_entry_json(entry: &SegmentEntry) -> Value {
    match (&entry.compiled, &entry.raw) {
        (Some(compiled), _) => serde_json::to_value(&compiled.model).unwrap_or(Value::Null),
        (None, Some(raw)) => (**raw).clone(),
        (None, None) => Value::Null,
    }
}

/// Checks a ruleset, returning every problem (empty when it is valid).
pub fn validate(data: &RulesetData) -> Vec<Problem> {
    Ruleset::from_data(data).problems
}

/// Checks a ruleset given as JSON text.
pub fn validate_json(text: &str) -> Result<Vec<Problem>, LoadError> {
    Ruleset::from_json(text).map(|r| r.problems)
}

#[derive(Default)]
struct Builder {
    /// Compile every clause in its general form (tests compare the two).
    general_only: bool,
    flags: Vec<FlagEntry>,
    /// Problems that are not any one flag's own: duplicates, unreadable JSON.
    extra_flag_problems: Vec<(Box<str>, Problem)>,
    segments: Vec<(Box<str>, SegmentEntry)>,
    extra_segment_problems: Vec<(Box<str>, Problem)>,
}

fn problem(
    resource: ResourceKind,
    key: &str,
    path: impl Into<String>,
    message: impl Into<String>,
) -> Problem {
    Problem {
        resource,
        key: key.to_owned(),
        path: path.into(),
        message: message.into(),
    }
}

/// Deserializes with the path of the offending field in the error.
fn deserialize<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    // The plain deserializer is several times faster; the path-tracking one runs only to
    // explain a failure.
    if let Ok(parsed) = T::deserialize(value) {
        return Ok(parsed);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

impl Builder {
    fn add_flag_value(&mut self, value: &Value, index: usize) {
        match deserialize::<Flag>(value) {
            Ok(flag) => self.add_flag(flag),
            Err((path, message)) => {
                let key = match value.get("key").and_then(Value::as_str) {
                    Some(key) => key.to_owned(),
                    None => format!("flags[{index}]"),
                };
                self.extra_flag_problems.push((
                    key.as_str().into(),
                    problem(ResourceKind::Flag, &key, path, message),
                ));
                self.flags.push(FlagEntry {
                    key: key.into(),
                    compiled: None,
                    raw: Some(Arc::new(value.clone())),
                    malformed: true,
                    first_outcome: 0,
                    outcomes: 0,
                });
            }
        }
    }

    fn add_flag(&mut self, flag: Flag) {
        let compiled = compile_flag(flag, !self.general_only);
        self.flags.push(FlagEntry {
            key: compiled.model.key.as_str().into(),
            malformed: !compiled.problems.is_empty(),
            compiled: Some(Arc::new(compiled)),
            raw: None,
            first_outcome: 0,
            outcomes: 0,
        });
    }

    fn reuse_flag(&mut self, entry: &FlagEntry) {
        let mut entry = entry.clone();
        // Reference checks run again below; start from the flag's own problems.
        entry.malformed = match &entry.compiled {
            Some(compiled) => !compiled.problems.is_empty(),
            None => true,
        };
        if entry.compiled.is_none() {
            // Keep the original problem text by recompiling the raw JSON.
            if let Some(raw) = entry.raw.clone() {
                self.add_flag_value(&raw, self.flags.len());
                return;
            }
        }
        self.flags.push(entry);
    }

    fn add_segment_value(&mut self, value: &Value, index: usize) {
        match deserialize::<Segment>(value) {
            Ok(segment) => self.add_segment(segment),
            Err((path, message)) => {
                let key = match value.get("key").and_then(Value::as_str) {
                    Some(key) => key.to_owned(),
                    None => format!("segments[{index}]"),
                };
                self.extra_segment_problems.push((
                    key.as_str().into(),
                    problem(ResourceKind::Segment, &key, path, message),
                ));
                self.segments.push((
                    key.into(),
                    SegmentEntry {
                        compiled: None,
                        raw: Some(Arc::new(value.clone())),
                        malformed: true,
                    },
                ));
            }
        }
    }

    fn add_segment(&mut self, segment: Segment) {
        let compiled = compile_segment(segment, !self.general_only);
        self.segments.push((
            compiled.model.key.as_str().into(),
            SegmentEntry {
                malformed: !compiled.problems.is_empty(),
                compiled: Some(Arc::new(compiled)),
                raw: None,
            },
        ));
    }

    fn reuse_segment(&mut self, key: &str, entry: &SegmentEntry) {
        match (&entry.compiled, &entry.raw) {
            (None, Some(raw)) => {
                let raw = raw.clone();
                self.add_segment_value(&raw, self.segments.len());
            }
            _ => {
                let mut entry = entry.clone();
                entry.malformed = entry
                    .compiled
                    .as_ref()
                    .is_none_or(|c| !c.problems.is_empty());
                self.segments.push((key.into(), entry));
            }
        }
    }

    fn finish(self, version: u64) -> Ruleset {
        let Builder {
            general_only: _,
            flags,
            extra_flag_problems,
            segments,
            extra_segment_problems,
        } = self;
        let mut flag_problems: FxHashMap<Box<str>, Vec<Problem>> = FxHashMap::default();
        for (key, p) in extra_flag_problems {
            flag_problems.entry(key).or_default().push(p);
        }
        let mut segment_problems: FxHashMap<Box<str>, Vec<Problem>> = FxHashMap::default();
        for (key, p) in extra_segment_problems {
            segment_problems.entry(key).or_default().push(p);
        }

        // Segments: duplicates, then references and cycles.
        let mut segment_map: FxHashMap<Box<str>, SegmentEntry> = FxHashMap::default();
        for (key, entry) in segments {
            if let Some(previous) = segment_map.get_mut(&key) {
                previous.malformed = true;
                segment_problems
                    .entry(key.clone())
                    .or_default()
                    .push(problem(
                        ResourceKind::Segment,
                        &key,
                        "key",
                        "duplicate segment key",
                    ));
                continue;
            }
            segment_map.insert(key, entry);
        }
        check_segment_references(&mut segment_map, &mut segment_problems);

        // Flags: duplicates, sort, index.
        let mut by_key: FxHashMap<Box<str>, FlagEntry> = FxHashMap::default();
        for entry in flags {
            if let Some(previous) = by_key.get_mut(&entry.key) {
                previous.malformed = true;
                flag_problems
                    .entry(entry.key.clone())
                    .or_default()
                    .push(problem(
                        ResourceKind::Flag,
                        &entry.key,
                        "key",
                        "duplicate flag key",
                    ));
                continue;
            }
            by_key.insert(entry.key.clone(), entry);
        }
        let mut flags: Vec<FlagEntry> = by_key.into_values().collect();
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let outcome_count = number_outcomes(&mut flags);
        let flag_index = KeyIndex::new(flags.iter().map(|e| &*e.key));

        check_flag_references(&mut flags, &flag_index, &segment_map, &mut flag_problems);
        check_experiments(&mut flags, &mut flag_problems);

        let mut problems = Vec::new();
        for entry in &flags {
            if let Some(compiled) = &entry.compiled {
                problems.extend(compiled.problems.iter().cloned());
            }
            if let Some(extra) = flag_problems.remove(&entry.key) {
                problems.extend(extra);
            }
        }
        let mut segment_keys: Vec<&Box<str>> = segment_map.keys().collect();
        segment_keys.sort();
        for key in segment_keys {
            if let Some(compiled) = &segment_map[key].compiled {
                problems.extend(compiled.problems.iter().cloned());
            }
            if let Some(extra) = segment_problems.remove(key) {
                problems.extend(extra);
            }
        }

        Ruleset {
            version,
            flags,
            flag_index,
            segments: segment_map,
            problems,
            outcome_count,
        }
    }
}

/// Numbers the outcomes of every flag, in key order: a flag that fits the model has one for
/// "no variation" and one per variation. Returns how many there are. A flag whose outcomes
/// would not fit in `u32` gets none (its evaluations are then not ordinary; see `Served`).
fn number_outcomes(flags: &mut [FlagEntry]) -> u32 {
    let mut next = 0u32;
    for entry in flags {
        let wanted = entry
            .compiled
            .as_ref()
            .map_or(0, |flag| flag.model.variations.len().saturating_add(1));
        let outcomes = u32::try_from(wanted)
            .ok()
            .filter(|&n| n <= u32::MAX - 1 - next)
            .unwrap_or(0);
        entry.first_outcome = next;
        entry.outcomes = outcomes;
        next += outcomes;
    }
    next
}

/// Dangling `segment_match` references and cycles among segments. A segment that reaches a
/// malformed segment is itself unusable, so malformation spreads along references.
fn check_segment_references(
    segments: &mut FxHashMap<Box<str>, SegmentEntry>,
    problems: &mut FxHashMap<Box<str>, Vec<Problem>>,
) {
    let keys: Vec<Box<str>> = segments.keys().cloned().collect();
    for key in &keys {
        let Some(compiled) = segments[key].compiled.clone() else {
            continue;
        };
        for (target, path) in &compiled.segment_refs {
            if !segments.contains_key(target) {
                problems.entry(key.clone()).or_default().push(problem(
                    ResourceKind::Segment,
                    key,
                    path.clone(),
                    format!("segment {target:?} does not exist"),
                ));
                if let Some(entry) = segments.get_mut(key) {
                    entry.malformed = true;
                }
            }
        }
    }
    // Cycles: every segment of a cycle is malformed, and each reference that stays inside
    // the cycle is reported.
    let mut sorted = keys.clone();
    sorted.sort();
    let position: FxHashMap<&str, usize> =
        sorted.iter().enumerate().map(|(i, k)| (&**k, i)).collect();
    let refs: Vec<Vec<(usize, String)>> = sorted
        .iter()
        .map(|key| {
            segments[key]
                .compiled
                .as_ref()
                .map(|c| {
                    c.segment_refs
                        .iter()
                        .filter_map(|(target, path)| {
                            position.get(&**target).map(|&j| (j, path.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let adjacency: Vec<Vec<usize>> = refs
        .iter()
        .map(|r| r.iter().map(|(j, _)| *j).collect())
        .collect();
    let components = strongly_connected_components(&adjacency);
    let cycles = cycles(&components, &adjacency);
    for (node, edges) in refs.iter().enumerate() {
        let Some(cycle) = &cycles[node] else {
            continue;
        };
        let names: Vec<&str> = cycle.iter().map(|&i| &*sorted[i]).collect();
        for (target, path) in edges {
            if components[*target] == components[node] {
                problems
                    .entry(sorted[node].clone())
                    .or_default()
                    .push(problem(
                        ResourceKind::Segment,
                        &sorted[node],
                        path.clone(),
                        format!("segment cycle through {}", names.join(", ")),
                    ));
            }
        }
        if let Some(entry) = segments.get_mut(&sorted[node]) {
            entry.malformed = true;
        }
    }
    // Spread: a segment referring to a malformed segment cannot be evaluated either.
    loop {
        let mut changed = false;
        for key in &keys {
            if segments[key].malformed {
                continue;
            }
            let reaches_bad = segments[key].compiled.as_ref().is_some_and(|c| {
                c.segment_refs
                    .iter()
                    .any(|(t, _)| segments.get(t).is_none_or(|e| e.malformed))
            });
            if reaches_bad && let Some(entry) = segments.get_mut(key) {
                entry.malformed = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn check_flag_references(
    flags: &mut [FlagEntry],
    index: &KeyIndex,
    segments: &FxHashMap<Box<str>, SegmentEntry>,
    problems: &mut FxHashMap<Box<str>, Vec<Problem>>,
) {
    for i in 0..flags.len() {
        let Some(compiled) = flags[i].compiled.clone() else {
            continue;
        };
        let key = &flags[i].key;
        let mut bad = false;
        for (target, path) in &compiled.segment_refs {
            match segments.get(target) {
                None => {
                    bad = true;
                    problems.entry(key.clone()).or_default().push(problem(
                        ResourceKind::Flag,
                        key,
                        path.clone(),
                        format!("segment {target:?} does not exist"),
                    ));
                }
                // The segment's own problem is reported on the segment.
                Some(entry) if entry.malformed => bad = true,
                Some(_) => {}
            }
        }
        for (p, prerequisite) in compiled.model.prerequisites.iter().enumerate() {
            match find_flag(index, flags, &prerequisite.key) {
                None => {
                    bad = true;
                    problems.entry(key.clone()).or_default().push(problem(
                        ResourceKind::Flag,
                        key,
                        format!("prerequisites[{p}].key"),
                        format!("prerequisite flag {:?} does not exist", prerequisite.key),
                    ));
                }
                Some(j) => {
                    if let Some(other) = &flags[j].compiled
                        && prerequisite.variation >= other.model.variations.len()
                    {
                        bad = true;
                        problems.entry(key.clone()).or_default().push(problem(
                            ResourceKind::Flag,
                            key,
                            format!("prerequisites[{p}].variation"),
                            format!(
                                "variation {} does not exist in flag {:?}, which has {}",
                                prerequisite.variation,
                                prerequisite.key,
                                other.model.variations.len()
                            ),
                        ));
                    }
                }
            }
        }
        if bad {
            flags[i].malformed = true;
        }
    }

    // Prerequisite cycles. Every flag on a cycle is malformed; a flag that merely depends
    // on one fails that prerequisite at evaluation.
    let all_edges: Vec<Vec<(usize, usize)>> = flags
        .iter()
        .map(|entry| {
            entry
                .compiled
                .as_ref()
                .map(|c| {
                    c.model
                        .prerequisites
                        .iter()
                        .enumerate()
                        .filter_map(|(p, pre)| find_flag(index, flags, &pre.key).map(|j| (j, p)))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let adjacency: Vec<Vec<usize>> = all_edges
        .iter()
        .map(|edges| edges.iter().map(|(j, _)| *j).collect())
        .collect();
    let components = strongly_connected_components(&adjacency);
    let cycles = cycles(&components, &adjacency);
    for node in 0..flags.len() {
        let Some(cycle) = &cycles[node] else {
            continue;
        };
        let names: Vec<&str> = cycle.iter().map(|&i| &*flags[i].key).collect();
        let message = format!("prerequisite cycle through {}", names.join(", "));
        let key = flags[node].key.clone();
        for (target, p) in &all_edges[node] {
            if components[*target] == components[node] {
                problems.entry(key.clone()).or_default().push(problem(
                    ResourceKind::Flag,
                    &key,
                    format!("prerequisites[{p}].key"),
                    message.clone(),
                ));
            }
        }
        flags[node].malformed = true;
    }
}

/// Tarjan's algorithm, iteratively: the component number of every node.
fn strongly_connected_components(adjacency: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = adjacency.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNSEEN; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut next_component = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if let Some(&target) = adjacency[node].get(*edge) {
                *edge += 1;
                if index[target] == UNSEEN {
                    index[target] = next_index;
                    low[target] = next_index;
                    next_index += 1;
                    stack.push(target);
                    on_stack[target] = true;
                    work.push((target, 0));
                } else if on_stack[target] {
                    low[node] = low[node].min(index[target]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component[member] = next_component;
                    if member == node {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

/// For each node, the members of its cycle (its strongly connected component, when that
/// holds a cycle), in index order; `None` for a node on no cycle. Linear in the graph's size.
fn cycles(components: &[usize], adjacency: &[Vec<usize>]) -> Vec<Option<Vec<usize>>> {
    let count = components.iter().map(|c| c + 1).max().unwrap_or(0);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (node, &component) in components.iter().enumerate() {
        members[component].push(node);
    }
    components
        .iter()
        .enumerate()
        .map(|(node, &component)| {
            let cyclic = members[component].len() > 1 || adjacency[node].contains(&node);
            cyclic.then(|| members[component].clone())
        })
        .collect()
}

/// Experiment keys are unique, and ranges of one layer do not overlap.
fn check_experiments(flags: &mut [FlagEntry], problems: &mut FxHashMap<Box<str>, Vec<Problem>>) {
    struct Found {
        flag: usize,
        path: String,
        key: String,
        layer: String,
        start: i64,
        end: i64,
    }
    let mut found: Vec<Found> = Vec::new();
    for (i, entry) in flags.iter().enumerate() {
        let Some(compiled) = &entry.compiled else {
            continue;
        };
        let serves = compiled
            .model
            .rules
            .iter()
            .enumerate()
            .map(|(r, rule)| (format!("rules[{r}].serve"), &rule.serve))
            .chain(std::iter::once((
                "fallthrough".to_owned(),
                &compiled.model.fallthrough,
            )));
        for (path, serve) in serves {
            if let Some(experiment) = &serve.experiment {
                found.push(Found {
                    flag: i,
                    path: format!("{path}.experiment"),
                    key: experiment.key.clone(),
                    layer: experiment.effective_layer().to_owned(),
                    start: experiment.layer_offset,
                    end: experiment
                        .layer_offset
                        .saturating_add(experiment.traffic_allocation),
                });
            }
        }
    }
    let mut report = |f: &Found, what: &str, message: String, flags: &mut [FlagEntry]| {
        flags[f.flag].malformed = true;
        let key = flags[f.flag].key.clone();
        let path = if what.is_empty() {
            f.path.clone()
        } else {
            format!("{}.{what}", f.path)
        };
        problems.entry(key.clone()).or_default().push(problem(
            ResourceKind::Flag,
            &key,
            path,
            message,
        ));
    };
    let mut by_key: FxHashMap<&str, usize> = FxHashMap::default();
    for (n, f) in found.iter().enumerate() {
        if let Some(&first) = by_key.get(f.key.as_str()) {
            let message = format!(
                "experiment key {:?} is already used by flag {:?}",
                f.key, flags[found[first].flag].key
            );
            report(f, "key", message, flags);
        } else {
            by_key.insert(&f.key, n);
        }
    }
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by(|&a, &b| {
        (found[a].layer.as_str(), found[a].start, found[a].end).cmp(&(
            found[b].layer.as_str(),
            found[b].start,
            found[b].end,
        ))
    });
    // Walk each layer's ranges by start, remembering the one reaching furthest so far.
    let mut furthest: Option<usize> = None;
    for &n in &order {
        let f = &found[n];
        if f.start >= f.end {
            continue; // an empty range takes no traffic
        }
        match furthest {
            Some(m) if found[m].layer == f.layer && f.start < found[m].end => {
                let e = &found[m];
                let message = format!(
                    "range [{}, {}) of experiment {:?} overlaps range [{}, {}) of experiment {:?} in layer {:?}",
                    f.start, f.end, f.key, e.start, e.end, e.key, e.layer
                );
                // Reported on the later range only: the earlier experiment keeps running.
                report(f, "", message, flags);
                if f.end > e.end {
                    furthest = Some(n);
                }
            }
            _ => furthest = Some(n),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compiling one flag or segment
// ---------------------------------------------------------------------------------------

struct Ctx<'a> {
    resource: ResourceKind,
    key: &'a str,
    problems: Vec<Problem>,
    segment_refs: Vec<(Box<str>, String)>,
    /// Whether clauses get their specialised forms (always, but in the tests that compare
    /// them with the general forms).
    specialise: bool,
}

impl Ctx<'_> {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems
            .push(problem(self.resource, self.key, path, message));
    }
}

fn check_key(ctx: &mut Ctx<'_>, path: &str, key: &str, what: &str) {
    if !is_valid_key(key) {
        ctx.report(
            path,
            format!("{what} {key:?} must be 1 to {MAX_KEY_LEN} characters among A-Z a-z 0-9 . _ -"),
        );
    }
}

fn check_kind(ctx: &mut Ctx<'_>, path: String, kind: &str) {
    if !is_valid_kind(kind) || kind == "multi" {
        ctx.report(path, format!("invalid context kind {kind:?}"));
    }
}

fn compile_flag(flag: Flag, specialise: bool) -> CompiledFlag {
    let key = flag.key.clone();
    let mut ctx = Ctx {
        resource: ResourceKind::Flag,
        key: &key,
        problems: Vec::new(),
        segment_refs: Vec::new(),
        specialise,
    };
    check_key(&mut ctx, "key", &flag.key, "flag key");
    if flag.variations.is_empty() {
        ctx.report("variations", "a flag needs at least one variation");
    }
    for (i, variation) in flag.variations.iter().enumerate() {
        if !flag.kind.admits(variation) {
            ctx.report(
                format!("variations[{i}]"),
                format!("{variation} is not a {} value", flag.kind),
            );
        }
    }
    let count = flag.variations.len();
    let check_index = |ctx: &mut Ctx<'_>, path: String, index: usize| {
        if index >= count {
            ctx.report(
                path,
                format!("variation {index} does not exist (the flag has {count})"),
            );
        }
    };
    if let Some(off) = flag.off_variation {
        check_index(&mut ctx, "off_variation".into(), off);
    }
    if let Some(salt) = &flag.salt
        && salt.is_empty()
    {
        ctx.report("salt", "salt must not be empty");
    }
    let mut targets = Vec::with_capacity(flag.targets.len());
    for (i, target) in flag.targets.iter().enumerate() {
        check_kind(
            &mut ctx,
            format!("targets[{i}].context_kind"),
            &target.context_kind,
        );
        check_index(
            &mut ctx,
            format!("targets[{i}].variation"),
            target.variation,
        );
        targets.push(CompiledTarget {
            kind: Name::new(&target.context_kind),
            keys: StringSet::new(target.values.iter().map(|v| v.as_str().into()).collect()),
            variation: target.variation,
        });
    }
    let mut rule_ids: FxHashSet<&str> = FxHashSet::default();
    let mut rules = Vec::with_capacity(flag.rules.len());
    for (r, rule) in flag.rules.iter().enumerate() {
        if rule.id.is_empty() {
            ctx.report(format!("rules[{r}].id"), "rule id must not be empty");
        } else if !rule_ids.insert(&rule.id) {
            ctx.report(
                format!("rules[{r}].id"),
                format!("duplicate rule id {:?}", rule.id),
            );
        }
        let clauses = compile_clauses(&mut ctx, &format!("rules[{r}]"), &rule.clauses);
        let serve = compile_serve(&mut ctx, &format!("rules[{r}].serve"), &rule.serve, count);
        rules.push(CompiledRule {
            id: rule.id.as_str().into(),
            clauses,
            serve,
        });
    }
    let fallthrough = compile_serve(&mut ctx, "fallthrough", &flag.fallthrough, count);
    let Ctx {
        problems,
        segment_refs,
        ..
    } = ctx;
    let fixed = if !flag.on {
        Some(FixedOutcome {
            variation: flag.off_variation,
            off: true,
        })
    } else {
        match (
            &fallthrough,
            flag.prerequisites.is_empty() && targets.is_empty() && rules.is_empty(),
        ) {
            (CompiledServe::Variation(v), true) => Some(FixedOutcome {
                variation: Some(*v),
                off: false,
            }),
            _ => None,
        }
    };
    CompiledFlag {
        fixed,
        salt_prefix: bucket_prefix(flag.effective_salt()),
        targets: targets.into_boxed_slice(),
        rules: rules.into_boxed_slice(),
        fallthrough,
        problems,
        segment_refs,
        model: flag,
    }
}

fn compile_serve(ctx: &mut Ctx<'_>, path: &str, serve: &Serve, count: usize) -> CompiledServe {
    match (serve.variation, &serve.rollout) {
        (Some(_), Some(_)) => {
            ctx.report(path, "serve either a variation or a rollout, not both");
            CompiledServe::Variation(0)
        }
        (None, None) => {
            ctx.report(path, "serve needs a variation or a rollout");
            CompiledServe::Variation(0)
        }
        (Some(index), None) => {
            if index >= count {
                ctx.report(
                    format!("{path}.variation"),
                    format!("variation {index} does not exist (the flag has {count})"),
                );
            }
            if serve.experiment.is_some() {
                ctx.report(
                    format!("{path}.experiment"),
                    "an experiment needs a rollout to assign variations",
                );
            }
            CompiledServe::Variation(index)
        }
        (None, Some(rollout)) => CompiledServe::Rollout(compile_rollout(
            ctx,
            path,
            rollout,
            serve.experiment.as_ref(),
            count,
        )),
    }
}

fn compile_rollout(
    ctx: &mut Ctx<'_>,
    path: &str,
    rollout: &Rollout,
    experiment: Option<&Experiment>,
    count: usize,
) -> CompiledRollout {
    let mut thresholds = Vec::with_capacity(rollout.variations.len());
    let mut sum: i64 = 0;
    let mut weights_ok = true;
    if rollout.variations.is_empty() {
        ctx.report(
            format!("{path}.rollout.variations"),
            "a rollout needs at least one variation",
        );
    }
    for (i, weighted) in rollout.variations.iter().enumerate() {
        if weighted.variation >= count {
            ctx.report(
                format!("{path}.rollout.variations[{i}].variation"),
                format!(
                    "variation {} does not exist (the flag has {count})",
                    weighted.variation
                ),
            );
        }
        if !(0..=i64::from(TOTAL_WEIGHT)).contains(&weighted.weight) {
            weights_ok = false;
            ctx.report(
                format!("{path}.rollout.variations[{i}].weight"),
                format!(
                    "weight {} must be between 0 and {TOTAL_WEIGHT}",
                    weighted.weight
                ),
            );
            continue;
        }
        sum += weighted.weight;
        thresholds.push((weighted.variation, u32::try_from(sum).unwrap_or(u32::MAX)));
    }
    if weights_ok && !rollout.variations.is_empty() && sum != i64::from(TOTAL_WEIGHT) {
        ctx.report(
            format!("{path}.rollout.variations"),
            format!("weights sum to {sum}, not {TOTAL_WEIGHT}"),
        );
    }
    check_kind(
        ctx,
        format!("{path}.rollout.bucket_by.context_kind"),
        &rollout.bucket_by.context_kind,
    );
    let bucket_attribute = match AttributeRef::parse(&rollout.bucket_by.attribute) {
        Some(attribute) => attribute,
        None => {
            ctx.report(
                format!("{path}.rollout.bucket_by.attribute"),
                format!(
                    "invalid attribute reference {:?}",
                    rollout.bucket_by.attribute
                ),
            );
            AttributeRef::Key
        }
    };
    let experiment = experiment.map(|experiment| {
        let epath = format!("{path}.experiment");
        check_key(
            ctx,
            &format!("{epath}.key"),
            &experiment.key,
            "experiment key",
        );
        if let Some(layer) = &experiment.layer {
            check_key(ctx, &format!("{epath}.layer"), layer, "layer");
        }
        let total = i64::from(TOTAL_WEIGHT);
        if !(0..=total).contains(&experiment.traffic_allocation) {
            ctx.report(
                epath.clone(),
                format!(
                    "traffic allocation {} must be between 0 and {total}",
                    experiment.traffic_allocation
                ),
            );
        } else if !(0..=total).contains(&experiment.layer_offset)
            || experiment.layer_offset + experiment.traffic_allocation > total
        {
            ctx.report(
                epath.clone(),
                format!(
                    "range [{}, {}) does not fit in the layer's [0, {total})",
                    experiment.layer_offset,
                    experiment
                        .layer_offset
                        .saturating_add(experiment.traffic_allocation)
                ),
            );
        }
        let clamp = |v: i64| u32::try_from(v.clamp(0, total)).unwrap_or(0);
        CompiledExperiment {
            key: experiment.key.as_str().into(),
            layer_prefix: bucket_prefix(&format!("layer/{}", experiment.effective_layer())),
            start: clamp(experiment.layer_offset),
            end: clamp(
                experiment
                    .layer_offset
                    .saturating_add(experiment.traffic_allocation),
            ),
        }
    });
    CompiledRollout {
        thresholds: thresholds.into_boxed_slice(),
        bucket_kind: Name::new(&rollout.bucket_by.context_kind),
        bucket_attribute,
        experiment,
    }
}

fn compile_segment(segment: Segment, specialise: bool) -> CompiledSegment {
    let key = segment.key.clone();
    let mut ctx = Ctx {
        resource: ResourceKind::Segment,
        key: &key,
        problems: Vec::new(),
        segment_refs: Vec::new(),
        specialise,
    };
    check_key(&mut ctx, "key", &segment.key, "segment key");
    let lists = |ctx: &mut Ctx<'_>, name: &str, lists: &[crate::model::KeyList]| {
        lists
            .iter()
            .enumerate()
            .map(|(i, list)| {
                check_kind(ctx, format!("{name}[{i}].context_kind"), &list.context_kind);
                CompiledKeyList {
                    kind: Name::new(&list.context_kind),
                    keys: StringSet::new(list.values.iter().map(|v| v.as_str().into()).collect()),
                }
            })
            .collect::<Box<[_]>>()
    };
    let included = lists(&mut ctx, "included", &segment.included);
    let excluded = lists(&mut ctx, "excluded", &segment.excluded);
    let mut rule_ids: FxHashSet<&str> = FxHashSet::default();
    let mut rules = Vec::with_capacity(segment.rules.len());
    for (r, rule) in segment.rules.iter().enumerate() {
        if rule.id.is_empty() {
            ctx.report(format!("rules[{r}].id"), "rule id must not be empty");
        } else if !rule_ids.insert(&rule.id) {
            ctx.report(
                format!("rules[{r}].id"),
                format!("duplicate rule id {:?}", rule.id),
            );
        }
        rules.push(compile_clauses(
            &mut ctx,
            &format!("rules[{r}]"),
            &rule.clauses,
        ));
    }
    let Ctx {
        problems,
        segment_refs,
        ..
    } = ctx;
    CompiledSegment {
        included,
        excluded,
        rules: rules.into_boxed_slice(),
        problems,
        segment_refs,
        model: segment,
    }
}

fn compile_clauses(ctx: &mut Ctx<'_>, rule_path: &str, clauses: &[Clause]) -> Clauses {
    let mut compiled: Vec<CompiledClause> = clauses
        .iter()
        .enumerate()
        .map(|(c, clause)| compile_clause(ctx, &format!("{rule_path}.clauses[{c}]"), clause))
        .collect();
    // Clauses are AND-ed and free of side effects, so the cheap ones run first: a rule that
    // fails on `country in [...]` never reaches its regex or its segment.
    compiled.sort_by_key(|clause| clause.test.cost());
    // Segment clauses sort last: the others are the ones before the first of them.
    let mut reading = compiled
        .iter()
        .take_while(|c| !matches!(c.test, ClauseTest::Segment(_)))
        .map(|c| &c.kind);
    let kind = match reading.next() {
        Some(first) if ctx.specialise && reading.all(|k| k.as_str() == first.as_str()) => {
            Some(first.clone())
        }
        _ => None,
    };
    Clauses {
        kind,
        clauses: compiled.into_boxed_slice(),
    }
}

fn compile_clause(ctx: &mut Ctx<'_>, path: &str, clause: &Clause) -> CompiledClause {
    let op = clause.op;
    check_kind(ctx, format!("{path}.context_kind"), &clause.context_kind);
    let attribute = if op == Operator::SegmentMatch {
        AttributeRef::Key // not read
    } else {
        match clause
            .attribute
            .as_deref()
            .map(|a| (a, AttributeRef::parse(a)))
        {
            Some((_, Some(attribute))) => attribute,
            Some((text, None)) => {
                ctx.report(
                    format!("{path}.attribute"),
                    format!("invalid attribute reference {text:?}"),
                );
                AttributeRef::Key
            }
            None => {
                ctx.report(
                    format!("{path}.attribute"),
                    format!("operator {} needs an attribute", op.as_str()),
                );
                AttributeRef::Key
            }
        }
    };
    if clause.values.is_empty() {
        ctx.report(
            format!("{path}.values"),
            "a clause needs at least one value",
        );
    }
    let mut bad = |ctx: &mut Ctx<'_>, i: usize, message: String| {
        ctx.report(format!("{path}.values[{i}]"), message);
    };
    let strings =
        |ctx: &mut Ctx<'_>, bad: &mut dyn FnMut(&mut Ctx<'_>, usize, String)| -> Box<[Box<str>]> {
            let mut out = Vec::new();
            for (i, value) in clause.values.iter().enumerate() {
                match value.as_str() {
                    Some(s) => out.push(s.into()),
                    None => bad(
                        ctx,
                        i,
                        format!("operator {} takes strings, got {value}", op.as_str()),
                    ),
                }
            }
            out.into_boxed_slice()
        };
    let matcher = match op {
        Operator::In => {
            let mut strings = Vec::new();
            let mut numbers = Vec::new();
            let (mut has_true, mut has_false) = (false, false);
            for (i, value) in clause.values.iter().enumerate() {
                match value {
                    Value::String(s) => strings.push(s.as_str().into()),
                    Value::Number(n) => numbers.push(n.as_f64().unwrap_or(f64::NAN)),
                    Value::Bool(true) => has_true = true,
                    Value::Bool(false) => has_false = true,
                    other => bad(
                        ctx,
                        i,
                        format!("operator in takes strings, numbers and booleans, got {other}"),
                    ),
                }
            }
            Matcher::In {
                strings: StringSet::new(strings),
                numbers: numbers.into_boxed_slice(),
                has_true,
                has_false,
            }
        }
        Operator::StartsWith => Matcher::StartsWith(strings(ctx, &mut bad)),
        Operator::EndsWith => Matcher::EndsWith(strings(ctx, &mut bad)),
        Operator::Contains => Matcher::Contains(strings(ctx, &mut bad)),
        Operator::Matches => {
            let mut regexes = Vec::new();
            for (i, value) in clause.values.iter().enumerate() {
                match value.as_str().map(Regex::new) {
                    Some(Ok(regex)) => regexes.push(regex),
                    Some(Err(e)) => bad(
                        ctx,
                        i,
                        format!("invalid regular expression: {}", first_line(&e.to_string())),
                    ),
                    None => bad(
                        ctx,
                        i,
                        format!("operator matches takes strings, got {value}"),
                    ),
                }
            }
            Matcher::Matches(regexes.into_boxed_slice())
        }
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
            let mut numbers = Vec::new();
            for (i, value) in clause.values.iter().enumerate() {
                match value.as_f64() {
                    Some(n) => numbers.push(n),
                    None => bad(
                        ctx,
                        i,
                        format!("operator {} takes numbers, got {value}", op.as_str()),
                    ),
                }
            }
            Matcher::Number(op, numbers.into_boxed_slice())
        }
        Operator::Before | Operator::After => {
            let mut millis = Vec::new();
            for (i, value) in clause.values.iter().enumerate() {
                match date::to_epoch_millis(value) {
                    Some(ms) => millis.push(ms),
                    None => bad(
                        ctx,
                        i,
                        format!(
                            "operator {} takes RFC 3339 dates or epoch milliseconds, got {value}",
                            op.as_str()
                        ),
                    ),
                }
            }
            Matcher::Date {
                after: op == Operator::After,
                millis: millis.into_boxed_slice(),
            }
        }
        Operator::SemverEq | Operator::SemverLt | Operator::SemverGt => {
            let mut versions = Vec::new();
            for (i, value) in clause.values.iter().enumerate() {
                match value.as_str().and_then(OwnedVersion::parse) {
                    Some(version) => versions.push(version),
                    _ => bad(
                        ctx,
                        i,
                        format!(
                            "operator {} takes semantic versions, got {value}",
                            op.as_str()
                        ),
                    ),
                }
            }
            Matcher::Semver(op, versions.into_boxed_slice())
        }
        Operator::SegmentMatch => {
            let mut keys = Vec::new();
            for (i, value) in clause.values.iter().enumerate() {
                match value.as_str() {
                    Some(s) => {
                        ctx.segment_refs
                            .push((s.into(), format!("{path}.values[{i}]")));
                        keys.push(s.into());
                    }
                    None => bad(
                        ctx,
                        i,
                        format!("operator segment_match takes segment keys, got {value}"),
                    ),
                }
            }
            return CompiledClause {
                kind: Name::new(&clause.context_kind),
                negate: clause.negate,
                test: ClauseTest::Segment(keys.into_boxed_slice()),
            };
        }
    };
    CompiledClause {
        kind: Name::new(&clause.context_kind),
        negate: clause.negate,
        test: specialised(ctx.specialise, attribute, matcher),
    }
}

/// The clause's own form when it has the commonest shape, else the general one.
fn specialised(specialise: bool, attribute: AttributeRef, matcher: Matcher) -> ClauseTest {
    match (attribute, matcher) {
        (
            AttributeRef::Name(name),
            Matcher::In {
                strings: StringSet::Few(values),
                numbers,
                has_true: false,
                has_false: false,
            },
        ) if specialise && numbers.is_empty() => ClauseTest::AttributeIn { name, values },
        (attribute, matcher) => ClauseTest::General { attribute, matcher },
    }
}

fn first_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
