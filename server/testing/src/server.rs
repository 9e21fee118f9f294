//! A real server in process, on loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::evaluation_service_client::EvaluationServiceClient;
use vexil_proto::v1::event_service_client::EventServiceClient;
use vexil_proto::v1::sync_service_client::SyncServiceClient;
use vexil_server::live::LiveSettings;
use vexil_server::server::{self, ServeOptions, Settings};
use vexil_server::storage::Storage;

use crate::database::TestDatabase;
use crate::http::{HttpResponse, http_get};

/// How long a stopping server may take to end its streams and calls.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`TestServer::ready_client`] waits for a client's first data.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How a [`TestServer`] runs.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Streams, Redis and version checks.
    pub live: LiveSettings,
    /// Whether to serve the HTTP endpoints (snapshot, health, metrics) on a port of their own.
    pub http: bool,
    /// The token-signing secret; `None`: generated at first start and kept in the data
    /// folder, as in production. Servers sharing a database need the same secret.
    pub jwt_secret: Option<String>,
    /// Each admin token's rate limit (the server's default when not set).
    pub admin_rate_limit: vexil_server::rate_limit::AdminRateLimit,
    /// Calls served at once (the server's default when not set; 0: no limit).
    pub max_inflight_requests: Option<usize>,
    /// How often the server watches its running experiments for alerts (the server's
    /// default when not set).
    pub experiment_watch_interval: Option<std::time::Duration>,
    /// How often the server looks for due scheduled changes (the server's default when not
    /// set).
    pub schedule_interval: Option<std::time::Duration>,
    /// How long a guarded ramp's guardrails may go unread between steps (the server's
    /// default when not set).
    pub ramp_guard_interval: Option<std::time::Duration>,
    /// A Postgres read replica of the server's database (see [`crate::ReplicatedPostgres`]).
    pub database_replica_url: Option<String>,
}

/// A running `vexil-server` on loopback (gRPC, and HTTP when asked for), in the test's
/// runtime. Stop it with [`TestServer::stop`]; dropped, it is told to stop and its database
/// is removed.
#[derive(Debug)]
pub struct TestServer {
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The HTTP address, when [`ServerOptions::http`] asked for one.
    pub http: Option<SocketAddr>,
    /// The data folder: credentials file, signing secret and, on SQLite, the database.
    pub data_dir: PathBuf,
    /// The server's own storage handle: writes through it notify the server. A restart
    /// opens a new one.
    pub storage: Storage,
    /// The first start's credentials file (`admin_token`, `sdk_keys`), as JSON.
    pub credentials: Value,
    settings: Settings,
    options: ServerOptions,
    running: Option<Running>,
    /// The database, when this server owns it (a cluster owns its instances' database).
    database: Option<TestDatabase>,
    database_url: String,
    /// A data folder of the server's own, when the database is not a SQLite folder.
    _folder: Option<tempfile::TempDir>,
}

#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// A server with the default options on a fresh SQLite database.
    pub async fn sqlite() -> TestServer {
        TestServer::start(TestDatabase::sqlite(), ServerOptions::default()).await
    }

    /// A server with the default options on a fresh Postgres database; `None` only when
    /// skipping Postgres was asked for (see [`TestDatabase::postgres`]).
    pub async fn postgres() -> Option<TestServer> {
        let database = TestDatabase::postgres().await?;
        Some(TestServer::start(database, ServerOptions::default()).await)
    }

    /// Runs `check` against a new server on SQLite, then stops the server.
    pub async fn check_on_sqlite(check: impl AsyncFnOnce(&TestServer)) {
        let server = TestServer::sqlite().await;
        check(&server).await;
        server.stop().await;
    }

    /// Runs `check` against a new server on Postgres, then stops the server; nothing when
    /// skipping Postgres was asked for.
    pub async fn check_on_postgres(check: impl AsyncFnOnce(&TestServer)) {
        if let Some(server) = TestServer::postgres().await {
            check(&server).await;
            server.stop().await;
        }
    }

    /// A server on `database`, which it removes when stopped.
    pub async fn start(database: TestDatabase, options: ServerOptions) -> TestServer {
        let mut server = TestServer::start_on(&database, options, None).await;
        server.database = Some(database);
        server
    }

    /// A server on `database` owned by someone else. On SQLite the data folder is the
    /// database's folder; on Postgres it is a folder of the server's own. `credentials` is
    /// used when this start is not the database's first (which alone writes the file).
    pub(crate) async fn start_on(
        database: &TestDatabase,
        options: ServerOptions,
        credentials: Option<&Value>,
    ) -> TestServer {
        let (data_dir, folder) = match database.sqlite_folder() {
            Some(folder) => (folder.to_path_buf(), None),
            None => {
                let folder = tempfile::tempdir().expect("temporary folder");
                (folder.path().to_path_buf(), Some(folder))
            }
        };
        let settings = Settings {
            data_dir: data_dir.clone(),
            database_url: database.sqlite_folder().is_none().then(|| database.url()),
            database_replica_url: options.database_replica_url.clone(),
            jwt_secret: options.jwt_secret.clone(),
        };
        let grpc = bind("127.0.0.1:0".parse().expect("address")).await;
        let http = match options.http {
            true => Some(bind("127.0.0.1:0".parse().expect("address")).await),
            false => None,
        };
        let addr = grpc.local_addr().expect("local address");
        let http_addr = http
            .as_ref()
            .map(|l| l.local_addr().expect("local address"));
        let prepared = server::prepare(&settings)
            .await
            .expect("prepare the server");
        let credentials = match prepared.credentials.is_some() {
            true => read_credentials(&data_dir),
            false => credentials.cloned().unwrap_or(Value::Null),
        };
        let mut server = TestServer {
            addr,
            http: http_addr,
            data_dir,
            storage: prepared.storage.clone(),
            credentials,
            settings,
            options,
            running: None,
            database: None,
            database_url: database.url(),
            _folder: folder,
        };
        server.running = Some(server.serve(prepared, grpc, http));
        server
    }

    fn serve(
        &self,
        prepared: server::Prepared,
        grpc: TcpListener,
        http: Option<TcpListener>,
    ) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve_with(
            prepared,
            grpc,
            http,
            ServeOptions {
                tls: None,
                live: self.options.live.clone(),
                admin_rate_limit: self.options.admin_rate_limit,
                max_inflight_requests: self
                    .options
                    .max_inflight_requests
                    .unwrap_or(vexil_server::overload::DEFAULT_MAX_INFLIGHT_REQUESTS),
                experiment_watch_interval: Some(
                    self.options
                        .experiment_watch_interval
                        .unwrap_or(vexil_server::services::experiments::DEFAULT_WATCH_INTERVAL),
                ),
                schedule_interval: Some(
                    self.options
                        .schedule_interval
                        .unwrap_or(vexil_server::services::admin::DEFAULT_SCHEDULE_INTERVAL),
                ),
                ramp_guard_interval: self
                    .options
                    .ramp_guard_interval
                    .unwrap_or(vexil_server::services::admin::DEFAULT_RAMP_GUARD_INTERVAL),
            },
            async {
                let _ = stopped.await;
            },
        ));
        Running { stop, task }
    }

    /// Stops the server (its streams end, its ports close) and keeps its data for
    /// [`TestServer::restart`].
    pub async fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            let _ = tokio::time::timeout(STOP_TIMEOUT, running.task).await;
        }
    }

    /// Stops the server the way a crash would: its tasks are dropped wherever they are (the
    /// database rolls back a transaction in flight), nothing is shut down in order. Its data
    /// is kept for [`TestServer::restart`].
    pub async fn crash(&mut self) {
        if let Some(running) = self.running.take() {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Starts the server again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill().await;
        let grpc = rebind(self.addr).await;
        let http = match self.http {
            Some(addr) => Some(rebind(addr).await),
            None => None,
        };
        let prepared = server::prepare(&self.settings)
            .await
            .expect("prepare the server");
        self.storage = prepared.storage.clone();
        self.running = Some(self.serve(prepared, grpc, http));
    }

    /// Stops the server gracefully, checking that it ran and stopped without error, then
    /// removes its database when it owns it.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            tokio::time::timeout(STOP_TIMEOUT, running.task)
                .await
                .expect("the server stops within 20 s")
                .expect("server task")
                .expect("server ran");
        }
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }

    /// `http://<gRPC address>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of the server's database (`sqlite:<file>` or the Postgres database's), for
    /// tests that need state no RPC can produce, such as rows dated in the past.
    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    /// The first start's admin token (admin on every project).
    pub fn root_token(&self) -> String {
        self.credentials["admin_token"]["token"]
            .as_str()
            .expect("admin token in credentials")
            .to_owned()
    }

    /// The first start's SDK key of `kind` (`server`, `client`, `mobile`) for `env`
    /// (`development` or `production`).
    pub fn sdk_key(&self, env: &str, kind: &str) -> String {
        self.credentials["sdk_keys"][env][kind]
            .as_str()
            .expect("sdk key in credentials")
            .to_owned()
    }

    /// A new connection to the gRPC port.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// An AdminService client on a new connection.
    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// An EvaluationService client on a new connection.
    pub async fn evaluation(&self) -> EvaluationServiceClient<Channel> {
        EvaluationServiceClient::new(self.channel().await)
    }

    /// A SyncService client on a new connection.
    pub async fn sync(&self) -> SyncServiceClient<Channel> {
        SyncServiceClient::new(self.channel().await)
    }

    /// An EventService client on a new connection.
    pub async fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel().await)
    }

    /// A plain HTTP/1.1 GET on the server's HTTP port (which [`ServerOptions::http`] must
    /// have asked for).
    pub async fn http_get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let addr = self
            .http
            .expect("the server serves HTTP (ServerOptions::http)");
        http_get(addr, path, headers).await
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

    /// Creates a bool flag in [`crate::PROJECT`] (see [`crate::create_bool_flag`]).
    pub async fn create_bool_flag(&self, key: &str, client_side: bool) {
        let mut admin = self.admin().await;
        crate::create_bool_flag(&mut admin, &self.root_token(), key, client_side).await;
    }

    /// Creates an experiment flag and turns it on in [`crate::ENV`] (see
    /// [`crate::create_experiment_flag`]).
    pub async fn create_experiment_flag(&self, key: &str, experiment: &str) {
        let mut admin = self.admin().await;
        crate::create_experiment_flag(&mut admin, &self.root_token(), key, experiment).await;
    }

    /// Replaces [`crate::ENV`]'s flags and segments with `ruleset` (the engine's ruleset JSON,
    /// `{"flags": [...], "segments": [...]}`) straight in the store; returns the environment
    /// version after it (the live rulesets reach it asynchronously).
    pub async fn import_ruleset(&self, ruleset: serde_json::Value) -> i64 {
        let ruleset: vexil_server::storage::RulesetData =
            serde_json::from_value(ruleset).expect("a ruleset the model reads");
        self.storage
            .import_environment("tests", crate::PROJECT, crate::ENV, &ruleset, None)
            .await
            .expect("import")
            .version
    }

    /// Turns a flag on or off in [`crate::ENV`].
    pub async fn toggle(&self, key: &str, on: bool) {
        let mut admin = self.admin().await;
        crate::toggle(&mut admin, &self.root_token(), key, on).await;
    }

    /// A client for the server's `kind` SDK key of `env`, with the configuration `configure`
    /// makes of the default one (key and endpoint set), once it is initialized: panics
    /// unless its status is `Ready` within 20 s. It waits on a blocking thread, so that any
    /// runtime flavour works.
    pub async fn ready_client(
        &self,
        env: &str,
        kind: &str,
        configure: impl FnOnce(vexil_core::Config) -> vexil_core::Config,
    ) -> vexil_core::Client {
        let config = configure(
            vexil_core::Config::new(self.sdk_key(env, kind)).with_endpoint(self.endpoint()),
        );
        let waited = tokio::task::spawn_blocking(move || {
            let client = vexil_core::Client::new(config).expect("client");
            let status = client.wait_for_initialization(READY_TIMEOUT);
            assert_eq!(status, vexil_core::Status::Ready, "the client is ready");
            client
        })
        .await;
        match waited {
            Ok(client) => client,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("client task failed: {err}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|err| panic!("bind {addr}: {err}"))
}

/// Binds `addr` again, waiting for the previous listener's port to be released.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("cannot bind {addr} again: {err}"),
        }
    }
}

fn read_credentials(data_dir: &Path) -> Value {
    let text = std::fs::read_to_string(data_dir.join(server::CREDENTIALS_FILE))
        .expect("credentials file written at first start");
    serde_json::from_str(&text).expect("credentials are JSON")
}

/// A [`TestServer`] on a runtime of its own, for synchronous tests (such as those running a
/// command against it). Dropped, it stops the server and then the runtime.
#[derive(Debug)]
pub struct BlockingServer {
    server: Option<TestServer>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingServer {
    /// A server with the default options on a fresh SQLite database.
    pub fn sqlite() -> BlockingServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(TestServer::sqlite());
        BlockingServer {
            server: Some(server),
            runtime: Some(runtime),
        }
    }

    /// Runs `future` to completion on the server's runtime (for a gRPC call, say).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("runtime").block_on(future)
    }
}

impl std::ops::Deref for BlockingServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        self.server.as_ref().expect("server")
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        if let (Some(mut server), Some(runtime)) = (self.server.take(), self.runtime.take()) {
            runtime.block_on(async {
                server.kill().await;
                drop(server);
            });
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
