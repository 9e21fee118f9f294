//! The storage's error type.

use std::fmt;

use super::db::{DbFailure, classify};

/// The kinds of stored resources, as named in errors, the audit log and the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Project,
    Environment,
    Flag,
    FlagConfig,
    Segment,
    SdkKey,
    AdminToken,
    Metric,
    Experiment,
    /// A recorded version of a flag's configuration or of a segment.
    Version,
    /// A change of a flag's configuration scheduled for a time.
    ScheduledChange,
    /// A progressive rollout of a flag in an environment.
    Ramp,
    /// A context of the events (only in the audit log of an erasure).
    Context,
}

impl ResourceKind {
    /// The lowercase name used in the audit log (`flag_config`, `sdk_key`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Project => "project",
            ResourceKind::Environment => "environment",
            ResourceKind::Flag => "flag",
            ResourceKind::FlagConfig => "flag_config",
            ResourceKind::Segment => "segment",
            ResourceKind::SdkKey => "sdk_key",
            ResourceKind::AdminToken => "admin_token",
            ResourceKind::Metric => "metric",
            ResourceKind::Experiment => "experiment",
            ResourceKind::Version => "version",
            ResourceKind::ScheduledChange => "scheduled_change",
            ResourceKind::Ramp => "ramp",
            ResourceKind::Context => "context",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a storage call can fail with. A failed write has written nothing.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The resource (or one it belongs to) does not exist.
    #[error("{kind} `{key}` not found")]
    NotFound { kind: ResourceKind, key: String },

    /// A resource with this key already exists (a unique constraint refused the write).
    #[error("{kind} `{key}` already exists")]
    AlreadyExists { kind: ResourceKind, key: String },

    /// The write was based on a stale version: it was refused and nothing was written.
    #[error("{kind} `{key}` is at version {actual}, not {expected}: it was changed meanwhile")]
    Conflict {
        kind: ResourceKind,
        key: String,
        expected: i64,
        actual: i64,
    },

    /// The request itself is unusable (a malformed import, an unknown reference).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The resource is not in a state that allows the change (an experiment that is not
    /// running cannot be stopped).
    #[error("{0}")]
    FailedPrecondition(String),

    /// The database gave up because of concurrent transactions; retrying may succeed.
    #[error("the database is busy, try again")]
    Contention(#[source] sqlx::Error),

    /// Stored data could not be read back (invalid JSON, an unknown enum value).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),

    /// Applying the migrations failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The storage could not be opened (a bad URL, an unreachable server, a bad path).
    #[error("cannot open storage: {0}")]
    Open(String),

    /// Any other database error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

/// The storage's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        match classify(&err) {
            DbFailure::Contention => StorageError::Contention(err),
            _ => StorageError::Database(err),
        }
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(err: serde_json::Error) -> Self {
        StorageError::Corrupt(format!("invalid json: {err}"))
    }
}

impl StorageError {
    /// Maps a database error from a write of resource `kind` named `key`: a unique
    /// violation means the resource already exists.
    pub(crate) fn on_write(kind: ResourceKind, key: &str) -> impl FnOnce(sqlx::Error) -> Self {
        let key = key.to_owned();
        move |err| match classify(&err) {
            DbFailure::UniqueViolation => StorageError::AlreadyExists { kind, key },
            _ => StorageError::from(err),
        }
    }

    /// Whether the error is a stale-version conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StorageError::Conflict { .. })
    }
}
