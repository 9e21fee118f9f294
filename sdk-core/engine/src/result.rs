//! What an evaluation returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an evaluation returned the caller's default instead of a variation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    FlagNotFound,
    WrongType,
    MalformedFlag,
    InvalidContext,
    /// Reported by SDKs before their first data arrives; the engine never returns it.
    ClientNotReady,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorKind::WrongType => "WRONG_TYPE",
            ErrorKind::MalformedFlag => "MALFORMED_FLAG",
            ErrorKind::InvalidContext => "INVALID_CONTEXT",
            ErrorKind::ClientNotReady => "CLIENT_NOT_READY",
        }
    }
}

/// Why a value was served. Generic over the string type so that the engine can lend
/// `&str`s out of its ruleset (no allocation) while SDKs keep an owned copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason<S = String> {
    Off,
    TargetMatch,
    RuleMatch { rule_index: usize, rule_id: S },
    Fallthrough,
    PrerequisiteFailed { prerequisite_key: S },
    Error { error_kind: ErrorKind },
}

impl<S: AsRef<str>> Reason<S> {
    /// The same reason with each of its strings mapped by `f`.
    pub fn map_text<'a, T>(&'a self, f: impl Fn(&'a S) -> T) -> Reason<T> {
        match self {
            Reason::Off => Reason::Off,
            Reason::TargetMatch => Reason::TargetMatch,
            Reason::RuleMatch {
                rule_index,
                rule_id,
            } => Reason::RuleMatch {
                rule_index: *rule_index,
                rule_id: f(rule_id),
            },
            Reason::Fallthrough => Reason::Fallthrough,
            Reason::PrerequisiteFailed { prerequisite_key } => Reason::PrerequisiteFailed {
                prerequisite_key: f(prerequisite_key),
            },
            Reason::Error { error_kind } => Reason::Error {
                error_kind: *error_kind,
            },
        }
    }

    pub fn to_owned_reason(&self) -> Reason<String> {
        self.map_text(|s| s.as_ref().to_owned())
    }

    /// The same reason borrowing its strings.
    pub fn as_str_reason(&self) -> Reason<&str> {
        self.map_text(|s| s.as_ref())
    }

    /// The reason's kind, but for an error the error's kind (`FLAG_NOT_FOUND`, …): the one
    /// word that says why a value was served.
    pub fn kind_or_error(&self) -> &'static str {
        match self {
            Reason::Error { error_kind } => error_kind.as_str(),
            other => other.kind_str(),
        }
    }

    /// The index and id of the rule matched, for `RULE_MATCH`.
    pub fn rule(&self) -> Option<(usize, &S)> {
        match self {
            Reason::RuleMatch {
                rule_index,
                rule_id,
            } => Some((*rule_index, rule_id)),
            _ => None,
        }
    }

    /// The prerequisite that failed, for `PREREQUISITE_FAILED`.
    pub fn prerequisite_key(&self) -> Option<&S> {
        match self {
            Reason::PrerequisiteFailed { prerequisite_key } => Some(prerequisite_key),
            _ => None,
        }
    }

    /// The reason's kind as written on the wire: `RULE_MATCH`, `ERROR`, …
    pub fn kind_str(&self) -> &'static str {
        match self {
            Reason::Off => "OFF",
            Reason::TargetMatch => "TARGET_MATCH",
            Reason::RuleMatch { .. } => "RULE_MATCH",
            Reason::Fallthrough => "FALLTHROUGH",
            Reason::PrerequisiteFailed { .. } => "PREREQUISITE_FAILED",
            Reason::Error { .. } => "ERROR",
        }
    }

    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Reason::Error { error_kind } => Some(*error_kind),
            _ => None,
        }
    }
}

/// The result of evaluating one flag, borrowing from the ruleset.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'r> {
    /// The served variation's value; `None` means the caller's default.
    pub value: Option<&'r Value>,
    /// The served variation's index; `None` when the default is returned.
    pub variation: Option<usize>,
    pub reason: Reason<&'r str>,
    pub in_experiment: bool,
    /// The experiment the context was counted in, if any.
    pub experiment_key: Option<&'r str>,
    /// The flag's version; 0 when the flag does not exist.
    pub flag_version: u64,
}

impl<'r> Evaluation<'r> {
    pub(crate) fn error(kind: ErrorKind, flag_version: u64) -> Evaluation<'r> {
        Evaluation {
            value: None,
            variation: None,
            reason: Reason::Error { error_kind: kind },
            in_experiment: false,
            experiment_key: None,
            flag_version,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self.reason, Reason::Error { .. })
    }

    /// An owned copy, with the default filled in where no variation was served.
    pub fn to_detail(&self, default: &Value) -> EvaluationDetail {
        EvaluationDetail {
            value: self.value.unwrap_or(default).clone(),
            variation: self.variation,
            reason: self.reason.to_owned_reason(),
            in_experiment: self.in_experiment,
            experiment_key: self.experiment_key.map(str::to_owned),
            flag_version: self.flag_version,
        }
    }
}

/// A typed variation call's share of an evaluation (see [`crate::Ruleset::serve_at`]): the
/// served value, and which of the flag's outcomes was served when the evaluation was an
/// ordinary success. Two words, so that it comes back in registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served<'r> {
    /// The served variation's value; `None` means the caller's default.
    pub value: Option<&'r Value>,
    /// The outcome served by an ordinary success (see [`crate::Ruleset::flag_outcomes`]);
    /// `u32::MAX` (never an outcome's number) for an error, or a context in an experiment.
    outcome: u32,
}

impl<'r> Served<'r> {
    /// `outcome` is below `u32::MAX`: outcome numbers are (see `number_outcomes`).
    #[inline(always)]
    pub(crate) fn new(value: Option<&'r Value>, outcome: Option<u32>) -> Served<'r> {
        Served {
            value,
            outcome: outcome.unwrap_or(u32::MAX),
        }
    }

    /// The number of the outcome served, in the ruleset's numbering
    /// ([`crate::Ruleset::flag_outcomes`]), when the evaluation was an ordinary success;
    /// `None` for an error, or a context in an experiment.
    #[inline]
    pub fn ordinary_outcome(&self) -> Option<usize> {
        (self.outcome != u32::MAX).then_some(self.outcome as usize)
    }
}

/// An owned evaluation result, in the JSON shape of `conformance/SCHEMA.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationDetail {
    pub value: Value,
    pub variation: Option<usize>,
    pub reason: Reason<String>,
    pub in_experiment: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_key: Option<String>,
    #[serde(default)]
    pub flag_version: u64,
}
