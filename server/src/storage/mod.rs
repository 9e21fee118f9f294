//! Where flags live: Postgres in production, SQLite as the embedded default.
//!
//! # One type, two engines
//!
//! [`Storage`] is a concrete type over an enum of two connection pools rather than a trait
//! with two implementations. Every query is written once, in the SQL both engines speak
//! (numbered `$n` parameters, `RETURNING`, integer times, JSON as text), and runs through
//! the small adapter in `db.rs`, the only place that knows which engine it talks to. So the
//! two backends cannot drift apart in behaviour: there is one implementation of every rule
//! (versions, conflicts, audit, change log), tested by one suite on both engines. The
//! differences left are in the migrations (identity columns) and in how a transaction
//! begins (`BEGIN IMMEDIATE` on SQLite; `REPEATABLE READ` snapshots for reads on Postgres).
//! `Storage` is cheap to clone and can be shared by every service.
//!
//! # Guarantees
//!
//! * Every write is one transaction: the change, its audit entry, the bump of the
//!   environment version and the change-log entries commit together or not at all.
//! * Updates take the version they were based on and fail with
//!   [`StorageError::Conflict`] when it is stale, writing nothing.
//! * Writes to one environment are serialized by a lock on its row (taken by the version
//!   bump), so versions are committed in order and the change log has no holes that fill in
//!   later: a reader that saw version `n` has seen every change up to `n`.
//! * Lock order, to stay free of deadlocks: project, then environments, then the rest.
//!
//! Validation of flags and segments is the caller's job (the engine's), before calling.

mod analytics;
mod audit;
mod compaction;
pub(crate) mod db;
mod error;
mod events;
mod experiments;
mod flags;
mod history;
mod keys;
mod leases;
mod migrations;
mod privacy;
mod projects;
mod ramps;
mod replica;
mod ruleset;
mod scheduled;
pub mod secrets;
mod segments;
mod types;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::broadcast;

pub use analytics::*;
pub use compaction::{BATCHES_PER_ROUND, CATCH_UP_LIMIT, CompactionRound, UNITS_PER_ROUND};
use db::{Arg, Mode, Pool, Tx, args};
pub use error::{ResourceKind, Result, StorageError};
pub use events::{HOUR_MILLIS, hour_of};
pub use experiments::*;
pub use history::{EnvironmentAsOf, FlagVersion, SegmentVersion, Skipped, VersionAt};
pub use privacy::{ErasedContext, PurgedEvents, erased_context_label};
pub use ramps::{
    MAX_GUARD_METRICS, NewRamp, RAMP_EXPERIMENT_PREFIX, Ramp, RampGuard, RampMove, RampState,
    RampStep, serve_at,
};
pub use scheduled::{NewScheduledChange, ScheduleState, ScheduledChange, ScheduledEdit};
pub use types::*;

/// Which engine a [`Storage`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The storage: see the module documentation.
#[derive(Debug, Clone)]
pub struct Storage {
    pool: Pool,
    changes: broadcast::Sender<EnvironmentChanged>,
    /// Environment versions the writes of this handle were validated against (see
    /// [`Storage::guarded`]).
    guards: Option<std::sync::Arc<EnvGuards>>,
    /// Transactions begun through this handle and its clones.
    transactions: std::sync::Arc<TransactionCounts>,
    /// The read replica, when there is one (see `replica.rs`).
    replica: Option<std::sync::Arc<replica::Replica>>,
}

/// How many read and write transactions a storage began, for diagnostics and for tests that
/// count what an operation costs.
#[derive(Debug, Default)]
struct TransactionCounts {
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

/// Transactions begun so far (see [`Storage::transactions`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transactions {
    pub reads: u64,
    pub writes: u64,
}

/// Environment key → the version a write was validated against, within the project the
/// write is about.
pub type EnvGuards = std::collections::HashMap<String, i64>;

/// Sent to [`Storage::subscribe`]rs after a write committed a new environment version.
/// Only writes made through this `Storage` value (and its clones) are seen: other server
/// instances learn of changes through the change-notice bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentChanged {
    pub project_key: String,
    pub environment_key: String,
    /// The environment's version after the write.
    pub version: i64,
}

/// How many notices a slow subscriber may fall behind before it misses some (it then
/// receives `RecvError::Lagged` and should compare versions itself).
const NOTICE_CAPACITY: usize = 1024;

/// How many connections a pool opens at most when not told otherwise.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

impl Storage {
    /// Opens the storage at `url` and applies the migrations: `postgres://…` (or
    /// `postgresql://…`) for Postgres, `sqlite:path` or `sqlite://path` for SQLite (the file
    /// is created when missing).
    pub async fn connect(url: &str) -> Result<Storage> {
        Storage::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`Storage::connect`], with at most `max_connections` connections.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Storage> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|err| StorageError::Open(format!("postgres: {err}")))?;
            Storage::start(Pool::Postgres(pool)).await
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|err| StorageError::Open(format!("sqlite url: {err}")))?;
            Storage::open_sqlite_with(options, max_connections).await
        } else {
            Err(StorageError::Open(
                "the database url must start with postgres://, postgresql:// or sqlite:".into(),
            ))
        }
    }

    /// Opens (creating it when missing) the SQLite database file at `path`, whose folder must
    /// exist, and applies the migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Storage> {
        let options = SqliteConnectOptions::new().filename(path);
        Storage::open_sqlite_with(options, DEFAULT_MAX_CONNECTIONS).await
    }

    async fn open_sqlite_with(
        options: SqliteConnectOptions,
        max_connections: u32,
    ) -> Result<Storage> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await
            .map_err(|err| StorageError::Open(format!("sqlite: {err}")))?;
        Storage::start(Pool::Sqlite(pool)).await
    }

    async fn start(pool: Pool) -> Result<Storage> {
        match &pool {
            Pool::Postgres(pg) => {
                migrations::Dialect::Postgres
                    .migrator()
                    .await?
                    .run(pg)
                    .await?
            }
            Pool::Sqlite(lite) => {
                migrations::Dialect::Sqlite
                    .migrator()
                    .await?
                    .run(lite)
                    .await?
            }
        }
        let (changes, _) = broadcast::channel(NOTICE_CAPACITY);
        let storage = Storage {
            pool,
            changes,
            guards: None,
            transactions: Default::default(),
            replica: None,
        };
        tracing::info!(backend = ?storage.backend(), "storage ready");
        Ok(storage)
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A handle on the same storage whose writes also fail with
    /// [`StorageError::Conflict`] (about the environment, writing nothing) when one of the
    /// environments they touch is no longer at the version given in `guards`. The admin API
    /// validates a change against an environment's whole ruleset and then writes it with
    /// these guards, so that a concurrent change of the same environment (such as deleting a
    /// segment another flag is starting to use) cannot slip in between.
    pub fn guarded(&self, guards: EnvGuards) -> Storage {
        Storage {
            pool: self.pool.clone(),
            changes: self.changes.clone(),
            guards: Some(std::sync::Arc::new(guards)),
            transactions: self.transactions.clone(),
            replica: self.replica.clone(),
        }
    }

    fn guards(&self) -> Option<&EnvGuards> {
        self.guards.as_deref()
    }

    /// Notices of every environment version committed through this storage from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EnvironmentChanged> {
        self.changes.subscribe()
    }

    /// Commits a write, then tells subscribers about the environments it bumped: never
    /// before, or a subscriber could read the versions before the write.
    async fn commit_and_notify(&self, tx: Tx, project: &str, envs: &[BumpedEnv]) -> Result<()> {
        tx.commit().await?;
        for env in envs {
            tracing::debug!(project, environment = %env.key, version = env.version, "environment changed");
            // No subscriber is not an error.
            let _ = self.changes.send(EnvironmentChanged {
                project_key: project.to_owned(),
                environment_key: env.key.clone(),
                version: env.version,
            });
        }
        Ok(())
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(replica) = &self.replica {
            replica.close().await;
        }
    }

    /// Whether nothing was ever set up: no project and no admin token (a first start).
    pub async fn is_empty(&self) -> Result<bool> {
        let mut tx = self.read().await?;
        let row = tx
            .fetch_optional(
                "SELECT (SELECT COUNT(*) FROM projects) + (SELECT COUNT(*) FROM admin_tokens)",
                args![],
            )
            .await?;
        Ok(match row {
            Some(row) => row.get::<i64>(0)? == 0,
            None => true,
        })
    }

    pub(crate) async fn read(&self) -> Result<Tx> {
        self.transactions.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.pool.begin(Mode::Read).await?)
    }

    pub(crate) async fn write(&self) -> Result<Tx> {
        self.transactions.writes.fetch_add(1, Ordering::Relaxed);
        Ok(self.pool.begin(Mode::Write).await?)
    }

    /// How many read and write transactions this storage (and every clone of it) began.
    pub fn transactions(&self) -> Transactions {
        Transactions {
            reads: self.transactions.reads.load(Ordering::Relaxed),
            writes: self.transactions.writes.load(Ordering::Relaxed),
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Serializes a value for a text column.
fn to_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Values of the storage (JSON values, strings, records) always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// Reads a JSON text column.
fn from_text<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|err| StorageError::Corrupt(format!("{what}: {err}")))
}

/// Serializes a record for the audit log.
/// Column `index` of `row`, a name that `parse` reads; corrupt data, naming `what` and the
/// text, when it is none it knows.
fn parsed_column<T>(
    row: &db::Row,
    index: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| StorageError::Corrupt(format!("unknown {what} `{text}`")))
}

fn to_audit<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

/// An audit entry about to be written.
struct AuditRecord<'a> {
    actor: &'a str,
    action: &'a str,
    kind: ResourceKind,
    key: &'a str,
    project: Option<&'a str>,
    environment: Option<&'a str>,
    before: Option<Value>,
    after: Option<Value>,
    at: Millis,
}

impl<'a> AuditRecord<'a> {
    /// An entry for `action` by `actor` at `at` on the resource `kind` `key`, outside any
    /// project, with no content.
    fn new(actor: &'a str, action: &'a str, kind: ResourceKind, key: &'a str, at: Millis) -> Self {
        AuditRecord {
            actor,
            action,
            kind,
            key,
            project: None,
            environment: None,
            before: None,
            after: None,
            at,
        }
    }

    /// The project and environment the resource is in.
    fn scope(self, project: Option<&'a str>, environment: Option<&'a str>) -> Self {
        AuditRecord {
            project,
            environment,
            ..self
        }
    }

    /// The resource before and after the action (absent for a creation or a deletion).
    fn change(self, before: Option<Value>, after: Option<Value>) -> Self {
        AuditRecord {
            before,
            after,
            ..self
        }
    }

    async fn write(self, tx: &mut Tx) -> Result<()> {
        tx.execute(
            "INSERT INTO audit_log (at, actor, action, resource_kind, resource_key, project_key, \
             environment_key, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            args![
                self.at,
                self.actor,
                self.action,
                self.kind.as_str(),
                self.key,
                self.project,
                self.environment,
                self.before.as_ref().map(to_text),
                self.after.as_ref().map(to_text),
            ],
        )
        .await?;
        Ok(())
    }
}

/// Looks up a project's id.
async fn project_id(tx: &mut Tx, project: &str) -> Result<i64> {
    match tx
        .fetch_optional("SELECT id FROM projects WHERE key = $1", args![project])
        .await?
    {
        Some(row) => Ok(row.get(0)?),
        None => Err(not_found(ResourceKind::Project, project)),
    }
}

/// Locks a project's row until the end of the transaction; returns its id.
async fn lock_project(tx: &mut Tx, project: &str) -> Result<i64> {
    match tx
        .fetch_optional(
            "UPDATE projects SET version = version WHERE key = $1 RETURNING id",
            args![project],
        )
        .await?
    {
        Some(row) => Ok(row.get(0)?),
        None => Err(not_found(ResourceKind::Project, project)),
    }
}

/// Locks an environment's row until the end of the transaction without changing it.
async fn lock_env(tx: &mut Tx, project: &str, env: &str) -> Result<()> {
    let row = tx
        .fetch_optional(
            "UPDATE environments SET version = version \
             WHERE key = $2 AND project_id = (SELECT id FROM projects WHERE key = $1) \
             RETURNING id",
            args![project, env],
        )
        .await?;
    if row.is_none() {
        project_id(tx, project).await?;
        return Err(not_found(
            ResourceKind::Environment,
            &format!("{project}/{env}"),
        ));
    }
    Ok(())
}

/// An environment locked and bumped by the current transaction.
#[derive(Debug, Clone)]
struct BumpedEnv {
    id: i64,
    key: String,
    /// The version the transaction's changes are made at.
    version: i64,
}

/// Bumps an environment's version, which also locks its row until the end of the
/// transaction. Every write to an environment's flags or segments starts here.
async fn bump_env(
    tx: &mut Tx,
    project: &str,
    env: &str,
    now: Millis,
    guards: Option<&EnvGuards>,
) -> Result<BumpedEnv> {
    let row = tx
        .fetch_optional(
            "UPDATE environments SET version = version + 1, updated_at = $3 \
             WHERE key = $2 AND project_id = (SELECT id FROM projects WHERE key = $1) \
             RETURNING id, version",
            args![project, env, now],
        )
        .await?;
    match row {
        Some(row) => {
            let bumped = BumpedEnv {
                id: row.get(0)?,
                key: env.to_owned(),
                version: row.get(1)?,
            };
            check_guard(guards, project, &bumped)?;
            Ok(bumped)
        }
        None => {
            project_id(tx, project).await?;
            Err(not_found(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
            ))
        }
    }
}

/// Bumps the version of every environment of a project (locked already), for a change that
/// touches all of them.
async fn bump_all_envs(
    tx: &mut Tx,
    project: &str,
    project_id: i64,
    now: Millis,
    guards: Option<&EnvGuards>,
) -> Result<Vec<BumpedEnv>> {
    let rows = tx
        .fetch_all(
            "UPDATE environments SET version = version + 1, updated_at = $2 \
             WHERE project_id = $1 RETURNING id, key, version",
            args![project_id, now],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let bumped = BumpedEnv {
                id: row.get(0)?,
                key: row.get(1)?,
                version: row.get(2)?,
            };
            check_guard(guards, project, &bumped)?;
            Ok(bumped)
        })
        .collect()
}

/// Fails with a conflict when a guard names the environment just bumped with another
/// version than the one it had before the bump.
fn check_guard(guards: Option<&EnvGuards>, project: &str, bumped: &BumpedEnv) -> Result<()> {
    match guards.and_then(|guards| guards.get(&bumped.key)) {
        Some(&expected) => check_version(
            ResourceKind::Environment,
            &format!("{project}/{}", bumped.key),
            expected,
            bumped.version - 1,
        ),
        None => Ok(()),
    }
}

/// Records a change in an environment's change log.
async fn log_change(
    tx: &mut Tx,
    env: &BumpedEnv,
    kind: ChangeKind,
    key: &str,
    op: ChangeOp,
) -> Result<()> {
    tx.execute(
        "INSERT INTO env_changes (environment_id, version, resource_kind, resource_key, op) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (environment_id, version, resource_kind, resource_key) DO UPDATE SET op = $5",
        args![env.id, env.version, kind.as_str(), key, op.as_str()],
    )
    .await?;
    Ok(())
}

fn not_found(kind: ResourceKind, key: &str) -> StorageError {
    StorageError::NotFound {
        kind,
        key: key.to_owned(),
    }
}

/// Fails with a conflict unless `actual == expected`.
fn check_version(kind: ResourceKind, key: &str, expected: i64, actual: i64) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(StorageError::Conflict {
            kind,
            key: key.to_owned(),
            expected,
            actual,
        })
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A SQL statement assembled from optional parts, numbering its parameters.
struct QueryBuilder {
    sql: String,
    args: Vec<Arg>,
}

impl QueryBuilder {
    fn new(sql: &str) -> QueryBuilder {
        QueryBuilder {
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }

    /// Adds an argument; returns its placeholder.
    fn arg(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }
}
