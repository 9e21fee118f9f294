//! Compiling one flag or segment from the model, recording each problem with its path.

use regex::Regex;
use rustc_hash::FxHashSet;
use serde_json::Value;

use super::forms::{
    ClauseTest, Clauses, CompiledClause, CompiledExperiment, CompiledFlag, CompiledKeyList,
    CompiledRollout, CompiledRule, CompiledSegment, CompiledServe, CompiledTarget, FixedOutcome,
    Matcher, StringSet,
};
use super::{MAX_KEY_LEN, Problem, ResourceKind, is_valid_key, problem};
use crate::bucket::bucket_prefix;
use crate::context::{AttributeRef, Name, is_valid_kind};
use crate::date;
use crate::model::{Clause, Experiment, Flag, Operator, Rollout, Segment, Serve, TOTAL_WEIGHT};
use crate::semver::OwnedVersion;

pub(super) struct Ctx<'a> {
    pub(crate) resource: ResourceKind,
    pub(crate) key: &'a str,
    pub(crate) problems: Vec<Problem>,
    pub(crate) segment_refs: Vec<(Box<str>, String)>,
    /// Whether clauses get their specialised forms (always, but in the tests that compare
    /// them with the general forms).
    pub(crate) specialise: bool,
}

impl<'a> Ctx<'a> {
    fn new(resource: ResourceKind, key: &'a str, specialise: bool) -> Self {
        Ctx {
            resource,
            key,
            problems: Vec::new(),
            segment_refs: Vec::new(),
            specialise,
        }
    }

    pub(super) fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems
            .push(problem(self.resource, self.key, path, message));
    }
}

pub(super) fn check_key(ctx: &mut Ctx<'_>, path: &str, key: &str, what: &str) {
    if !is_valid_key(key) {
        ctx.report(
            path,
            format!("{what} {key:?} must be 1 to {MAX_KEY_LEN} characters among A-Z a-z 0-9 . _ -"),
        );
    }
}

/// Rule ids are what exposures and results name a rule by: each must be given and unique
/// within its flag or segment.
fn check_rule_id<'a>(ctx: &mut Ctx<'_>, seen: &mut FxHashSet<&'a str>, r: usize, id: &'a str) {
    if id.is_empty() {
        ctx.report(format!("rules[{r}].id"), "rule id must not be empty");
    } else if !seen.insert(id) {
        ctx.report(
            format!("rules[{r}].id"),
            format!("duplicate rule id {id:?}"),
        );
    }
}

pub(super) fn check_kind(ctx: &mut Ctx<'_>, path: String, kind: &str) {
    if !is_valid_kind(kind) || kind == "multi" {
        ctx.report(path, format!("invalid context kind {kind:?}"));
    }
}

pub(super) fn compile_flag(flag: Flag, specialise: bool) -> CompiledFlag {
    let key = flag.key.clone();
    let mut ctx = Ctx::new(ResourceKind::Flag, &key, specialise);
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
        check_rule_id(&mut ctx, &mut rule_ids, r, &rule.id);
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

pub(super) fn compile_serve(
    ctx: &mut Ctx<'_>,
    path: &str,
    serve: &Serve,
    count: usize,
) -> CompiledServe {
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

pub(super) fn compile_rollout(
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

pub(super) fn compile_segment(segment: Segment, specialise: bool) -> CompiledSegment {
    let key = segment.key.clone();
    let mut ctx = Ctx::new(ResourceKind::Segment, &key, specialise);
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
        check_rule_id(&mut ctx, &mut rule_ids, r, &rule.id);
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

pub(super) fn compile_clauses(ctx: &mut Ctx<'_>, rule_path: &str, clauses: &[Clause]) -> Clauses {
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

pub(super) fn compile_clause(ctx: &mut Ctx<'_>, path: &str, clause: &Clause) -> CompiledClause {
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
pub(super) fn specialised(
    specialise: bool,
    attribute: AttributeRef,
    matcher: Matcher,
) -> ClauseTest {
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

pub(super) fn first_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
