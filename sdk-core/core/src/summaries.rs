//! Evaluation counts for the summaries: one counter per outcome of each flag, counted on the
//! caller's thread without a lock, drained by the event sender into each batch.

use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use vexil_engine::Ruleset;

/// One evaluation outcome counted in a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Outcome {
    pub(crate) flag_version: i64,
    pub(crate) variation: Option<u32>,
    pub(crate) error_kind: i32,
}

#[derive(Debug, Default)]
pub(crate) struct Summaries {
    pub(crate) start: i64,
    /// Flag key → outcome → count.
    pub(crate) counts: HashMap<String, HashMap<Outcome, u64>>,
}

/// The evaluation counters of one ruleset: one per outcome of each flag, in the ruleset's
/// own numbering of outcomes (`Ruleset::flag_outcomes`: "no variation", then each
/// variation). Counting is one relaxed atomic add at the outcome's number, which the engine
/// gives with the value (`Served::ordinary_outcome`), so the hot path takes no lock and
/// hashes nothing; the sender drains the counters into the next batch. Created on the first
/// count, so that a client with summaries off never allocates them. Variation calls count in
/// their thread's own [`LocalCounters`] (same numbering); this table counts the calls that
/// cannot (made inside another call on the same thread, or while the thread exits), so that
/// threads never write one counter in common.
#[derive(Debug, Default)]
pub(crate) struct SummaryCounters(pub(crate) OnceLock<CounterTable>);

#[derive(Debug)]
pub(crate) struct CounterTable {
    pub(crate) counts: Box<[AtomicU64]>,
}

impl CounterTable {
    pub(crate) fn new(ruleset: &Ruleset) -> CounterTable {
        CounterTable {
            counts: (0..ruleset.outcome_count())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Moves every non-zero count into `into`, naming each by the ruleset's flag.
    pub(crate) fn drain(
        &self,
        ruleset: &Ruleset,
        into: &mut HashMap<String, HashMap<Outcome, u64>>,
    ) {
        for index in 0..ruleset.flag_count() {
            let outcomes = ruleset.flag_outcomes(index);
            let Some((key, Some(flag))) = ruleset.flag_at(index) else {
                continue;
            };
            let Some(counters) = self.counts.get(outcomes) else {
                continue;
            };
            for (position, counter) in counters.iter().enumerate() {
                // A load first: most counters are zero, and a swap is a locked instruction.
                if counter.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let count = counter.swap(0, Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                add_outcome(into, key, flag, position, count);
            }
        }
    }
}

/// The number of a flag's outcome (see [`CounterTable`]): the flag at `index` served
/// `variation` (`None`: no variation).
pub(crate) fn outcome_number(
    ruleset: &Ruleset,
    index: usize,
    variation: Option<usize>,
) -> Option<usize> {
    let outcomes = ruleset.flag_outcomes(index);
    let number = outcomes
        .start
        .checked_add(variation.map_or(Some(0), |v| v.checked_add(1))?)?;
    outcomes.contains(&number).then_some(number)
}

/// Adds `count` evaluations of `flag` that served its outcome at `position` (0: no
/// variation, `v + 1`: variation `v`).
pub(crate) fn add_outcome(
    into: &mut HashMap<String, HashMap<Outcome, u64>>,
    key: &str,
    flag: &vexil_engine::model::Flag,
    position: usize,
    count: u64,
) {
    let outcome = Outcome {
        flag_version: i64::try_from(flag.version).unwrap_or(i64::MAX),
        variation: position.checked_sub(1).and_then(|v| u32::try_from(v).ok()),
        error_kind: 0,
    };
    *into
        .entry(key.to_owned())
        .or_default()
        .entry(outcome)
        .or_insert(0) += count;
}
