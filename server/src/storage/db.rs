//! The thin layer between the storage logic and the two SQL engines.
//!
//! Every query of the storage is written once, in the SQL that Postgres and SQLite both
//! speak (numbered `$1` parameters, `RETURNING`, `ON CONFLICT`), and runs through [`Tx`]:
//! a transaction on either engine. Arguments are the few types the schema uses ([`Arg`]);
//! rows are read back through [`Row`] with the same typed getters on both engines.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Row as _, Sqlite, Transaction};

/// A bound query argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(Option<i64>),
    Text(Option<String>),
    Bool(bool),
    F64(Option<f64>),
}

/// `impl From<$from> for Arg`, each value `v` becoming `$arg`.
macro_rules! arg_from {
    ($($from:ty => |$v:ident| $arg:expr;)*) => {
        $(impl From<$from> for Arg {
            fn from($v: $from) -> Self {
                $arg
            }
        })*
    };
}

arg_from! {
    f64 => |v| Arg::F64(Some(v));
    Option<f64> => |v| Arg::F64(v);
    i64 => |v| Arg::I64(Some(v));
    Option<i64> => |v| Arg::I64(v);
    bool => |v| Arg::Bool(v);
    &str => |v| Arg::Text(Some(v.to_owned()));
    String => |v| Arg::Text(Some(v));
    &String => |v| Arg::Text(Some(v.clone()));
    Option<String> => |v| Arg::Text(v);
    Option<&str> => |v| Arg::Text(v.map(str::to_owned));
}

/// Builds a `Vec<Arg>` from values of any type that converts into [`Arg`].
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::storage::db::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// The connection pool of one engine.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// How a transaction is used, which decides how it begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Reads only, from one consistent snapshot.
    Read,
    /// Reads and writes. On SQLite the write lock is taken at the start (`BEGIN IMMEDIATE`)
    /// so that a transaction never fails half-way when upgrading from a read to a write.
    Write,
}

impl Pool {
    pub(crate) async fn begin(&self, mode: Mode) -> Result<Tx, sqlx::Error> {
        match self {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if mode == Mode::Read {
                    // One snapshot for every statement of the transaction.
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .execute(&mut *tx)
                        .await?;
                }
                Ok(Tx::Postgres(tx))
            }
            Pool::Sqlite(pool) => {
                let tx = match mode {
                    Mode::Read => pool.begin().await?,
                    Mode::Write => pool.begin_with("BEGIN IMMEDIATE").await?,
                };
                Ok(Tx::Sqlite(tx))
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Pool::Postgres(pool) => pool.is_closed(),
            Pool::Sqlite(pool) => pool.is_closed(),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}

/// A transaction on either engine. Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::I64(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
                Arg::Bool(v) => query.bind(v),
                Arg::F64(v) => query.bind(v),
            };
        }
        query
    }};
}

/// `$body` on the transaction `$tx` of either engine, bound to `$t`, with `$row` the
/// constructor of that engine's [`Row`]: every query is written once for both.
macro_rules! on_engine {
    ($tx:expr, |$t:ident, $row:ident| $body:expr) => {
        match $tx {
            Tx::Postgres($t) => {
                let $row = Row::Postgres;
                $body
            }
            Tx::Sqlite($t) => {
                let $row = Row::Sqlite;
                $body
            }
        }
    };
}

impl Tx {
    /// Runs a statement; returns the number of rows it affected.
    pub(crate) async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        on_engine!(self, |tx, _row| {
            let done = bind_all!(sqlx::query(sql), args).execute(&mut **tx).await?;
            Ok(done.rows_affected())
        })
    }

    /// Runs a query; returns every row.
    pub(crate) async fn fetch_all(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<Row>, sqlx::Error> {
        on_engine!(self, |tx, row| {
            let rows = bind_all!(sqlx::query(sql), args)
                .fetch_all(&mut **tx)
                .await?;
            Ok(rows.into_iter().map(row).collect())
        })
    }

    /// Runs a query; returns its first row, if any.
    pub(crate) async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<Row>, sqlx::Error> {
        on_engine!(self, |tx, row| {
            let first = bind_all!(sqlx::query(sql), args)
                .fetch_optional(&mut **tx)
                .await?;
            Ok(first.map(row))
        })
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// A value type that both engines can decode.
pub(crate) trait Column:
    for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
{
}

impl<T> Column for T where
    T: for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
{
}

/// A row read from either engine.
pub(crate) enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Row::Postgres(_) => f.write_str("Row::Postgres"),
            Row::Sqlite(_) => f.write_str("Row::Sqlite"),
        }
    }
}

impl Row {
    /// The value of column `index` (from 0).
    pub(crate) fn get<T: Column>(&self, index: usize) -> Result<T, sqlx::Error> {
        match self {
            Row::Postgres(row) => row.try_get(index),
            Row::Sqlite(row) => row.try_get(index),
        }
    }
}

/// What a database error means for the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbFailure {
    /// A unique or primary key constraint (Postgres 23505; SQLite 2067, 1555).
    UniqueViolation,
    /// A foreign key constraint (Postgres 23503; SQLite 787).
    ForeignKeyViolation,
    /// The engine gave up because of concurrent transactions (Postgres 40001, 40P01,
    /// 55P03; SQLite 5 busy, 6 locked and their extended codes).
    Contention,
    /// Anything else.
    Other,
}

/// Classifies a database error by its SQLSTATE (Postgres) or extended result code (SQLite).
pub(crate) fn classify(err: &sqlx::Error) -> DbFailure {
    let Some(db) = err.as_database_error() else {
        return DbFailure::Other;
    };
    let Some(code) = db.code() else {
        return DbFailure::Other;
    };
    match code.as_ref() {
        "23505" | "2067" | "1555" => DbFailure::UniqueViolation,
        "23503" | "787" => DbFailure::ForeignKeyViolation,
        "40001" | "40P01" | "55P03" => DbFailure::Contention,
        // SQLITE_BUSY and SQLITE_LOCKED with their extended codes (low byte 5 or 6).
        sqlite => match sqlite.parse::<i32>() {
            Ok(n) if n & 0xff == 5 || n & 0xff == 6 => DbFailure::Contention,
            _ => DbFailure::Other,
        },
    }
}
