//! Evaluation: the hot path. Nothing here parses model JSON or allocates for a flag whose
//! rules read strings, numbers or booleans.

use serde_json::Value;

use crate::bucket::bucket_after;
use crate::compile::{
    ClauseTest, Clauses, CompiledFlag, CompiledRollout, CompiledServe, FixedOutcome, FlagEntry,
    Matcher, Ruleset,
};
use crate::context::{AttributeRef, Context, SingleContext};
use crate::date;
use crate::model::{Operator, ValueKind};
use crate::murmur3::Murmur3;
use crate::result::{ErrorKind, Evaluation, Reason, Served};
use crate::semver::Version;
use crate::short_strings::short_eq;

/// Deepest chain of prerequisites or nested segments followed. Cycles are refused when the
/// ruleset is built; this bound only keeps a pathological chain from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// Evaluation cannot continue: the flag is malformed (only reachable through a chain deeper
/// than [`MAX_DEPTH`], since everything else is caught when the ruleset is built).
struct TooDeep;

/// A context's value for bucketing, as the bytes hashed after `{salt}:`: a string's own
/// bytes, or an integer's decimal digits written into `buf` (no allocation, no move).
#[inline]
fn bucket_bytes<'a>(value: &'a Value, buf: &'a mut [u8; 24]) -> Option<&'a [u8]> {
    match value {
        Value::String(s) => Some(s.as_bytes()),
        Value::Number(n) => {
            let integer = if let Some(i) = n.as_i64() {
                i
            } else {
                let f = n.as_f64()?;
                if f.fract() != 0.0 || f.abs() >= 9_007_199_254_740_992.0 {
                    return None;
                }
                f as i64
            };
            if integer.unsigned_abs() >= 1 << 53 {
                return None;
            }
            let mut pos = buf.len();
            let mut rest = integer.unsigned_abs();
            loop {
                pos -= 1;
                buf[pos] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            if integer < 0 {
                pos -= 1;
                buf[pos] = b'-';
            }
            Some(&buf[pos..])
        }
        _ => None,
    }
}

/// What evaluating a flag produces: the whole [`Evaluation`], or only the served value (what
/// the typed variations read). Evaluation is generic over it, so that a caller of the
/// latter never pays for the reason, the variation index or the version.
pub(crate) trait Outcome<'r> {
    fn served(
        flag: &'r CompiledFlag,
        variation: Option<usize>,
        reason: Reason<&'r str>,
        experiment_key: Option<&'r str>,
    ) -> Self;

    fn error(kind: ErrorKind, flag_version: u64) -> Self;
}

impl<'r> Outcome<'r> for Evaluation<'r> {
    #[inline(always)]
    fn served(
        flag: &'r CompiledFlag,
        variation: Option<usize>,
        reason: Reason<&'r str>,
        experiment_key: Option<&'r str>,
    ) -> Self {
        Evaluation {
            value: variation.and_then(|v| flag.model.variations.get(v)),
            variation,
            reason,
            in_experiment: experiment_key.is_some(),
            experiment_key,
            flag_version: flag.model.version,
        }
    }

    #[inline(always)]
    fn error(kind: ErrorKind, flag_version: u64) -> Self {
        Evaluation::error(kind, flag_version)
    }
}

/// The served value alone: [`Evaluation::value`].
pub(crate) struct ValueOnly<'r>(Option<&'r Value>);

impl<'r> Outcome<'r> for ValueOnly<'r> {
    #[inline(always)]
    fn served(
        flag: &'r CompiledFlag,
        variation: Option<usize>,
        _: Reason<&'r str>,
        _: Option<&'r str>,
    ) -> Self {
        ValueOnly(variation.and_then(|v| flag.model.variations.get(v)))
    }

    #[inline(always)]
    fn error(_: ErrorKind, _: u64) -> Self {
        ValueOnly(None)
    }
}

/// What [`Ruleset::serve_at`] needs of an evaluation: the served value and, for an ordinary
/// success, the served outcome's position among the flag's outcomes (0 for no variation,
/// `v + 1` for variation `v`; [`NOT_ORDINARY`] otherwise). Two words, returned in registers.
struct Lean<'r> {
    value: Option<&'r Value>,
    position: usize,
}

/// [`Lean::position`] of an error, or of a context in an experiment.
const NOT_ORDINARY: usize = usize::MAX;

impl<'r> Outcome<'r> for Lean<'r> {
    #[inline(always)]
    fn served(
        flag: &'r CompiledFlag,
        variation: Option<usize>,
        _: Reason<&'r str>,
        experiment_key: Option<&'r str>,
    ) -> Self {
        Lean {
            value: variation.and_then(|v| flag.model.variations.get(v)),
            position: match experiment_key {
                // A variation index is below `isize::MAX`: `v + 1` is never `NOT_ORDINARY`.
                None => variation.map_or(0, |v| v + 1),
                Some(_) => NOT_ORDINARY,
            },
        }
    }

    #[inline(always)]
    fn error(_: ErrorKind, _: u64) -> Self {
        Lean {
            value: None,
            position: NOT_ORDINARY,
        }
    }
}

impl Ruleset {
    /// Evaluates a flag for a context. `requested` is the type the caller wants (`Json`
    /// accepts any flag). Never fails: errors come back as an `ERROR` reason, and the caller
    /// uses its default wherever `value` is `None`.
    #[inline]
    pub fn evaluate<'r>(
        &'r self,
        flag_key: &str,
        context: &Context,
        requested: ValueKind,
    ) -> Evaluation<'r> {
        self.evaluate_as(flag_key, context, requested)
    }

    /// Evaluates the flag at `index` (see [`Ruleset::flag_index`]) exactly as
    /// [`Ruleset::evaluate`] evaluates it by key; an index out of range is `FLAG_NOT_FOUND`.
    #[inline]
    pub fn evaluate_at<'r>(
        &'r self,
        index: usize,
        context: &Context,
        requested: ValueKind,
    ) -> Evaluation<'r> {
        self.evaluate_at_as(index, context, requested)
    }

    /// The value [`Ruleset::evaluate`] would serve (its `value`), without building the rest
    /// of the result: `None` where the caller's default applies.
    #[inline]
    pub fn served_value<'r>(
        &'r self,
        flag_key: &str,
        context: &Context,
        requested: ValueKind,
    ) -> Option<&'r Value> {
        self.evaluate_as::<ValueOnly<'r>>(flag_key, context, requested)
            .0
    }

    /// The value [`Ruleset::evaluate_at`] would serve, without building the rest of the
    /// result.
    #[inline]
    pub fn served_value_at<'r>(
        &'r self,
        index: usize,
        context: &Context,
        requested: ValueKind,
    ) -> Option<&'r Value> {
        self.evaluate_at_as::<ValueOnly<'r>>(index, context, requested)
            .0
    }

    /// What a typed variation call needs of the flag at `index`: the value
    /// [`Ruleset::evaluate_at`] would serve and, when that evaluation is an ordinary success
    /// (no error, the context in no experiment), the number of the outcome served (see
    /// [`Ruleset::flag_outcomes`]), for a caller that counts evaluations per outcome. A
    /// caller that needs more in the other cases evaluates again with
    /// [`Ruleset::evaluate_at`], which gives the same result: evaluation depends on nothing
    /// but the ruleset and the context.
    #[inline]
    pub fn serve_at<'r>(
        &'r self,
        index: usize,
        context: &Context,
        requested: ValueKind,
    ) -> Served<'r> {
        let lean = self.evaluate_at_as::<Lean<'r>>(index, context, requested);
        // `NOT_ORDINARY` is never below a flag's outcome count (at most `u32::MAX`); an
        // ordinary success means the flag exists.
        let outcome = match self.flags.get(index) {
            Some(entry) if lean.position < entry.outcomes as usize => {
                Some(entry.first_outcome + lean.position as u32)
            }
            _ => None,
        };
        Served::new(lean.value, outcome)
    }

    /// Inlined so that the lookup and the context-independent outcomes stay in the caller;
    /// the context-dependent work is out of line.
    #[inline(always)]
    fn evaluate_as<'r, O: Outcome<'r>>(
        &'r self,
        flag_key: &str,
        context: &Context,
        requested: ValueKind,
    ) -> O {
        match self.preflight(flag_key, requested) {
            Ok(flag) => self.evaluate_valid(flag, context),
            Err(error) => error,
        }
    }

    #[inline(always)]
    fn evaluate_at_as<'r, O: Outcome<'r>>(
        &'r self,
        index: usize,
        context: &Context,
        requested: ValueKind,
    ) -> O {
        match self.preflight_at(index, requested) {
            Ok(flag) => self.evaluate_valid(flag, context),
            Err(error) => error,
        }
    }

    /// Evaluates a flag that exists and is well-formed, as the top of a chain.
    #[inline(always)]
    fn evaluate_valid<'r, O: Outcome<'r>>(
        &'r self,
        flag: &'r CompiledFlag,
        context: &Context,
    ) -> O {
        match flag.fixed {
            Some(fixed) => fixed_outcome(flag, fixed),
            None => self.evaluate_flag(flag, context, 0),
        }
    }

    /// The flag to evaluate, or the error result when it cannot be: not found, malformed,
    /// or of another type than requested.
    #[inline(always)]
    fn preflight<'r, O: Outcome<'r>>(
        &'r self,
        flag_key: &str,
        requested: ValueKind,
    ) -> Result<&'r CompiledFlag, O> {
        match self.flag_position(flag_key) {
            Some(index) => self.preflight_at(index, requested),
            None => Err(O::error(ErrorKind::FlagNotFound, 0)),
        }
    }

    #[inline(always)]
    fn preflight_at<'r, O: Outcome<'r>>(
        &'r self,
        index: usize,
        requested: ValueKind,
    ) -> Result<&'r CompiledFlag, O> {
        let Some(entry) = self.flags.get(index) else {
            return Err(O::error(ErrorKind::FlagNotFound, 0));
        };
        let Some(flag) = entry.compiled.as_deref() else {
            return Err(O::error(ErrorKind::MalformedFlag, 0));
        };
        if entry.malformed {
            return Err(O::error(ErrorKind::MalformedFlag, flag.model.version));
        }
        if requested != ValueKind::Json && requested != flag.model.kind {
            return Err(O::error(ErrorKind::WrongType, flag.model.version));
        }
        Ok(flag)
    }

    /// Evaluates a flag for a context given as JSON. An invalid context is reported as
    /// `ERROR`/`INVALID_CONTEXT`, after the flag's own errors (not found, malformed, wrong
    /// type).
    pub fn evaluate_json<'r>(
        &'r self,
        flag_key: &str,
        context: &Value,
        requested: ValueKind,
    ) -> Evaluation<'r> {
        match Context::from_json(context) {
            Ok(context) => self.evaluate(flag_key, &context, requested),
            Err(_) => match self.preflight::<Evaluation<'r>>(flag_key, requested) {
                Ok(flag) => Evaluation::error(ErrorKind::InvalidContext, flag.model.version),
                Err(error) => error,
            },
        }
    }

    /// A boolean flag's value, or `default` when it cannot be served.
    #[inline]
    pub fn bool_variation(&self, flag_key: &str, context: &Context, default: bool) -> bool {
        self.served_value(flag_key, context, ValueKind::Bool)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// A string flag's value, or `default`.
    pub fn string_variation<'r>(
        &'r self,
        flag_key: &str,
        context: &Context,
        default: &'r str,
    ) -> &'r str {
        self.served_value(flag_key, context, ValueKind::String)
            .and_then(Value::as_str)
            .unwrap_or(default)
    }

    /// A number flag's value, or `default`.
    pub fn number_variation(&self, flag_key: &str, context: &Context, default: f64) -> f64 {
        self.served_value(flag_key, context, ValueKind::Number)
            .and_then(Value::as_f64)
            .unwrap_or(default)
    }

    /// Every flag, evaluated for one context (as a `json` request, so no `WRONG_TYPE`).
    pub fn evaluate_all<'r>(&'r self, context: &Context) -> Vec<(&'r str, Evaluation<'r>)> {
        let mut out = Vec::with_capacity(self.flags.len());
        self.evaluate_all_into(context, &mut out);
        out
    }

    /// Like [`Ruleset::evaluate_all`], into a caller's buffer (cleared first): a caller
    /// evaluating many contexts reuses one allocation instead of a fresh one per context.
    pub fn evaluate_all_into<'r>(
        &'r self,
        context: &Context,
        out: &mut Vec<(&'r str, Evaluation<'r>)>,
    ) {
        out.clear();
        out.reserve(self.flags.len());
        out.extend(
            self.flags
                .iter()
                .map(|entry| (&*entry.key, self.evaluate_entry(entry, context))),
        );
    }

    #[inline]
    fn evaluate_entry<'r>(&'r self, entry: &'r FlagEntry, context: &Context) -> Evaluation<'r> {
        match entry.compiled.as_deref() {
            Some(flag) if !entry.malformed => self.evaluate_valid(flag, context),
            Some(flag) => Evaluation::error(ErrorKind::MalformedFlag, flag.model.version),
            None => Evaluation::error(ErrorKind::MalformedFlag, 0),
        }
    }

    /// Evaluates a well-formed flag. Returns an outcome rather than a `Result` so that it
    /// is built in place, not copied out of one: the only error it can report is a chain
    /// deeper than [`MAX_DEPTH`], as `ERROR`/`MALFORMED_FLAG` with this flag's version (a
    /// prerequisite's caller turns that back into [`TooDeep`], so the chain's top flag is the
    /// one reported, as before).
    #[inline(never)]
    fn evaluate_flag<'r, O: Outcome<'r>>(
        &'r self,
        flag: &'r CompiledFlag,
        context: &Context,
        depth: usize,
    ) -> O {
        match self.try_evaluate_flag(flag, context, depth) {
            Ok(outcome) => outcome,
            Err(TooDeep) => O::error(ErrorKind::MalformedFlag, flag.model.version),
        }
    }

    #[inline(always)]
    fn try_evaluate_flag<'r, O: Outcome<'r>>(
        &'r self,
        flag: &'r CompiledFlag,
        context: &Context,
        depth: usize,
    ) -> Result<O, TooDeep> {
        let model = &flag.model;
        if let Some(fixed) = flag.fixed {
            return Ok(fixed_outcome(flag, fixed));
        }
        if !model.on {
            return Ok(O::served(flag, model.off_variation, Reason::Off, None));
        }
        for prerequisite in &model.prerequisites {
            if !self.prerequisite_holds(
                &prerequisite.key,
                prerequisite.variation,
                context,
                depth,
            )? {
                return Ok(O::served(
                    flag,
                    model.off_variation,
                    Reason::PrerequisiteFailed {
                        prerequisite_key: &prerequisite.key,
                    },
                    None,
                ));
            }
        }
        for target in flag.targets.iter() {
            if let Some(single) = context.get_kind(&target.kind)
                && target.keys.contains(single.key())
            {
                return Ok(O::served(
                    flag,
                    Some(target.variation),
                    Reason::TargetMatch,
                    None,
                ));
            }
        }
        for (index, rule) in flag.rules.iter().enumerate() {
            if self.all_match(&rule.clauses, context, depth)? {
                let reason = Reason::RuleMatch {
                    rule_index: index,
                    rule_id: &*rule.id,
                };
                return Ok(self.serve(flag, &rule.serve, context, reason));
            }
        }
        Ok(self.serve(flag, &flag.fallthrough, context, Reason::Fallthrough))
    }

    fn prerequisite_holds(
        &self,
        key: &str,
        required: usize,
        context: &Context,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        if depth >= MAX_DEPTH {
            return Err(TooDeep);
        }
        let Some(index) = self.flag_position(key) else {
            return Ok(false);
        };
        let entry = &self.flags[index];
        let Some(flag) = entry.compiled.as_deref() else {
            return Ok(false);
        };
        if entry.malformed || !flag.model.on {
            return Ok(false);
        }
        let result: Evaluation<'_> = self.evaluate_flag(flag, context, depth + 1);
        // `evaluate_flag` reports nothing but a too-deep chain as an error.
        if result.is_error() {
            return Err(TooDeep);
        }
        Ok(!matches!(result.reason, Reason::PrerequisiteFailed { .. })
            && result.variation == Some(required))
    }

    #[inline(always)]
    fn serve<'r, O: Outcome<'r>>(
        &'r self,
        flag: &'r CompiledFlag,
        serve: &'r CompiledServe,
        context: &Context,
        reason: Reason<&'r str>,
    ) -> O {
        let (variation, experiment_key) = match serve {
            CompiledServe::Variation(v) => (*v, None),
            CompiledServe::Rollout(rollout) => {
                rollout_variation(&flag.salt_prefix, rollout, context)
            }
        };
        O::served(flag, Some(variation), reason, experiment_key)
    }

    /// Whether every clause of a rule matches. The specialised clause forms are evaluated
    /// here, inline; the others out of line. Inlined into the rule loop, which saves a
    /// call and its register saves per rule.
    #[inline(always)]
    fn all_match(&self, rule: &Clauses, context: &Context, depth: usize) -> Result<bool, TooDeep> {
        let shared = match &rule.kind {
            Some(kind) => match context.get_kind(kind) {
                Some(single) => Some(single),
                // Every clause reading the kind fails, the first of them before any
                // segment clause runs (see `Clauses::kind`).
                None => return Ok(false),
            },
            None => None,
        };
        for clause in rule.clauses.iter() {
            let matched = match &clause.test {
                ClauseTest::AttributeIn { name, values } => {
                    let single = match shared {
                        Some(single) => single,
                        None => match context.get_kind(&clause.kind) {
                            Some(single) => single,
                            None => return Ok(false),
                        },
                    };
                    match single.attribute_named(name) {
                        Some(Value::String(s)) => {
                            values.iter().any(|v| short_eq(v, s)) != clause.negate
                        }
                        // Absent or null: no match, negated or not.
                        None | Some(Value::Null) => false,
                        Some(other) => in_strings_other(values, other) != clause.negate,
                    }
                }
                ClauseTest::Segment(keys) => {
                    self.segment_clause_matches(keys, clause.negate, context, depth)?
                }
                ClauseTest::General { attribute, matcher } => {
                    let single = match shared {
                        Some(single) => Some(single),
                        None => context.get_kind(&clause.kind),
                    };
                    general_clause_matches(attribute, matcher, clause.negate, single)
                }
            };
            if !matched {
                return Ok(false);
            }
        }
        Ok(true)
    }

    #[inline(never)]
    fn segment_clause_matches(
        &self,
        keys: &[Box<str>],
        negate: bool,
        context: &Context,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        let mut any = false;
        for key in keys {
            if self.in_segment(key, context, depth + 1)? {
                any = true;
                break;
            }
        }
        Ok(any != negate)
    }

    fn in_segment(&self, key: &str, context: &Context, depth: usize) -> Result<bool, TooDeep> {
        if depth >= MAX_DEPTH {
            return Err(TooDeep);
        }
        let Some(segment) = self.segments.get(key).and_then(|e| e.compiled.as_deref()) else {
            return Ok(false);
        };
        let listed = |lists: &[crate::compile::CompiledKeyList]| {
            lists.iter().any(|list| {
                context
                    .get_kind(&list.kind)
                    .is_some_and(|single: &SingleContext| list.keys.contains(single.key()))
            })
        };
        if listed(&segment.included) {
            return Ok(true);
        }
        if listed(&segment.excluded) {
            return Ok(false);
        }
        for rule in segment.rules.iter() {
            if self.all_match(rule, context, depth)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A clause in its general form, for the context of its kind (`None`: the context has no
/// such kind).
fn general_clause_matches(
    attribute: &AttributeRef,
    matcher: &Matcher,
    negate: bool,
    single: Option<&SingleContext>,
) -> bool {
    let Some(value) = single.and_then(|single| attribute.resolve(single)) else {
        return false;
    };
    let matched = match value {
        Value::Array(items) => items.iter().any(|item| matches(matcher, item)),
        other => matches(matcher, other),
    };
    matched != negate
}

/// Whether a value that is neither a string nor null is `in` a list of strings: only an
/// array holding one of them is.
#[cold]
#[inline(never)]
fn in_strings_other(values: &[Box<str>], value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| {
            item.as_str()
                .is_some_and(|s| values.iter().any(|v| short_eq(v, s)))
        }),
        _ => false,
    }
}

/// The outcome of a flag that does not depend on the context.
#[inline(always)]
fn fixed_outcome<'r, O: Outcome<'r>>(flag: &'r CompiledFlag, fixed: FixedOutcome) -> O {
    let reason = if fixed.off {
        Reason::Off
    } else {
        Reason::Fallthrough
    };
    O::served(flag, fixed.variation, reason, None)
}

/// The variation a rollout serves, and the experiment the context is counted in, if any.
#[inline(never)]
fn rollout_variation<'r>(
    salt_prefix: &Murmur3,
    rollout: &'r CompiledRollout,
    context: &Context,
) -> (usize, Option<&'r str>) {
    let control = rollout.thresholds.first().map_or(0, |(v, _)| *v);
    let mut buf = [0u8; 24];
    let value = context
        .get_kind(&rollout.bucket_kind)
        .and_then(|single| rollout.bucket_attribute.resolve(single))
        .and_then(|value| bucket_bytes(value, &mut buf));
    let Some(value) = value else {
        // No bucket value: bucket 0, never in an experiment.
        return (pick(rollout, 0).unwrap_or(control), None);
    };
    if let Some(experiment) = &rollout.experiment {
        let layer_bucket = bucket_after(&experiment.layer_prefix, value);
        if layer_bucket < experiment.start || layer_bucket >= experiment.end {
            return (control, None);
        }
        let variation = pick(rollout, bucket_after(salt_prefix, value)).unwrap_or(control);
        return (variation, Some(&experiment.key));
    }
    (
        pick(rollout, bucket_after(salt_prefix, value)).unwrap_or(control),
        None,
    )
}

fn pick(rollout: &CompiledRollout, bucket: u32) -> Option<usize> {
    rollout
        .thresholds
        .iter()
        .find(|(_, running)| *running > bucket)
        .map(|(variation, _)| *variation)
}

/// Whether a value satisfies a clause's operator. The common, cheap operators are inlined
/// into the clause loop; the costly ones (regex, dates, versions) live out of line so that
/// their code and stack frame do not weigh on every clause.
fn matches(matcher: &Matcher, value: &Value) -> bool {
    match matcher {
        Matcher::In {
            strings,
            numbers,
            has_true,
            has_false,
        } => match value {
            Value::String(s) => strings.contains(s.as_str()),
            Value::Number(n) => n.as_f64().is_some_and(|a| numbers.contains(&a)),
            Value::Bool(true) => *has_true,
            Value::Bool(false) => *has_false,
            _ => false,
        },
        Matcher::StartsWith(values) => value
            .as_str()
            .is_some_and(|a| values.iter().any(|v| a.starts_with(&**v))),
        Matcher::EndsWith(values) => value
            .as_str()
            .is_some_and(|a| values.iter().any(|v| a.ends_with(&**v))),
        Matcher::Number(op, values) => value.as_f64().is_some_and(|a| {
            values.iter().any(|&v| match op {
                Operator::Lt => a < v,
                Operator::Lte => a <= v,
                Operator::Gt => a > v,
                _ => a >= v,
            })
        }),
        _ => matches_costly(matcher, value),
    }
}

#[inline(never)]
fn matches_costly(matcher: &Matcher, value: &Value) -> bool {
    match matcher {
        Matcher::Contains(values) => value
            .as_str()
            .is_some_and(|a| values.iter().any(|v| a.contains(&**v))),
        Matcher::Matches(regexes) => value
            .as_str()
            .is_some_and(|a| regexes.iter().any(|r| r.is_match(a))),
        Matcher::Date { after, millis } => date::to_epoch_millis(value)
            .is_some_and(|a| millis.iter().any(|&v| if *after { a > v } else { a < v })),
        Matcher::Semver(op, versions) => {
            let Some(a) = value.as_str().and_then(Version::parse) else {
                return false;
            };
            versions.iter().any(|v| {
                let order = a.precedence(&v.borrow());
                match op {
                    Operator::SemverEq => order.is_eq(),
                    Operator::SemverLt => order.is_lt(),
                    _ => order.is_gt(),
                }
            })
        }
        // Handled by `matches`.
        Matcher::In { .. }
        | Matcher::StartsWith(_)
        | Matcher::EndsWith(_)
        | Matcher::Number(..) => false,
    }
}

#[cfg(test)]
mod tests {
    //! The specialised clause forms and the value-only evaluation against the general
    //! forms and the full result: same outcome on every conformance vector and on
    //! generated rules aimed at the specialised shapes.

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::compile::ClauseTest;

    /// Every outcome of every flag of `ruleset` for `context`, through each entry point.
    fn outcomes<'r>(
        ruleset: &'r Ruleset,
        context: &Context,
    ) -> Vec<(String, ValueKind, Evaluation<'r>)> {
        let mut out = Vec::new();
        for key in ruleset.flag_keys().chain(["missing"]) {
            for kind in ValueKind::ALL {
                let full = ruleset.evaluate(key, context, kind);
                assert_eq!(
                    ruleset.served_value(key, context, kind),
                    full.value,
                    "{key}"
                );
                if let Some(index) = ruleset.flag_index(key) {
                    assert_eq!(ruleset.evaluate_at(index, context, kind), full, "{key}");
                    assert_eq!(
                        ruleset.served_value_at(index, context, kind),
                        full.value,
                        "{key}"
                    );
                }
                out.push((key.to_owned(), kind, full));
            }
        }
        out
    }

    /// Builds `rules` both ways and checks that every flag evaluates the same for every
    /// context. Returns how many clauses took the specialised `in` form.
    fn check_same(rules: &Value, contexts: &[Value]) -> usize {
        let special = Ruleset::from_value(rules).unwrap();
        let general = Ruleset::from_value_general(rules).unwrap();
        assert_eq!(special.problems(), general.problems());
        for context in contexts {
            let Ok(context) = Context::from_json(context) else {
                continue;
            };
            let a = outcomes(&special, &context);
            let b = outcomes(&general, &context);
            assert_eq!(a, b, "context {context:?}");
        }
        special_count(&special)
    }

    fn special_count(ruleset: &Ruleset) -> usize {
        let flag_clauses = ruleset
            .flags
            .iter()
            .filter_map(|e| e.compiled.as_deref())
            .flat_map(|f| f.rules.iter().flat_map(|r| r.clauses.clauses.iter()));
        let segment_clauses = ruleset
            .segments
            .values()
            .filter_map(|e| e.compiled.as_deref())
            .flat_map(|s| s.rules.iter().flat_map(|r| r.clauses.iter()));
        flag_clauses
            .chain(segment_clauses)
            .filter(|c| matches!(c.test, ClauseTest::AttributeIn { .. }))
            .count()
    }

    #[test]
    fn specialised_forms_agree_on_every_vector() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conformance/vectors");
        let mut special = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let rules = json!({
                "flags": file.get("flags").cloned().unwrap_or(json!([])),
                "segments": file.get("segments").cloned().unwrap_or(json!([])),
            });
            let contexts: Vec<Value> = file["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|case| case["context"].clone())
                .collect();
            special += check_same(&rules, &contexts);
        }
        // The vectors do exercise the specialised form.
        assert!(special >= 5, "{special} specialised clauses");
    }

    #[test]
    fn specialised_in_covers_its_edge_cases() {
        let rule =
            |clauses: Value| json!({"id": "r", "serve": {"variation": 0}, "clauses": clauses});
        let flag = |key: &str, rules: Vec<Value>| {
            json!({"key": key, "kind": "bool", "variations": [true, false], "on": true,
                "rules": rules, "fallthrough": {"variation": 1}})
        };
        let flags = vec![
            flag(
                "plain",
                vec![rule(json!([
                {"attribute": "plan", "op": "in", "values": ["pro", "team"]}]))],
            ),
            flag(
                "negated",
                vec![rule(json!([
                {"attribute": "plan", "op": "in", "values": ["pro"], "negate": true}]))],
            ),
            flag(
                "long-values",
                vec![rule(json!([
                {"attribute": "name", "op": "in", "values": ["a-name-longer-than-8", "abcdefgh", "abcdefghi"]}]))],
            ),
            flag(
                "org-kind",
                vec![rule(json!([
                {"context_kind": "org", "attribute": "plan", "op": "in", "values": ["pro"]},
                {"context_kind": "org", "attribute": "tier", "op": "in", "values": ["1"]}]))],
            ),
            flag(
                "mixed-kinds",
                vec![rule(json!([
                {"attribute": "plan", "op": "in", "values": ["pro"]},
                {"context_kind": "org", "attribute": "plan", "op": "in", "values": ["pro"]}]))],
            ),
            flag(
                "with-segment",
                vec![rule(json!([
                {"op": "segment_match", "values": ["seg"]},
                {"attribute": "plan", "op": "in", "values": ["pro"], "negate": true}]))],
            ),
            flag(
                "segment-only",
                vec![rule(json!([
                {"op": "segment_match", "values": ["seg"], "negate": true}]))],
            ),
            flag("no-clauses", vec![rule(json!([]))]),
            flag(
                "with-general",
                vec![rule(json!([
                {"attribute": "plan", "op": "in", "values": ["pro", 1, true]},
                {"attribute": "key", "op": "in", "values": ["u1"]},
                {"attribute": "/nested/plan", "op": "in", "values": ["pro"]},
                {"attribute": "name", "op": "starts_with", "values": ["a"]}]))],
            ),
            flag(
                "second-rule",
                vec![
                    rule(json!([{"attribute": "plan", "op": "in", "values": ["free"]}])),
                    rule(
                        json!([{"context_kind": "org", "attribute": "plan", "op": "in", "values": ["pro"]}]),
                    ),
                ],
            ),
        ];
        let segments = vec![json!({"key": "seg", "rules": [{"id": "s", "clauses": [
            {"attribute": "tier", "op": "in", "values": ["1", "2"]},
            {"context_kind": "org", "attribute": "plan", "op": "in", "values": ["pro"]}]}]})];
        let values = [
            json!("pro"),
            json!("team"),
            json!("free"),
            json!("pr"),
            json!("prox"),
            json!(""),
            json!(null),
            json!(1),
            json!(true),
            json!(["free", "pro"]),
            json!(["free"]),
            json!([]),
            json!([null, 1, "pro"]),
            json!({"plan": "pro"}),
            json!("a-name-longer-than-8"),
            json!("a-name-longer-than-9"),
            json!("abcdefgh"),
            json!("abcdefgi"),
            json!("abcdefghi"),
            json!("1"),
        ];
        let mut contexts = Vec::new();
        for value in &values {
            let attributes = json!({"plan": value, "name": value, "tier": value,
                "nested": {"plan": value}});
            contexts.push(json!({"key": "u1", "attributes": attributes}));
            contexts.push(json!({"kind": "org", "key": "o1", "attributes": attributes}));
            contexts.push(json!({"kind": "multi", "contexts": [
                {"kind": "user", "key": "u2", "attributes": {"plan": value}},
                {"kind": "org", "key": "o2", "attributes": attributes}]}));
        }
        contexts.push(json!({"key": "u3"}));
        let special = check_same(&json!({"flags": flags, "segments": segments}), &contexts);
        // Every `in` over strings of a named attribute above; none of `with-general`.
        assert_eq!(special, 12);
    }

    fn attribute_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..4).prop_map(|n| json!(n)),
            "[ab]{0,3}".prop_map(Value::String),
            "[ab]{7,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                inner.prop_map(|v| json!({ "x": v })),
            ]
        })
    }

    fn clause() -> impl Strategy<Value = Value> {
        let value = prop_oneof![
            8 => "[ab]{0,3}".prop_map(Value::String),
            2 => "[ab]{7,10}".prop_map(Value::String),
            1 => (0i64..4).prop_map(|n| json!(n)),
            1 => any::<bool>().prop_map(Value::Bool),
        ];
        (
            prop::sample::select(&["in", "in", "in", "starts_with", "segment_match"][..]),
            prop::sample::select(&["a", "b", "key", "/a", "/c/x"][..]),
            prop::collection::vec(value, 1..4),
            any::<bool>(),
            prop::sample::select(&["user", "user", "org"][..]),
        )
            .prop_map(|(op, attribute, values, negate, kind)| {
                let values = if op == "segment_match" {
                    json!(["s"])
                } else {
                    Value::Array(values)
                };
                json!({"op": op, "attribute": attribute, "values": values,
                    "negate": negate, "context_kind": kind})
            })
    }

    fn single(kind: &'static str) -> impl Strategy<Value = Value> {
        (
            prop::option::of(attribute_value()),
            prop::option::of(attribute_value()),
            prop::option::of(attribute_value()),
        )
            .prop_map(move |(a, b, c)| {
                let mut attributes = serde_json::Map::new();
                for (name, value) in [("a", a), ("b", b), ("c", c)] {
                    if let Some(value) = value {
                        attributes.insert(name.into(), value);
                    }
                }
                json!({"kind": kind, "key": "k", "attributes": attributes})
            })
    }

    fn context() -> impl Strategy<Value = Value> {
        prop_oneof![
            single("user"),
            single("org"),
            (single("user"), single("org"))
                .prop_map(|(u, o)| json!({"kind": "multi", "contexts": [u, o]})),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn specialised_forms_agree_on_generated_rules(
            rules in prop::collection::vec(prop::collection::vec(clause(), 0..4), 1..3),
            segment in prop::collection::vec(clause(), 0..3),
            contexts in prop::collection::vec(context(), 1..4),
        ) {
            let rules: Vec<Value> = rules
                .into_iter()
                .enumerate()
                .map(|(i, clauses)| json!({"id": format!("r{i}"), "clauses": clauses, "serve": {"variation": 0}}))
                .collect();
            // A segment that refers to itself makes the flag malformed; keep its own
            // clauses free of segment references.
            let segment: Vec<Value> = segment
                .into_iter()
                .filter(|c| c["op"] != "segment_match")
                .collect();
            let ruleset = json!({
                "flags": [{"key": "f", "kind": "bool", "variations": [true, false], "on": true,
                    "rules": rules, "fallthrough": {"variation": 1}}],
                "segments": [{"key": "s", "rules": [{"id": "s", "clauses": segment}]}],
            });
            check_same(&ruleset, &contexts);
        }
    }
}
