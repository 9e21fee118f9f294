//! An optional Postgres read replica, for the reads that tolerate lag: loading an
//! environment's ruleset, the change-log catch-up of an instance that knows which version
//! it needs, and the analytics reads (experiment aggregates, flag usage, stale flags).
//! Never for a write, nor for what a write checks: those run on the primary.
//!
//! Every such read is answered by the primary instead when the replica cannot answer it as
//! well: when it fails (down, unreachable, or a query error), when it does not hold what was
//! asked yet (a missing environment), or when its answer is older than the version the
//! caller needs. So a replica that lags or disappears costs the primary some reads, never a
//! wrong or missing answer. After a failure the replica is marked down and reads go straight
//! to the primary, without waiting on it, until a probe every [`PROBE_INTERVAL`] finds it
//! back: only the read that finds it gone pays for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::db::{Mode, Pool, Tx};
use super::{Result, Storage, StorageError};

/// How often a replica marked down is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a read waits for a replica connection before it goes to the primary. A replica
/// is a connection away on a local network: waiting longer means it is down or overloaded.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// The replica's connections at most.
const MAX_CONNECTIONS: u32 = 5;

/// The replica of a [`Storage`].
#[derive(Debug)]
pub(super) struct Replica {
    pool: Pool,
    /// Whether reads may go to the replica: false from a failure until a probe finds it
    /// back.
    up: AtomicBool,
    /// Reads that could go to the replica, by outcome.
    reads: IntCounterVec,
}

impl Replica {
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    fn count(&self, outcome: &str) {
        self.reads.with_label_values(&[outcome]).inc();
    }

    /// Marks the replica down, and probes it until it answers again (or the storage is
    /// closed or dropped).
    fn failed(self: &Arc<Replica>, err: &StorageError) {
        self.count("unavailable");
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(error = %err, "read replica failed: the primary answers until it is back");
        let replica: Weak<Replica> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let Some(replica) = replica.upgrade() else {
                    return;
                };
                if replica.pool.is_closed() {
                    return;
                }
                if replica.pool.begin(Mode::Read).await.is_ok() {
                    replica.up.store(true, Ordering::Release);
                    tracing::info!("read replica back");
                    return;
                }
            }
        });
    }
}

/// Runs `$body` (an expression reading through `$tx`, a `Tx`) on the replica when there is
/// one and it is not resting, keeps its answer when `$accept` takes it, and otherwise runs
/// `$body` again on the primary.
macro_rules! on_replica {
    ($storage:expr, |$tx:ident| $body:expr, $accept:expr) => {{
        let storage: &$crate::storage::Storage = $storage;
        let mut answer = None;
        if let Some(mut $tx) = storage.replica_read().await {
            let result = $body;
            drop($tx);
            answer = storage.replica_answer(result, $accept);
        }
        match answer {
            Some(value) => Ok(value),
            None => {
                let mut $tx = storage.read().await?;
                $body
            }
        }
    }};
}
pub(super) use on_replica;

impl Storage {
    /// This storage, reading what tolerates lag from the Postgres replica at `url`
    /// (`postgres://…`). The replica is connected to lazily: one down when the server
    /// starts is tried again later, the primary answering meanwhile.
    pub fn with_replica(mut self, url: &str) -> Result<Storage> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StorageError::Open(
                "the replica url must start with postgres:// or postgresql://".into(),
            ));
        }
        if !matches!(self.pool, Pool::Postgres(_)) {
            return Err(StorageError::Open(
                "a read replica needs a Postgres database, not SQLite".into(),
            ));
        }
        let pool: PgPool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)
            .map_err(|err| StorageError::Open(format!("replica: {err}")))?;
        let reads = IntCounterVec::new(
            Opts::new(
                "vexil_replica_reads_total",
                "Reads that tolerate lag, by who answered: replica, or the primary because the \
                 replica was behind, failed (unavailable) or marked down since a failure (down)",
            ),
            &["outcome"],
        )
        .map_err(|err| StorageError::Open(format!("replica metric: {err}")))?;
        self.replica = Some(Arc::new(Replica {
            pool: Pool::Postgres(pool),
            up: AtomicBool::new(true),
            reads,
        }));
        Ok(self)
    }

    /// The counter of reads that could go to the replica, when there is one (for the
    /// instance's metrics).
    pub fn replica_reads(&self) -> Option<IntCounterVec> {
        self.replica.as_ref().map(|r| r.reads.clone())
    }

    /// A read-only transaction on the replica, unless there is none, it is marked down, or
    /// it cannot begin one now (it is then marked down).
    pub(super) async fn replica_read(&self) -> Option<Tx> {
        let replica = self.replica.as_ref()?;
        if !replica.up.load(Ordering::Acquire) {
            replica.count("down");
            return None;
        }
        match replica.pool.begin(Mode::Read).await {
            Ok(tx) => Some(tx),
            Err(err) => {
                replica.failed(&StorageError::from(err));
                None
            }
        }
    }

    /// The replica's answer when `accept` takes it; `None` (and counted) otherwise.
    pub(super) fn replica_answer<T>(
        &self,
        result: Result<T>,
        accept: impl FnOnce(&T) -> bool,
    ) -> Option<T> {
        let replica = self.replica.as_ref()?;
        match result {
            Ok(value) if accept(&value) => {
                replica.count("replica");
                Some(value)
            }
            Ok(_) | Err(StorageError::NotFound { .. }) => {
                replica.count("behind");
                None
            }
            Err(err) => {
                replica.failed(&err);
                None
            }
        }
    }
}
