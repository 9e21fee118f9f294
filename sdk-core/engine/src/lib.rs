//! The Vexil evaluation engine: the flag model, its validation, compilation into an
//! immutable [`Ruleset`], and evaluation.
//!
//! Pure by design: no I/O, no async, no clocks, no globals. The server and every SDK run
//! exactly this code, so a flag evaluates the same everywhere. The model is specified in
//! `conformance/SCHEMA.md`.
//!
//! ```
//! use vexil_engine::{Context, Ruleset};
//!
//! let ruleset = Ruleset::from_json(r#"{"flags": [{
//!     "key": "new-checkout", "kind": "bool", "variations": [true, false], "on": true,
//!     "rules": [{"id": "staff", "serve": {"variation": 0}, "clauses": [
//!         {"attribute": "email", "op": "ends_with", "values": ["@example.com"]}]}],
//!     "fallthrough": {"variation": 1}}]}"#).unwrap();
//! assert!(ruleset.problems().is_empty());
//!
//! let mut alice = vexil_engine::SingleContext::new("user", "alice").unwrap();
//! alice.set("email", "alice@example.com".into());
//! assert!(ruleset.bool_variation("new-checkout", &Context::from(alice), false));
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod bucket;
mod compile;
mod context;
pub mod date;
mod eval;
mod index;
pub mod model;
mod murmur3;
mod result;
mod semver;
mod short_strings;

pub use bucket::bucket;
pub use compile::{
    CompiledFlag, CompiledSegment, LoadError, MAX_KEY_LEN, Patch, Problem, ResourceKind, Ruleset,
    validate, validate_json,
};
pub use context::{Context, ContextError, Redaction, SingleContext};
pub use model::{RulesetData, ValueKind};
pub use murmur3::murmur3_x86_32;
pub use result::{ErrorKind, Evaluation, EvaluationDetail, Reason, Served};
