//! Server instances for the live tests: one on SQLite, or several sharing a fresh Postgres
//! database and a Redis (the test Redis, or a private `redis-server` a test can stop).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::Request;
use tonic::transport::Channel;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::evaluation_service_client::EvaluationServiceClient;
use vexil_proto::v1::sync_service_client::SyncServiceClient;
use vexil_server::live::LiveSettings;
use vexil_server::server::{self, ServeOptions, Settings};
use vexil_server::storage::Storage;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test of this run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One running instance.
pub struct Instance {
    pub addr: SocketAddr,
    pub http: SocketAddr,
    /// The instance's own storage handle: writes through it notify the instance.
    pub storage: Storage,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Instances sharing one database, and the first start's credentials.
pub struct Cluster {
    pub instances: Vec<Instance>,
    pub credentials: Value,
    postgres: Option<(String, String)>,
    /// The database URL and live settings shared by the instances.
    database_url: Option<String>,
    live: LiveSettings,
}

pub const JWT_SECRET: &str = "live-tests-secret-0123456789";

impl Cluster {
    /// One instance on SQLite, alone.
    pub async fn sqlite(live: LiveSettings) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary folder");
        let settings = Settings {
            data_dir: dir.path().join("data"),
            database_url: None,
            jwt_secret: Some(JWT_SECRET.into()),
        };
        let instance = Instance::start(&settings, live.clone(), dir).await;
        let credentials = read_credentials(&settings.data_dir);
        Cluster {
            instances: vec![instance],
            credentials,
            postgres: None,
            database_url: None,
            live,
        }
    }

    /// `count` instances on a fresh Postgres database; `None` when skipping was asked for.
    pub async fn postgres(count: usize, live: LiveSettings) -> Option<Cluster> {
        let admin_url = postgres_url()?;
        let database = unique("vexil_live");
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("reach the test Postgres");
        sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = replace_database(&admin_url, &database);
        let mut instances = Vec::new();
        let mut credentials = Value::Null;
        for i in 0..count {
            let dir = tempfile::tempdir().expect("temporary folder");
            let settings = Settings {
                data_dir: dir.path().join("data"),
                database_url: Some(url.clone()),
                jwt_secret: Some(JWT_SECRET.into()),
            };
            instances.push(Instance::start(&settings, live.clone(), dir).await);
            if i == 0 {
                credentials = read_credentials(&settings.data_dir);
            }
        }
        Some(Cluster {
            instances,
            credentials,
            postgres: Some((admin_url, database)),
            database_url: Some(url),
            live,
        })
    }

    /// Starts one more instance on the cluster's database; returns its index.
    pub async fn add_instance(&mut self) -> usize {
        let dir = tempfile::tempdir().expect("temporary folder");
        let settings = Settings {
            data_dir: dir.path().join("data"),
            database_url: self.database_url.clone(),
            jwt_secret: Some(JWT_SECRET.into()),
        };
        self.instances
            .push(Instance::start(&settings, self.live.clone(), dir).await);
        self.instances.len() - 1
    }

    pub fn root_token(&self) -> String {
        self.credentials["admin_token"]["token"]
            .as_str()
            .expect("admin token")
            .to_owned()
    }

    pub fn sdk_key(&self, env: &str, kind: &str) -> String {
        self.credentials["sdk_keys"][env][kind]
            .as_str()
            .expect("sdk key")
            .to_owned()
    }

    pub async fn stop(mut self) {
        for instance in self.instances.drain(..) {
            instance.stop().await;
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

fn read_credentials(data_dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(data_dir.join(server::CREDENTIALS_FILE))
        .expect("credentials written at first start");
    serde_json::from_str(&text).expect("credentials are JSON")
}

impl Instance {
    async fn start(settings: &Settings, live: LiveSettings, dir: tempfile::TempDir) -> Instance {
        let prepared = server::prepare(settings).await.expect("prepare");
        let storage = prepared.storage.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind grpc");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let addr = listener.local_addr().expect("address");
        let http_addr = http.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve_with(
            prepared,
            listener,
            Some(http),
            ServeOptions { tls: None, live },
            async {
                let _ = stopped.await;
            },
        ));
        Instance {
            addr,
            http: http_addr,
            storage,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    pub async fn evaluation(&self) -> EvaluationServiceClient<Channel> {
        EvaluationServiceClient::new(self.channel().await)
    }

    pub async fn sync(&self) -> SyncServiceClient<Channel> {
        SyncServiceClient::new(self.channel().await)
    }

    /// A plain HTTP/1.1 GET on the instance's HTTP port.
    pub async fn http_get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_get(self.http, path, headers).await
    }

    /// The value of a metric line (`name{labels}`) of `/metrics`, 0 when absent.
    pub async fn metric(&self, line_start: &str) -> f64 {
        let response = self.http_get("/metrics", &[]).await;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(line_start)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|value| value.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the server stops within 20 s")
                .expect("server task")
                .expect("server ran");
        }
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send http");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read http");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub fn postgres_url() -> Option<String> {
    match std::env::var("VEXIL_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("VEXIL_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipped: VEXIL_TEST_SKIP_POSTGRES=1");
            None
        }
        Err(_) => panic!(
            "VEXIL_TEST_DATABASE_URL is not set. Start the test services with \
             `eval \"$(scripts/services.sh start)\"`, or set VEXIL_TEST_SKIP_POSTGRES=1 to skip \
             the multi-instance tests knowingly."
        ),
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

/// A `redis-server` of the test's own, on a free port, that the test can stop and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = PrivateRedis {
            port,
            child: None,
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn restart(&mut self) {
        let binary =
            std::env::var("VEXIL_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(&binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {binary} ({err}); scripts/services.sh installs Redis, or set \
                     VEXIL_TEST_REDIS_SERVER to its path"
                )
            });
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (connections drop at once, as in a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request carrying `secret` as its bearer credential.
pub fn authed<T>(message: T, secret: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {secret}").parse().expect("ascii metadata"),
    );
    request
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Instance {
    pub async fn events(
        &self,
    ) -> vexil_proto::v1::event_service_client::EventServiceClient<Channel> {
        vexil_proto::v1::event_service_client::EventServiceClient::new(self.channel().await)
    }
}
