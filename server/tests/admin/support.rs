//! A real server on a loopback port for each test, on SQLite in a temporary folder or on a
//! fresh database of the test Postgres.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_server::server::{self, Settings};

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub credentials: Value,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestServer {
    pub async fn sqlite() -> TestServer {
        TestServer::start(None).await
    }

    /// A server on a fresh Postgres database; `None` only when skipping was asked for.
    pub async fn postgres() -> Option<TestServer> {
        let Ok(admin_url) = std::env::var("VEXIL_TEST_DATABASE_URL") else {
            if std::env::var("VEXIL_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
                eprintln!("skipped: VEXIL_TEST_SKIP_POSTGRES=1");
                return None;
            }
            panic!(
                "VEXIL_TEST_DATABASE_URL is not set, so the Postgres end-to-end test cannot run. \
                 Start a test Postgres with `eval \"$(scripts/services.sh start)\"`, or set \
                 VEXIL_TEST_SKIP_POSTGRES=1 to skip it knowingly."
            );
        };
        let database = format!(
            "vexil_admin_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("reach the test Postgres");
        sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = replace_database(&admin_url, &database);
        Some(TestServer::start(Some((url, admin_url, database))).await)
    }

    async fn start(postgres: Option<(String, String, String)>) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        let data_dir = dir.path().join("data");
        let settings = Settings {
            data_dir: data_dir.clone(),
            database_url: postgres.as_ref().map(|(url, _, _)| url.clone()),
            jwt_secret: None,
        };
        let prepared = server::prepare(&settings)
            .await
            .expect("prepare the server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(prepared, listener, None, async {
            let _ = stopped.await;
        }));
        let text = std::fs::read_to_string(data_dir.join(server::CREDENTIALS_FILE))
            .expect("credentials file written at first start");
        TestServer {
            addr,
            data_dir,
            credentials: serde_json::from_str(&text).expect("credentials are JSON"),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
            postgres: postgres.map(|(_, admin, db)| (admin, db)),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the test server")
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// The first start's admin token (admin on every project).
    pub fn root_token(&self) -> String {
        self.credentials["admin_token"]["token"]
            .as_str()
            .expect("admin token in credentials")
            .to_owned()
    }

    pub fn sdk_key(&self, env: &str, kind: &str) -> String {
        self.credentials["sdk_keys"][env][kind]
            .as_str()
            .expect("sdk key in credentials")
            .to_owned()
    }

    /// The URL of the server's database (its Postgres database, or its SQLite file), for
    /// tests that need state no RPC can produce, such as rows dated in the past.
    #[allow(dead_code)]
    pub fn database_url(&self) -> String {
        match &self.postgres {
            Some((admin_url, database)) => replace_database(admin_url, database),
            None => format!(
                "sqlite:{}",
                self.data_dir.join(server::SQLITE_FILE).display()
            ),
        }
    }

    /// Stops the server gracefully and removes its database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
        if let Some((admin_url, database)) = self.postgres.take()
            && let Ok(mut admin) = PgConnection::connect(&admin_url).await
        {
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
            admin.close().await.ok();
        }
    }
}

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

/// A request carrying `token` as its bearer credential.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii metadata"),
    );
    request
}

/// Asserts that a call failed with `code`; returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got a success: {value:?}"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "unexpected status: {}",
                status.message()
            );
            status
        }
    }
}
