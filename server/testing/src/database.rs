//! A fresh database for one test, on either engine.

use std::future::Future;
use std::path::Path;

use std::collections::BTreeMap;

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use vexil_server::server::SQLITE_FILE;
use vexil_server::storage::Storage;

/// Connections of a storage handle opened by [`TestDatabase::open`]: the storage suite's
/// tests need a few at once, and many such tests run in parallel on one Postgres.
const STORAGE_CONNECTIONS: u32 = 5;

/// A database of its own for one test: a SQLite file in a temporary folder, or a database
/// named by [`crate::unique`] on the test Postgres. It is removed by [`TestDatabase::remove`],
/// or when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    /// The folder holding the SQLite file (a server's data folder when one runs on it),
    /// deleted on drop.
    Sqlite(tempfile::TempDir),
    /// The database to drop, and the URL of the server's maintenance database.
    Postgres {
        admin_url: String,
        database: String,
        removed: bool,
    },
    /// A Postgres database someone else created and removes.
    Borrowed { url: String },
}

impl TestDatabase {
    /// An empty folder for a SQLite database (the file is created when first opened).
    pub fn sqlite() -> TestDatabase {
        TestDatabase {
            backend: Backend::Sqlite(tempfile::tempdir().expect("temporary folder")),
        }
    }

    /// A fresh database on the test Postgres (`VEXIL_TEST_DATABASE_URL`); `None` only when
    /// `VEXIL_TEST_SKIP_POSTGRES=1` asks to skip, and a panic otherwise when the variable is
    /// not set.
    pub async fn postgres() -> Option<TestDatabase> {
        let admin_url = postgres_admin_url()?;
        // The nanoseconds keep names apart from a database left behind by an earlier run
        // whose process had the same id.
        let database = format!(
            "{}_{}",
            crate::unique("vexil_test"),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|err| {
                panic!("cannot reach the test Postgres at VEXIL_TEST_DATABASE_URL: {err}")
            });
        sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        Some(TestDatabase {
            backend: Backend::Postgres {
                admin_url,
                database,
                removed: false,
            },
        })
    }

    /// The Postgres database at `url`, which someone else created and removes (a
    /// [`crate::ReplicatedPostgres`] primary, say): [`TestDatabase::remove`] leaves it be.
    pub fn postgres_at(url: &str) -> TestDatabase {
        TestDatabase {
            backend: Backend::Borrowed { url: url.into() },
        }
    }

    /// The database's URL: `sqlite:<folder>/vexil.db` or the Postgres database's URL.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Sqlite(dir) => format!("sqlite:{}", dir.path().join(SQLITE_FILE).display()),
            Backend::Postgres {
                admin_url,
                database,
                ..
            } => replace_database(admin_url, database),
            Backend::Borrowed { url } => url.clone(),
        }
    }

    /// How many rows of each table hold `needle` anywhere in their text (tables with none
    /// left out): a check, from outside the storage layer, that something is gone from
    /// every table, including tables added after the check was written.
    pub async fn rows_mentioning(&self, needle: &str) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        match &self.backend {
            Backend::Sqlite(_) => {
                let mut db = SqliteConnection::connect(&self.url())
                    .await
                    .expect("open sqlite");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut db)
                .await
                .expect("list tables");
                for table in tables {
                    let columns: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
                            .bind(&table)
                            .fetch_all(&mut db)
                            .await
                            .expect("list columns");
                    let any = columns
                        .iter()
                        .map(|c| format!("instr(CAST(\"{c}\" AS TEXT), ?1) > 0"))
                        .collect::<Vec<_>>()
                        .join(" OR ");
                    let count: i64 =
                        sqlx::query(&format!("SELECT COUNT(*) FROM \"{table}\" WHERE {any}"))
                            .bind(needle)
                            .fetch_one(&mut db)
                            .await
                            .expect("scan table")
                            .get(0);
                    counts.insert(table, count);
                }
                db.close().await.ok();
            }
            Backend::Postgres { .. } | Backend::Borrowed { .. } => {
                let mut db = PgConnection::connect(&self.url())
                    .await
                    .expect("open postgres");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
                )
                .fetch_all(&mut db)
                .await
                .expect("list tables");
                for table in tables {
                    let count: i64 = sqlx::query(&format!(
                        "SELECT COUNT(*) FROM \"{table}\" x WHERE strpos(CAST(x AS TEXT), $1) > 0"
                    ))
                    .bind(needle)
                    .fetch_one(&mut db)
                    .await
                    .expect("scan table")
                    .get(0);
                    counts.insert(table, count);
                }
                db.close().await.ok();
            }
        }
        counts.retain(|_, count| *count > 0);
        counts
    }

    /// Opens a storage handle on the database (applying the migrations).
    pub async fn open(&self) -> Storage {
        match &self.backend {
            Backend::Sqlite(dir) => Storage::open_sqlite(&dir.path().join(SQLITE_FILE))
                .await
                .expect("open sqlite storage"),
            Backend::Postgres { .. } | Backend::Borrowed { .. } => {
                Storage::connect_with(&self.url(), STORAGE_CONNECTIONS)
                    .await
                    .expect("open postgres storage")
            }
        }
    }

    /// Runs a test body against a storage handle, closes it and removes the database, even
    /// when the body panics (the panic is then passed on).
    pub async fn run<F, Fut>(self, test: F)
    where
        F: FnOnce(Storage) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let storage = self.open().await;
        let outcome = tokio::spawn(test(storage.clone())).await;
        storage.close().await;
        self.remove().await;
        if let Err(err) = outcome {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
            panic!("test task failed: {err}");
        }
    }

    /// Removes the database now (a SQLite folder is deleted, a Postgres database dropped,
    /// closing any connection left).
    pub async fn remove(mut self) {
        if let Backend::Postgres {
            admin_url,
            database,
            removed,
        } = &mut self.backend
        {
            drop_postgres_database(admin_url, database).await;
            *removed = true;
        }
    }

    /// The folder of the SQLite file, `None` on Postgres.
    pub(crate) fn sqlite_folder(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(dir) => Some(dir.path()),
            Backend::Postgres { .. } | Backend::Borrowed { .. } => None,
        }
    }
}

impl Drop for TestDatabase {
    /// A test that panicked before removing its Postgres database drops it here, so that
    /// failed runs do not pile databases up; the work runs on a thread of its own because a
    /// drop cannot wait on the test's runtime.
    fn drop(&mut self) {
        if let Backend::Postgres {
            admin_url,
            database,
            removed: false,
        } = &self.backend
        {
            let (admin_url, database) = (admin_url.clone(), database.clone());
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(drop_postgres_database(&admin_url, &database));
                }
            });
            let _ = dropped.join();
        }
    }
}

/// Drops `database` (closing its connections) through the maintenance database at
/// `admin_url`; nothing when the server cannot be reached.
pub async fn drop_postgres_database(admin_url: &str, database: &str) {
    if let Ok(mut admin) = PgConnection::connect(admin_url).await {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        admin.close().await.ok();
    }
}

/// The test Postgres's URL; `None` when skipping was asked for.
fn postgres_admin_url() -> Option<String> {
    match std::env::var("VEXIL_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("VEXIL_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipped: VEXIL_TEST_SKIP_POSTGRES=1");
            None
        }
        Err(_) => panic!(
            "VEXIL_TEST_DATABASE_URL is not set, so the Postgres tests cannot run. Start a test \
             Postgres with `eval \"$(scripts/services.sh start)\"`, or set \
             VEXIL_TEST_SKIP_POSTGRES=1 to skip them knowingly."
        ),
    }
}

/// `url` with its database name replaced by `database`.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host}/{database}?{query}"),
        None => format!("{host}/{database}"),
    }
}

#[test]
fn database_url_replaces_the_name() {
    assert_eq!(
        replace_database("postgres://postgres@127.0.0.1:55432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:55432/t1"
    );
    assert_eq!(
        replace_database("postgres://h:1", "t1"),
        "postgres://h:1/t1"
    );
    assert_eq!(
        replace_database("postgres://h/db?sslmode=disable", "t1"),
        "postgres://h/t1?sslmode=disable"
    );
}
