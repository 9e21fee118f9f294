//! A fresh storage per test, on either engine.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use vexil_server::storage::Storage;

/// A storage of its own for one test, removed when the test ends.
pub struct TestDb {
    storage: Storage,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The temporary folder holding the SQLite file, deleted on drop.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// The Postgres database to drop, and the URL of the server's maintenance database.
    Postgres { admin_url: String, database: String },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary folder");
        let storage = Storage::open_sqlite(&dir.path().join("vexil.db"))
            .await
            .expect("open sqlite storage");
        TestDb {
            storage,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh database on the test Postgres; `None` only when skipping was asked for.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("VEXIL_TEST_DATABASE_URL") else {
            if std::env::var("VEXIL_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
                eprintln!("skipped: VEXIL_TEST_SKIP_POSTGRES=1");
                return None;
            }
            panic!(
                "VEXIL_TEST_DATABASE_URL is not set, so the Postgres half of the storage suite \
                 cannot run. Start a test Postgres with `eval \"$(scripts/services.sh start)\"`, \
                 or set VEXIL_TEST_SKIP_POSTGRES=1 to skip it knowingly."
            );
        };
        let database = format!(
            "vexil_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
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
        let storage = Storage::connect_with(&database_url(&admin_url, &database), 5)
            .await
            .expect("open postgres storage");
        Some(TestDb {
            storage,
            cleanup: Cleanup::Postgres {
                admin_url,
                database,
            },
        })
    }

    /// Runs a test body against the storage, then removes the storage, even when the body
    /// panics (the panic is then passed on).
    pub async fn run<F, Fut>(self, test: F)
    where
        F: FnOnce(Storage) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(test(self.storage.clone())).await;
        self.storage.close().await;
        if let Cleanup::Postgres {
            admin_url,
            database,
        } = &self.cleanup
            && let Ok(mut admin) = PgConnection::connect(admin_url).await
        {
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
            admin.close().await.ok();
        }
        if let Err(err) = outcome {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
            panic!("test task failed: {err}");
        }
    }
}

/// `url` with its database name replaced by `database`.
fn database_url(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}

#[test]
fn database_url_replaces_the_name() {
    assert_eq!(
        database_url("postgres://postgres@127.0.0.1:55432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:55432/t1"
    );
    assert_eq!(database_url("postgres://h:1", "t1"), "postgres://h:1/t1");
    assert_eq!(
        database_url("postgres://h/db?sslmode=disable", "t1"),
        "postgres://h/t1?sslmode=disable"
    );
}
