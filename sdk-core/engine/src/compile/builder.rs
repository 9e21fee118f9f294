//! The builder: each flag and segment compiled once, then the checks across them.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::flag::{compile_flag, compile_segment};
use super::forms::{FlagEntry, Ruleset, SegmentEntry};
use super::references::{check_experiments, check_flag_references, check_segment_references};
use super::{Problem, ResourceKind, problem};
use crate::index::KeyIndex;
use crate::model::{Flag, Segment};

#[derive(Default)]
pub(super) struct Builder {
    /// Compile every clause in its general form (tests compare the two).
    pub(crate) general_only: bool,
    pub(crate) flags: Vec<FlagEntry>,
    /// Problems that are not any one flag's own: duplicates, unreadable JSON.
    pub(crate) extra_flag_problems: Vec<(Box<str>, Problem)>,
    pub(crate) segments: Vec<(Box<str>, SegmentEntry)>,
    pub(crate) extra_segment_problems: Vec<(Box<str>, Problem)>,
}

/// Deserializes with the path of the offending field in the error.
pub(super) fn deserialize<T: serde::de::DeserializeOwned>(
    value: &Value,
) -> Result<T, (String, String)> {
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

/// A flag's or segment's key, or its place in its list when it has none.
fn key_or_position(value: &Value, list: &str, index: usize) -> String {
    match value.get("key").and_then(Value::as_str) {
        Some(key) => key.to_owned(),
        None => format!("{list}[{index}]"),
    }
}

/// Deserializes the flag or segment at `index` of `list`; when it does not fit the model,
/// files the problem in `problems` under its key (see [`key_or_position`]) and returns that
/// key.
fn deserialize_resource<T: serde::de::DeserializeOwned>(
    value: &Value,
    resource: ResourceKind,
    list: &str,
    index: usize,
    problems: &mut Vec<(Box<str>, Problem)>,
) -> Result<T, Box<str>> {
    deserialize(value).map_err(|(path, message)| {
        let key = key_or_position(value, list, index);
        let problem = problem(resource, &key, path, message);
        let key: Box<str> = key.into();
        problems.push((key.clone(), problem));
        key
    })
}

impl Builder {
    pub(super) fn add_flag_value(&mut self, value: &Value, index: usize) {
        let problems = &mut self.extra_flag_problems;
        match deserialize_resource::<Flag>(value, ResourceKind::Flag, "flags", index, problems) {
            Ok(flag) => self.add_flag(flag),
            Err(key) => self.flags.push(FlagEntry {
                key,
                compiled: None,
                raw: Some(Arc::new(value.clone())),
                malformed: true,
                first_outcome: 0,
                outcomes: 0,
            }),
        }
    }

    pub(super) fn add_flag(&mut self, flag: Flag) {
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

    pub(super) fn reuse_flag(&mut self, entry: &FlagEntry) {
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

    pub(super) fn add_segment_value(&mut self, value: &Value, index: usize) {
        let problems = &mut self.extra_segment_problems;
        match deserialize_resource::<Segment>(
            value,
            ResourceKind::Segment,
            "segments",
            index,
            problems,
        ) {
            Ok(segment) => self.add_segment(segment),
            Err(key) => self.segments.push((
                key,
                SegmentEntry {
                    compiled: None,
                    raw: Some(Arc::new(value.clone())),
                    malformed: true,
                },
            )),
        }
    }

    pub(super) fn add_segment(&mut self, segment: Segment) {
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

    pub(super) fn reuse_segment(&mut self, key: &str, entry: &SegmentEntry) {
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

    pub(super) fn finish(self, version: u64) -> Ruleset {
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
        flags.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
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
pub(super) fn number_outcomes(flags: &mut [FlagEntry]) -> u32 {
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

/// The order of flags: by key, except that malformed flags written without a key (named
/// `flags[N]` after their position) keep their relative order. Sorted as text, `flags[10]`
/// would come before `flags[9]`; saved and loaded again, they would swap names, and the
/// ruleset's JSON would not come back the same.
fn sort_key(entry: &FlagEntry) -> std::borrow::Cow<'_, str> {
    let keyless = entry
        .raw
        .as_ref()
        .is_some_and(|raw| raw.get("key").and_then(Value::as_str).is_none());
    let position = entry
        .key
        .strip_prefix("flags[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse::<u64>().ok());
    match position {
        Some(position) if keyless => format!("flags[{position:020}]").into(),
        _ => std::borrow::Cow::Borrowed(&*entry.key),
    }
}
