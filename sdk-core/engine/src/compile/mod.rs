//! Compiling the model into a [`Ruleset`], and validating it on the way.
//!
//! Compilation is lenient: a flag or segment with a problem is kept, marked malformed (it
//! evaluates to `ERROR`/`MALFORMED_FLAG`), and every problem is recorded. Strict callers (the
//! server refusing a write, `vexil validate`) look at [`Ruleset::problems`].

use std::fmt;

mod builder;
mod flag;
mod forms;
mod references;
mod ruleset;

pub(crate) use forms::*;
pub use forms::{CompiledFlag, CompiledSegment, Patch, Ruleset};
pub use ruleset::{validate, validate_json};

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

pub(crate) fn problem(
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
