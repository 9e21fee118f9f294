//! What an SDK key may see of an environment's ruleset: a server key every flag, a client or
//! mobile key only the flags marked `client_side` (to it, every other flag does not exist).
//! The evaluation paths of every protocol (gRPC `EvaluationService`, OFREP over HTTP)
//! evaluate through this view, so they cannot disagree on what a key sees.

use serde_json::Value;
use vexil_engine::{Context, ErrorKind, Evaluation, Reason, Ruleset, ValueKind};

use crate::storage::SdkKeyKind;

/// The context of a request, read once: valid, or the JSON the engine refused (each flag
/// then reports `INVALID_CONTEXT` after its own errors, as the engine orders them).
#[derive(Debug)]
pub enum RequestContext {
    Valid(Context),
    Invalid(Value),
}

impl RequestContext {
    pub fn from_json(json: Value) -> RequestContext {
        match Context::from_json(&json) {
            Ok(context) => RequestContext::Valid(context),
            Err(_) => RequestContext::Invalid(json),
        }
    }
}

/// One ruleset as one key may see it.
#[derive(Debug, Clone, Copy)]
pub struct KeyView<'r> {
    ruleset: &'r Ruleset,
    client_only: bool,
}

impl<'r> KeyView<'r> {
    pub fn new(ruleset: &'r Ruleset, key_kind: SdkKeyKind) -> KeyView<'r> {
        KeyView {
            ruleset,
            client_only: key_kind != SdkKeyKind::Server,
        }
    }

    pub fn ruleset(&self) -> &'r Ruleset {
        self.ruleset
    }

    /// Whether the key may see `flag_key` (a flag that does not exist is "visible" to a
    /// server key, which then gets `FLAG_NOT_FOUND` from the engine).
    pub fn visible(&self, flag_key: &str) -> bool {
        !self.client_only || self.ruleset.flag(flag_key).is_some_and(|f| f.client_side)
    }

    /// Every flag the key may see, in key order.
    pub fn visible_keys(&self) -> impl Iterator<Item = &'r str> + '_ {
        self.ruleset.flag_keys().filter(|key| self.visible(key))
    }

    /// The engine's evaluation of `flag_key`; `FLAG_NOT_FOUND` for a flag the key may not see.
    pub fn evaluate(
        &self,
        flag_key: &str,
        context: &RequestContext,
        kind: ValueKind,
    ) -> Evaluation<'r> {
        if !self.visible(flag_key) {
            return Evaluation {
                value: None,
                variation: None,
                reason: Reason::Error {
                    error_kind: ErrorKind::FlagNotFound,
                },
                in_experiment: false,
                experiment_key: None,
                flag_version: 0,
            };
        }
        match context {
            RequestContext::Valid(context) => self.ruleset.evaluate(flag_key, context, kind),
            RequestContext::Invalid(json) => self.ruleset.evaluate_json(flag_key, json, kind),
        }
    }
}
