//! The records the storage reads and writes.
//!
//! Times are milliseconds since the Unix epoch. Flag configurations and segment parts are
//! the engine's typed model (conformance/SCHEMA.md), stored as its canonical JSON: the
//! caller validates them with the engine before writing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Result, StorageError};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub use vexil_engine::ValueKind;
pub use vexil_engine::model::{
    Flag as FlagModel, FlagConfiguration, KeyList, Prerequisite, Rule, RulesetData,
    Segment as SegmentModel, SegmentRule, Serve, Target,
};

/// What an SDK key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdkKeyKind {
    /// Backend services: the whole ruleset.
    Server,
    /// Browsers: evaluation of client-side flags only.
    Client,
    /// Mobile apps: evaluation of client-side flags only.
    Mobile,
}

impl SdkKeyKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SdkKeyKind::Server => "server",
            SdkKeyKind::Client => "client",
            SdkKeyKind::Mobile => "mobile",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<SdkKeyKind> {
        match name {
            "server" => Some(SdkKeyKind::Server),
            "client" => Some(SdkKeyKind::Client),
            "mobile" => Some(SdkKeyKind::Mobile),
            _ => None,
        }
    }
}

/// A role on a project, ordered from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also writes flags, flag configurations and segments.
    Editor,
    /// Also manages environments, SDK keys, admin tokens and the project.
    Admin,
}

impl Role {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    pub key: String,
    pub name: String,
    pub description: String,
    /// Bumped by every change of the project's own fields.
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What creating a project takes.
#[derive(Debug, Clone, Default)]
pub struct NewProject {
    pub key: String,
    pub name: String,
    pub description: String,
}

/// An environment of a project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub project_key: String,
    pub key: String,
    pub name: String,
    pub description: String,
    /// The environment version, bumped by every change to its flags, segments or own fields.
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The web origins whose pages may use the environment's client keys (see
    /// `crate::origins`); empty: this machine's pages only.
    pub allowed_origins: Vec<String>,
    /// Days raw events are kept; 0: forever.
    pub event_retention_days: u32,
}

/// What creating an environment takes.
#[derive(Debug, Clone, Default)]
pub struct NewEnvironment {
    pub key: String,
    pub name: String,
    pub description: String,
    pub allowed_origins: Vec<String>,
    pub event_retention_days: u32,
}

/// What updating an environment changes.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentUpdate<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// `None` leaves the allowed origins as they are.
    pub allowed_origins: Option<&'a [String]>,
    /// `None` leaves the retention of raw events as it is.
    pub event_retention_days: Option<u32>,
}

/// A flag's project-level fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub project_key: String,
    pub key: String,
    pub kind: ValueKind,
    pub variations: Vec<Value>,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub client_side: bool,
    pub archived: bool,
    /// Bumped by every change of the project-level fields.
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Flag {
    /// The flag in one environment as the engine's model (SCHEMA.md "Flag"): these
    /// project-level fields with `configuration`, at the configuration's `version`.
    pub fn model(&self, configuration: &FlagConfiguration, version: i64) -> FlagModel {
        FlagModel {
            key: self.key.clone(),
            kind: self.kind,
            variations: self.variations.clone(),
            on: configuration.on,
            off_variation: configuration.off_variation,
            targets: configuration.targets.clone(),
            rules: configuration.rules.clone(),
            fallthrough: configuration.fallthrough.clone(),
            prerequisites: configuration.prerequisites.clone(),
            salt: configuration.salt.clone(),
            version: u64::try_from(version).unwrap_or(0),
            client_side: self.client_side,
        }
    }
}

/// What creating a flag takes. `off_variation` and `fallthrough` are the configuration every
/// environment starts with (existing ones now, and environments created later); the flag
/// starts off everywhere.
#[derive(Debug, Clone)]
pub struct NewFlag {
    pub key: String,
    pub kind: ValueKind,
    pub variations: Vec<Value>,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub client_side: bool,
    pub off_variation: Option<usize>,
    pub fallthrough: Serve,
}

/// The replacement of a flag's mutable project-level fields.
#[derive(Debug, Clone)]
pub struct FlagUpdate {
    pub name: String,
    pub description: String,
    pub variations: Vec<Value>,
    pub tags: Vec<String>,
    pub client_side: bool,
}

/// Which flags to list by archive state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ArchivedFilter {
    /// Only flags that are not archived.
    #[default]
    Exclude,
    /// Only archived flags.
    Only,
    /// Both.
    Include,
}

/// Filters of [`Storage::list_flags`](super::Storage::list_flags); all must hold.
#[derive(Debug, Clone, Default)]
pub struct FlagFilter {
    /// Flags carrying every one of these tags.
    pub tags: Vec<String>,
    /// Flags whose key or name contains this text, ignoring ASCII case.
    pub query: Option<String>,
    /// Flags of this kind.
    pub kind: Option<ValueKind>,
    /// By archive state.
    pub archived: ArchivedFilter,
}

/// A flag's configuration in one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagConfig {
    pub project_key: String,
    pub environment_key: String,
    pub flag_key: String,
    #[serde(flatten)]
    pub configuration: FlagConfiguration,
    /// The flag's version in this environment: bumped by every change of this configuration
    /// and of the project-level flag. This is the `version` of the flag in the ruleset.
    pub version: i64,
    pub updated_at: Millis,
}

/// A segment of one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub project_key: String,
    pub environment_key: String,
    pub key: String,
    pub name: String,
    pub description: String,
    pub included: Vec<KeyList>,
    pub excluded: Vec<KeyList>,
    pub rules: Vec<SegmentRule>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A segment's writable fields, for creation and for replacement (the key names it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentInput {
    pub key: String,
    pub name: String,
    pub description: String,
    pub included: Vec<KeyList>,
    pub excluded: Vec<KeyList>,
    pub rules: Vec<SegmentRule>,
}

impl SegmentInput {
    /// The segment as the engine's model, at `version`.
    pub fn model(&self, version: i64) -> SegmentModel {
        SegmentModel {
            key: self.key.clone(),
            included: self.included.clone(),
            excluded: self.excluded.clone(),
            rules: self.rules.clone(),
            version: u64::try_from(version).unwrap_or(0),
        }
    }
}

/// An SDK key; its secret is never stored, only a hash of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SdkKey {
    pub id: i64,
    pub project_key: String,
    pub environment_key: String,
    pub kind: SdkKeyKind,
    pub name: String,
    /// The first characters of the secret, for people to recognise it.
    pub prefix: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

impl SdkKey {
    /// Whether the key works at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// What issuing an SDK key stores: see [`super::secrets::generate_sdk_key`].
#[derive(Debug, Clone)]
pub struct NewSdkKey {
    pub kind: SdkKeyKind,
    pub name: String,
    pub prefix: String,
    /// Hex SHA-256 of the secret ([`super::secrets::hash_secret`]).
    pub hash: String,
}

/// A role held on a project (`project_key` "*" means every project).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RoleBinding {
    pub project_key: String,
    pub role: Role,
}

/// An admin token; the signed token itself is never stored, only a hash of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminToken {
    /// The token's id, carried in the signed token.
    pub id: String,
    /// Who uses it: the actor of the audit log.
    pub principal: String,
    pub description: String,
    /// Ordered by project key.
    pub roles: Vec<RoleBinding>,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

impl AdminToken {
    /// Whether the token works at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }

    /// The role the token holds on `project_key`: the higher of its binding for that project
    /// and its binding for "*".
    pub fn role_on(&self, project_key: &str) -> Option<Role> {
        self.roles
            .iter()
            .filter(|b| b.project_key == project_key || b.project_key == "*")
            .map(|b| b.role)
            .max()
    }
}

/// What creating an admin token stores. The id and hash come from whoever signs the token.
#[derive(Debug, Clone)]
pub struct NewAdminToken {
    pub id: String,
    pub principal: String,
    pub description: String,
    /// Hex SHA-256 of the signed token ([`super::secrets::hash_secret`]).
    pub hash: String,
    pub roles: Vec<RoleBinding>,
    pub expires_at: Option<Millis>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Increases with time.
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    /// Such as `flag.create`, `flag_config.update`, `sdk_key.revoke`.
    pub action: String,
    /// A [`super::ResourceKind`] name.
    pub resource_kind: String,
    pub resource_key: String,
    pub project_key: Option<String>,
    pub environment_key: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Filters of [`Storage::list_audit`](super::Storage::list_audit); all that are set must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub project_key: Option<String>,
    pub environment_key: Option<String>,
    pub resource_kind: Option<String>,
    pub resource_key: Option<String>,
    pub actor: Option<String>,
    /// Entries at or after this time.
    pub since: Option<Millis>,
    /// Entries before this time.
    pub until: Option<Millis>,
}

/// Where a list starts and how long a page is.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Items per page; 0 means [`PageRequest::DEFAULT_LIMIT`], and more than
    /// [`PageRequest::MAX_LIMIT`] is lowered to it.
    pub limit: u32,
    /// The `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> PageRequest {
        PageRequest {
            limit,
            cursor: None,
        }
    }

    /// The cursor of a list paged by a number (an id, a version): `first` on the first page.
    pub(crate) fn number_cursor(&self, first: i64) -> super::Result<i64> {
        match &self.cursor {
            None => Ok(first),
            Some(text) => text
                .parse()
                .map_err(|_| super::StorageError::InvalidArgument("bad page cursor".into())),
        }
    }

    pub(crate) fn effective_limit(&self) -> i64 {
        i64::from(match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page. Opaque to callers.
    pub next_cursor: Option<String>,
}

/// The kind of resource a change-log entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Flag,
    Segment,
}

impl ChangeKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Flag => "flag",
            ChangeKind::Segment => "segment",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<ChangeKind> {
        match name {
            "flag" => Ok(ChangeKind::Flag),
            "segment" => Ok(ChangeKind::Segment),
            other => Err(StorageError::Corrupt(format!(
                "unknown change kind `{other}`"
            ))),
        }
    }
}

/// Whether a change-log entry put a resource in the ruleset or took it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Upsert,
    Delete,
}

impl ChangeOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Upsert => "upsert",
            ChangeOp::Delete => "delete",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<ChangeOp> {
        match name {
            "upsert" => Ok(ChangeOp::Upsert),
            "delete" => Ok(ChangeOp::Delete),
            other => Err(StorageError::Corrupt(format!(
                "unknown change op `{other}`"
            ))),
        }
    }
}

/// One entry of an environment's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The environment version the change was made at.
    pub version: i64,
    pub kind: ChangeKind,
    pub key: String,
    pub op: ChangeOp,
}

/// The answer of [`Storage::changes_since`](super::Storage::changes_since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangesSince {
    /// Every change after the version asked for, in version order, up to `version`, the
    /// environment's current version. Empty when the caller is current.
    Changes { version: i64, changes: Vec<Change> },
    /// The log cannot bring the caller from its version to `version` (the version is older
    /// than the retained log, or newer than the environment): it needs a snapshot.
    SnapshotRequired { version: i64 },
}

/// Everything that changed in an environment between two versions, ready to send: the
/// current JSON of every flag and segment upserted since, and the keys of those deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesetPatch {
    pub from_version: i64,
    pub version: i64,
    pub upserted_flags: Vec<FlagModel>,
    pub deleted_flags: Vec<String>,
    pub upserted_segments: Vec<SegmentModel>,
    pub deleted_segments: Vec<String>,
}

impl RulesetPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.upserted_flags.is_empty()
            && self.deleted_flags.is_empty()
            && self.upserted_segments.is_empty()
            && self.deleted_segments.is_empty()
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// The environment version after the import.
    pub version: i64,
    /// Flags created in the project.
    pub created_flags: Vec<String>,
    /// Flags that existed and whose configuration was replaced.
    pub updated_flags: Vec<String>,
    /// Segments created or replaced.
    pub segments: Vec<String>,
}

// ----- analytics events ---------------------------------------------------------------------

/// The context of an event as stored: the engine's canonical JSON, plus the kind and key(s)
/// that analytics group and join by (see [`EventContext::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventContext {
    pub json: Value,
    /// The context's kind, or `multi` for a multi-kind context.
    pub kind: String,
    /// The context's key; for a multi-kind context its `kind:key` pairs, sorted by kind and
    /// separated by a space, with `%` and space in keys escaped as `%25` and `%20`.
    pub key: String,
}

impl EventContext {
    /// The stored form of a context the engine accepted.
    pub fn new(context: &vexil_engine::Context) -> EventContext {
        let json = context.to_json();
        match context.parts() {
            [single] => EventContext {
                json,
                kind: single.kind().to_owned(),
                key: single.key().to_owned(),
            },
            parts => {
                let mut pairs: Vec<String> = parts
                    .iter()
                    .map(|p| {
                        let key = p.key().replace('%', "%25").replace(' ', "%20");
                        format!("{}:{key}", p.kind())
                    })
                    .collect();
                pairs.sort();
                EventContext {
                    json,
                    kind: "multi".into(),
                    key: pairs.join(" "),
                }
            }
        }
    }
}

/// A batch of events from an SDK, validated by the caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventBatch {
    /// Chosen by the SDK and kept across retries: unique per environment.
    pub batch_id: String,
    pub sdk_name: String,
    pub sdk_version: String,
    pub exposures: Vec<ExposureEvent>,
    pub track_events: Vec<TrackEvent>,
    pub summaries: Vec<EvaluationSummary>,
}

impl EventBatch {
    /// Exposures, track events and summaries (counters are part of their summary).
    pub fn len(&self) -> usize {
        self.exposures.len() + self.track_events.len() + self.summaries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A context was served a variation of a flag in an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposureEvent {
    pub at: Millis,
    pub flag_key: String,
    pub flag_version: i64,
    pub experiment_key: String,
    pub variation: i64,
    pub in_experiment: bool,
    pub context: EventContext,
}

/// A metric event recorded by `track`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    pub at: Millis,
    pub name: String,
    /// Set for value metrics, `None` for conversions.
    pub value: Option<f64>,
    /// Extra data, a JSON object.
    pub data: Option<Value>,
    pub context: EventContext,
}

/// Counts of evaluations of one flag over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationSummary {
    pub start: Millis,
    pub end: Millis,
    pub flag_key: String,
    pub counters: Vec<EvaluationCounter>,
}

/// How many evaluations of a flag version served one outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationCounter {
    pub flag_version: i64,
    /// `None` when the default was served.
    pub variation: Option<i64>,
    /// Why the default was served (`flag_not_found`, `wrong_type`, …), if because of an error.
    pub error_kind: Option<String>,
    pub count: i64,
}

/// What [`Storage::store_event_batch`](super::Storage::store_event_batch) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatch {
    /// Events accepted from the batch; for a duplicate, those accepted the first time.
    pub accepted: u32,
    /// The batch id had been stored before: nothing was written.
    pub duplicate: bool,
}

/// How many events of each type an environment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    pub batches: i64,
    pub exposures: i64,
    pub track_events: i64,
    pub summaries: i64,
    pub counters: i64,
}
