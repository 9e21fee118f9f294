//! The ruleset container: building it from the model or JSON, patching one flag or segment,
//! and looking flags up.

use rustc_hash::FxHashSet;
use serde_json::Value;

use super::builder::Builder;
use super::forms::{
    CompiledFlag, FlagEntry, Patch, Ruleset, SegmentEntry, TypedRuleset, find_flag,
};
use super::{LoadError, Problem};
use crate::model::{Flag, RulesetData};

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

    pub(super) fn from_value_with(value: &Value, general_only: bool) -> Result<Ruleset, LoadError> {
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
        let replaced_flags = replaced_keys(&patch.delete_flags, &patch.upsert_flags);
        for entry in &self.flags {
            if !replaced_flags.contains(&*entry.key) {
                builder.reuse_flag(entry);
            }
        }
        for (index, flag) in patch.upsert_flags.iter().enumerate() {
            builder.add_flag_value(flag, index);
        }
        let replaced_segments = replaced_keys(&patch.delete_segments, &patch.upsert_segments);
        for (key, entry) in &self.segments {
            if !replaced_segments.contains(&**key) {
                builder.reuse_segment(key, entry);
            }
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

pub(super) fn flag_entry_json(entry: &FlagEntry) -> Value {
    match (&entry.compiled, &entry.raw) {
        (Some(compiled), _) => serde_json::to_value(&compiled.model).unwrap_or(Value::Null),
        (None, Some(raw)) => (**raw).clone(),
        (None, None) => Value::Null,
    }
}

pub(super) fn segment_entry_json(entry: &SegmentEntry) -> Value {
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

/// The keys a patch deletes or replaces: what the patched ruleset does not reuse.
fn replaced_keys<'a>(deleted: &'a [String], upserted: &'a [Value]) -> FxHashSet<&'a str> {
    deleted
        .iter()
        .map(String::as_str)
        .chain(
            upserted
                .iter()
                .filter_map(|v| v.get("key").and_then(Value::as_str)),
        )
        .collect()
}
