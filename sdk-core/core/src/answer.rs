//! What a client answers: the detail of a variation, its status, and a change of data, each
//! with one canonical JSON form that bindings hand on as it is (the C ABI) or map field by
//! field onto their language's types.

use serde::Serialize;

use crate::data::Source;
use crate::events::EventStats;
use crate::{ErrorKind, Reason};

/// The result of a variation call with everything known about it.
///
/// Its JSON form (`serde_json::to_value`) is the canonical one of every binding:
/// `{"value": …, "variation": 0 | null, "reason": {"kind": "RULE_MATCH", "rule_index": 0,
/// "rule_id": "…"}, "in_experiment": false, "experiment_key": null, "flag_version": 3,
/// "source": "NETWORK", "version": 12}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail<T> {
    pub value: T,
    /// The variation served; `None` when the default was returned.
    pub variation: Option<usize>,
    pub reason: Reason<String>,
    pub in_experiment: bool,
    pub experiment_key: Option<String>,
    /// The flag's version (0 when unknown).
    pub flag_version: i64,
    /// Where the data came from.
    pub source: Source,
    /// The environment version of the data (0 when none).
    pub version: i64,
}

impl<T> Detail<T> {
    /// The same detail with another value (for instance the value converted to a type).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Detail<U> {
        Detail {
            value: f(self.value),
            variation: self.variation,
            reason: self.reason,
            in_experiment: self.in_experiment,
            experiment_key: self.experiment_key,
            flag_version: self.flag_version,
            source: self.source,
            version: self.version,
        }
    }

    /// The answer of a binding that could not evaluate at all: `default`, with the error
    /// kind the table below gives for `why`, from no data.
    pub fn unevaluated(default: T, why: Unevaluated) -> Detail<T> {
        Detail {
            value: default,
            variation: None,
            reason: Reason::Error {
                error_kind: why.error_kind(),
            },
            in_experiment: false,
            experiment_key: None,
            flag_version: 0,
            source: Source::Defaults,
            version: 0,
        }
    }

    /// The canonical JSON text.
    pub fn to_json_string(&self) -> String
    where
        T: Serialize,
    {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The kind of the error reason, if the default was returned because of an error.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.reason.error_kind()
    }
}

/// Why a binding could not reach the evaluation at all. Evaluation never fails, so each case
/// is answered like an evaluation error, with the caller's default and the error kind of
/// [`Unevaluated::error_kind`]: the one table every binding follows, so that none invents a
/// reason of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unevaluated {
    /// The client was closed and released (a NULL or freed handle): `CLIENT_NOT_READY`.
    ClientReleased,
    /// The context is missing or was released: `INVALID_CONTEXT`.
    ContextMissing,
    /// The flag key is not text (not UTF-8), so it names no flag: `FLAG_NOT_FOUND`.
    FlagKeyNotText,
    /// The default is not a value of any type (not JSON): `WRONG_TYPE`.
    DefaultNotJson,
}

impl Unevaluated {
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Unevaluated::ClientReleased => ErrorKind::ClientNotReady,
            Unevaluated::ContextMissing => ErrorKind::InvalidContext,
            Unevaluated::FlagKeyNotText => ErrorKind::FlagNotFound,
            Unevaluated::DefaultNotJson => ErrorKind::WrongType,
        }
    }
}

/// A change of flag data seen by a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlagChange {
    /// Flags whose definition or value may have changed, in key order.
    pub flag_keys: Vec<String>,
    /// The environment version after the change.
    pub version: i64,
}

/// Identifies a listener for [`Client::remove_listener`](crate::Client::remove_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u64);

impl ListenerId {
    /// A number for bindings that hand listener ids out as integers (never 0; unique per
    /// client).
    pub fn number(self) -> u64 {
        self.0
    }

    /// The id a binding handed out as [`ListenerId::number`].
    pub fn from_number(number: u64) -> ListenerId {
        ListenerId(number)
    }
}

/// How a client evaluates, decided by its SDK key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Server keys: the ruleset is synced and evaluated in process.
    Local,
    /// Client and mobile keys: values are evaluated by the server for the identified context.
    Remote,
}

impl Mode {
    /// `LOCAL` or `REMOTE`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Local => "LOCAL",
            Mode::Remote => "REMOTE",
        }
    }
}

/// Where a client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the first data from the server (cached or bootstrap data, if any, is
    /// served meanwhile).
    Initializing,
    /// Connected, with current data.
    Ready,
    /// The connection is lost or the data is older than the maximum age: the last good
    /// data is served. Reconnection goes on in the background.
    Stale { reason: String },
    /// Offline mode: no network; cache, bootstrap or defaults.
    Offline,
    /// The server refused the SDK key: no retry.
    Failed { reason: String },
    /// [`Client::close`](crate::Client::close) was called.
    Closed,
}

impl Status {
    /// `INITIALIZING`, `READY`, `STALE`, `OFFLINE`, `FAILED` or `CLOSED`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Initializing => "INITIALIZING",
            Status::Ready => "READY",
            Status::Stale { .. } => "STALE",
            Status::Offline => "OFFLINE",
            Status::Failed { .. } => "FAILED",
            Status::Closed => "CLOSED",
        }
    }

    /// Why the client is `STALE` or `FAILED`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Stale { reason } | Status::Failed { reason } => Some(reason),
            _ => None,
        }
    }
}

impl Serialize for Status {
    /// The status's name.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Everything about where a client stands, read at once (see
/// [`Client::state`](crate::Client::state)). JSON: `{"status": "STALE", "reason": "…",
/// "mode": "LOCAL", "source": "STALE", "version": 12, "events": {"dropped": 0, "sent": 5,
/// "failed_batches": 0, "queued": 1}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientState {
    pub status: Status,
    /// Why the client is `STALE` or `FAILED`.
    pub reason: Option<String>,
    pub mode: Mode,
    /// Where the data served now comes from.
    pub source: Source,
    /// The environment version of the data held (0 when none).
    pub version: i64,
    pub events: EventStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_detail_has_one_json_form() {
        let detail = Detail {
            value: Value::from(true),
            variation: Some(0),
            reason: Reason::RuleMatch {
                rule_index: 1,
                rule_id: "staff".into(),
            },
            in_experiment: false,
            experiment_key: None,
            flag_version: 3,
            source: Source::Network,
            version: 12,
        };
        assert_eq!(
            serde_json::to_value(&detail).unwrap(),
            json!({"value": true, "variation": 0,
                   "reason": {"kind": "RULE_MATCH", "rule_index": 1, "rule_id": "staff"},
                   "in_experiment": false, "experiment_key": null, "flag_version": 3,
                   "source": "NETWORK", "version": 12})
        );
        let unevaluated = Detail::unevaluated(json!(1), Unevaluated::ContextMissing);
        assert_eq!(
            serde_json::to_value(&unevaluated).unwrap()["reason"],
            json!({"kind": "ERROR", "error_kind": "INVALID_CONTEXT"})
        );
        assert_eq!(unevaluated.source, Source::Defaults);
    }

    #[test]
    fn a_state_has_one_json_form() {
        let state = ClientState {
            status: Status::Stale {
                reason: "lost".into(),
            },
            reason: Some("lost".into()),
            mode: Mode::Local,
            source: Source::Stale,
            version: 2,
            events: EventStats::default(),
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"status": "STALE", "reason": "lost", "mode": "LOCAL", "source": "STALE",
                   "version": 2,
                   "events": {"dropped": 0, "sent": 0, "failed_batches": 0, "queued": 0}})
        );
    }
}
