//! Evaluation: the hot path. Nothing here parses model JSON or allocates for a flag whose
//! rules read strings, numbers or booleans.

use serde_json::Value;

use crate::compile::{
    CompiledClause, CompiledFlag, CompiledRollout, CompiledServe, FixedOutcome, FlagEntry, Matcher,
    Ruleset,
};
use crate::context::{Context, SingleContext};
use crate::date;
use crate::model::{Operator, TOTAL_WEIGHT, ValueKind};
use crate::murmur3::Murmur3;
use crate::result::{ErrorKind, Evaluation, Reason};
use crate::semver::Version;

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

/// The `murmur3_v1` bucket of `{salt}:{value}`, in [0, 100000).
pub fn bucket(salt: &str, value: &[u8]) -> u32 {
    bucket_after(&bucket_prefix(salt), value)
}

/// The hash state after `{salt}:`, computed once per rollout when the ruleset is built.
pub(crate) fn bucket_prefix(salt: &str) -> Murmur3 {
    let mut state = Murmur3::new(0);
    state.update(salt.as_bytes());
    state.update(b":");
    state
}

/// The bucket of `{salt}:{value}`, from the state after `{salt}:`.
#[inline]
fn bucket_after(prefix: &Murmur3, value: &[u8]) -> u32 {
    let mut state = *prefix;
    state.update(value);
    ((u64::from(state.finish()) * u64::from(TOTAL_WEIGHT)) >> 32) as u32
}

impl Ruleset {
    /// Evaluates a flag for a context. `requested` is the type the caller wants (`Json`
    /// accepts any flag). Never fails: errors come back as an `ERROR` reason, and the caller
    /// uses its default wherever `value` is `None`.
    ///
    /// Inlined so that a caller reading one field (the typed variations read only `value`)
    /// lets the compiler drop the rest; the context-dependent work stays out of line.
    #[inline]
    pub fn evaluate<'r>(
        &'r self,
        flag_key: &str,
        context: &Context,
        requested: ValueKind,
    ) -> Evaluation<'r> {
        match self.preflight(flag_key, requested) {
            Ok(flag) => self.evaluate_valid(flag, context),
            Err(error) => error,
        }
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
        match self.preflight_at(index, requested) {
            Ok(flag) => self.evaluate_valid(flag, context),
            Err(error) => error,
        }
    }

    /// Evaluates a flag that exists and is well-formed, as the top of a chain.
    #[inline]
    fn evaluate_valid<'r>(&'r self, flag: &'r CompiledFlag, context: &Context) -> Evaluation<'r> {
        match flag.fixed {
            Some(fixed) => fixed_evaluation(flag, fixed),
            None => self.evaluate_flag(flag, context, 0),
        }
    }

    /// The flag to evaluate, or the error result when it cannot be: not found, malformed,
    /// or of another type than requested.
    #[inline]
    fn preflight<'r>(
        &'r self,
        flag_key: &str,
        requested: ValueKind,
    ) -> Result<&'r CompiledFlag, Evaluation<'r>> {
        match self.flag_position(flag_key) {
            Some(index) => self.preflight_at(index, requested),
            None => Err(Evaluation::error(ErrorKind::FlagNotFound, 0)),
        }
    }

    #[inline]
    fn preflight_at<'r>(
        &'r self,
        index: usize,
        requested: ValueKind,
    ) -> Result<&'r CompiledFlag, Evaluation<'r>> {
        let Some(entry) = self.flags.get(index) else {
            return Err(Evaluation::error(ErrorKind::FlagNotFound, 0));
        };
        let Some(flag) = entry.compiled.as_deref() else {
            return Err(Evaluation::error(ErrorKind::MalformedFlag, 0));
        };
        if entry.malformed {
            return Err(Evaluation::error(
                ErrorKind::MalformedFlag,
                flag.model.version,
            ));
        }
        if requested != ValueKind::Json && requested != flag.model.kind {
            return Err(Evaluation::error(ErrorKind::WrongType, flag.model.version));
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
            Err(_) => match self.preflight(flag_key, requested) {
                Ok(flag) => Evaluation::error(ErrorKind::InvalidContext, flag.model.version),
                Err(error) => error,
            },
        }
    }

    /// A boolean flag's value, or `default` when it cannot be served.
    #[inline]
    pub fn bool_variation(&self, flag_key: &str, context: &Context, default: bool) -> bool {
        self.evaluate(flag_key, context, ValueKind::Bool)
            .value
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
        self.evaluate(flag_key, context, ValueKind::String)
            .value
            .and_then(Value::as_str)
            .unwrap_or(default)
    }

    /// A number flag's value, or `default`.
    pub fn number_variation(&self, flag_key: &str, context: &Context, default: f64) -> f64 {
        self.evaluate(flag_key, context, ValueKind::Number)
            .value
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

    /// Evaluates a well-formed flag. Returns an evaluation rather than a `Result` so that it
    /// is built in place, not copied out of one: the only error it can report is a chain
    /// deeper than [`MAX_DEPTH`], as `ERROR`/`MALFORMED_FLAG` with this flag's version (a
    /// prerequisite's caller turns that back into [`TooDeep`], so the chain's top flag is the
    /// one reported, as before).
    #[inline(never)]
    fn evaluate_flag<'r>(
        &'r self,
        flag: &'r CompiledFlag,
        context: &Context,
        depth: usize,
    ) -> Evaluation<'r> {
        match self.try_evaluate_flag(flag, context, depth) {
            Ok(evaluation) => evaluation,
            Err(TooDeep) => Evaluation::error(ErrorKind::MalformedFlag, flag.model.version),
        }
    }

    #[inline(always)]
    fn try_evaluate_flag<'r>(
        &'r self,
        flag: &'r CompiledFlag,
        context: &Context,
        depth: usize,
    ) -> Result<Evaluation<'r>, TooDeep> {
        let model = &flag.model;
        if let Some(fixed) = flag.fixed {
            return Ok(fixed_evaluation(flag, fixed));
        }
        let served = |variation: Option<usize>, reason: Reason<&'r str>| Evaluation {
            value: variation.and_then(|v| model.variations.get(v)),
            variation,
            reason,
            in_experiment: false,
            experiment_key: None,
            flag_version: model.version,
        };
        if !model.on {
            return Ok(served(model.off_variation, Reason::Off));
        }
        for prerequisite in &model.prerequisites {
            if !self.prerequisite_holds(
                &prerequisite.key,
                prerequisite.variation,
                context,
                depth,
            )? {
                return Ok(served(
                    model.off_variation,
                    Reason::PrerequisiteFailed {
                        prerequisite_key: &prerequisite.key,
                    },
                ));
            }
        }
        for target in flag.targets.iter() {
            if let Some(single) = context.get_kind(&target.kind)
                && target.keys.contains(single.key())
            {
                return Ok(served(Some(target.variation), Reason::TargetMatch));
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
        let result = self.evaluate_flag(flag, context, depth + 1);
        // `evaluate_flag` reports nothing but a too-deep chain as an error.
        if result.is_error() {
            return Err(TooDeep);
        }
        Ok(!matches!(result.reason, Reason::PrerequisiteFailed { .. })
            && result.variation == Some(required))
    }

    #[inline(always)]
    fn serve<'r>(
        &'r self,
        flag: &'r CompiledFlag,
        serve: &'r CompiledServe,
        context: &Context,
        reason: Reason<&'r str>,
    ) -> Evaluation<'r> {
        let (variation, experiment_key) = match serve {
            CompiledServe::Variation(v) => (*v, None),
            CompiledServe::Rollout(rollout) => {
                rollout_variation(&flag.salt_prefix, rollout, context)
            }
        };
        Evaluation {
            value: flag.model.variations.get(variation),
            variation: Some(variation),
            reason,
            in_experiment: experiment_key.is_some(),
            experiment_key,
            flag_version: flag.model.version,
        }
    }

    #[inline]
    fn all_match(
        &self,
        clauses: &[CompiledClause],
        context: &Context,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        for clause in clauses {
            if !self.clause_matches(clause, context, depth)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn clause_matches(
        &self,
        clause: &CompiledClause,
        context: &Context,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        if let Matcher::Segment(keys) = &clause.matcher {
            return self.segment_clause_matches(keys, clause.negate, context, depth);
        }
        let Some(single) = context.get_kind(&clause.kind) else {
            return Ok(false);
        };
        let Some(value) = clause.attribute.as_ref().and_then(|a| a.resolve(single)) else {
            return Ok(false);
        };
        let matched = match value {
            Value::Array(items) => items.iter().any(|item| matches(&clause.matcher, item)),
            other => matches(&clause.matcher, other),
        };
        Ok(matched != clause.negate)
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

/// The result of a flag whose outcome does not depend on the context.
#[inline]
fn fixed_evaluation(flag: &CompiledFlag, fixed: FixedOutcome) -> Evaluation<'_> {
    Evaluation {
        value: fixed.variation.and_then(|v| flag.model.variations.get(v)),
        variation: fixed.variation,
        reason: if fixed.off {
            Reason::Off
        } else {
            Reason::Fallthrough
        },
        in_experiment: false,
        experiment_key: None,
        flag_version: flag.model.version,
    }
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
        // Handled by `matches`, or (segments) before the value is looked up.
        Matcher::In { .. }
        | Matcher::StartsWith(_)
        | Matcher::EndsWith(_)
        | Matcher::Number(..)
        | Matcher::Segment(_) => false,
    }
}
