//! Validation across flags and segments: dangling references, prerequisite and segment
//! cycles, and experiments that share a layer.

use rustc_hash::FxHashMap;

use super::forms::{FlagEntry, SegmentEntry, find_flag};
use super::{Problem, ResourceKind, problem};
use crate::index::KeyIndex;

/// Dangling `segment_match` references and cycles among segments. A segment that reaches a
/// malformed segment is itself unusable, so malformation spreads along references.
pub(super) fn check_segment_references(
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
    let cycles = cycles_of(&refs);
    for (node, edges) in refs.iter().enumerate() {
        let Some(cycle) = &cycles[node] else {
            continue;
        };
        let names: Vec<&str> = cycle.iter().map(|&i| &*sorted[i]).collect();
        for (target, path) in edges {
            if cycle.binary_search(target).is_ok() {
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

pub(super) fn check_flag_references(
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
    let cycles = cycles_of(&all_edges);
    for node in 0..flags.len() {
        let Some(cycle) = &cycles[node] else {
            continue;
        };
        let names: Vec<&str> = cycle.iter().map(|&i| &*flags[i].key).collect();
        let message = format!("prerequisite cycle through {}", names.join(", "));
        let key = flags[node].key.clone();
        for (target, p) in &all_edges[node] {
            if cycle.binary_search(target).is_ok() {
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
pub(super) fn strongly_connected_components(adjacency: &[Vec<usize>]) -> Vec<usize> {
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

/// [`cycles`] of the graph whose node `i` has an edge to each `j` of `edges[i]` (the
/// second field says where the edge came from).
fn cycles_of<T>(edges: &[Vec<(usize, T)>]) -> Vec<Option<Vec<usize>>> {
    let adjacency: Vec<Vec<usize>> = edges
        .iter()
        .map(|out| out.iter().map(|(j, _)| *j).collect())
        .collect();
    cycles(&strongly_connected_components(&adjacency), &adjacency)
}

/// For each node, the members of its cycle (its strongly connected component, when that
/// holds a cycle), in index order; `None` for a node on no cycle. Linear in the graph's size.
pub(super) fn cycles(components: &[usize], adjacency: &[Vec<usize>]) -> Vec<Option<Vec<usize>>> {
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
pub(super) fn check_experiments(
    flags: &mut [FlagEntry],
    problems: &mut FxHashMap<Box<str>, Vec<Problem>>,
) {
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
