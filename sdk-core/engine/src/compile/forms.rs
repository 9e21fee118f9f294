//! The compiled forms the evaluator walks: flags, segments, clauses and serves as compiled,
//! and the ruleset that holds them.

use std::sync::Arc;

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use super::Problem;
use crate::context::{AttributeRef, Name};
use crate::index::KeyIndex;
use crate::model::{Flag, Operator, Segment};
use crate::murmur3::Murmur3;
use crate::semver::OwnedVersion;
use crate::short_strings::short_eq;

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
    pub(super) fn cost(&self) -> u8 {
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

    pub(super) fn new(strings: Vec<Box<str>>) -> StringSet {
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
    pub(super) fn cost(&self) -> u8 {
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
pub(super) struct TypedRuleset {
    #[serde(default)]
    pub(crate) version: Option<u64>,
    #[serde(default)]
    pub(crate) flags: Option<Vec<Flag>>,
    #[serde(default)]
    pub(crate) segments: Option<Vec<Segment>>,
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

/// The position of the flag `key` in `flags`, through their index.
#[inline(always)]
pub(crate) fn find_flag(index: &KeyIndex, flags: &[FlagEntry], key: &str) -> Option<usize> {
    index.get(key, |p| flags.get(p).map_or("", |e| &*e.key))
}
