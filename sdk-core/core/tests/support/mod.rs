//! A real vexil-server for the client tests: in process, on SQLite in a temporary folder,
//! on a loopback port it keeps across restarts.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tonic::Request;
use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_server::live::LiveSettings;
use vexil_server::server::{self, ServeOptions, Settings};

pub const PROJECT: &str = "default";
pub const ENV: &str = "production";

pub struct TestServer {
    pub addr: SocketAddr,
    pub credentials: Value,
    settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        let settings = Settings {
            data_dir: dir.path().join("data"),
            database_url: None,
            jwt_secret: Some("client-tests-secret-0123456789".into()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut server = TestServer {
            addr,
            credentials: Value::Null,
            settings,
            stop: None,
            task: None,
            _dir: dir,
        };
        server.serve(listener).await;
        let text = std::fs::read_to_string(server.settings.data_dir.join(server::CREDENTIALS_FILE))
            .expect("credentials");
        server.credentials = serde_json::from_str(&text).expect("json");
        server
    }

    async fn serve(&mut self, listener: tokio::net::TcpListener) {
        let prepared = server::prepare(&self.settings).await.expect("prepare");
        let (stop, stopped) = oneshot::channel::<()>();
        let live = LiveSettings {
            heartbeat_interval: Duration::from_millis(500),
            version_check_interval: Duration::from_millis(500),
            ..LiveSettings::default()
        };
        self.task = Some(tokio::spawn(server::serve_with(
            prepared,
            listener,
            None,
            ServeOptions { tls: None, live },
            async {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
    }

    /// Stops the server (its streams end, its port closes).
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) if attempts < 50 => {
                    attempts += 1;
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("cannot bind {} again: {err}", self.addr),
            }
        };
        self.serve(listener).await;
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.settings.data_dir.clone()
    }

    pub fn token(&self) -> String {
        self.credentials["admin_token"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn sdk_key(&self, kind: &str) -> String {
        self.credentials["sdk_keys"][ENV][kind]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        let channel = Channel::from_shared(self.endpoint())
            .unwrap()
            .connect()
            .await
            .expect("connect");
        AdminServiceClient::new(channel)
    }

    /// Creates a bool flag (false, true; off serves false, on serves true) visible to client
    /// keys when `client_side`.
    pub async fn create_bool_flag(&self, key: &str, client_side: bool) {
        self.admin()
            .await
            .create_flag(self.authed(pb::CreateFlagRequest {
                project_key: PROJECT.into(),
                key: key.into(),
                name: key.into(),
                kind: pb::FlagKind::Bool as i32,
                variations: vec![
                    vexil_proto::json::json_to_value(&json!(false)),
                    vexil_proto::json::json_to_value(&json!(true)),
                ],
                client_side,
                off_variation: Some(0),
                fallthrough: Some(pb::Serve {
                    kind: Some(pb::serve::Kind::Variation(1)),
                    experiment: None,
                }),
                ..Default::default()
            }))
            .await
            .expect("create flag");
    }

    pub async fn toggle(&self, key: &str, on: bool) {
        let mut admin = self.admin().await;
        let flag = admin
            .get_flag(self.authed(pb::GetFlagRequest {
                project_key: PROJECT.into(),
                key: key.into(),
                environment_keys: vec![ENV.into()],
            }))
            .await
            .expect("get flag")
            .into_inner();
        admin
            .toggle_flag(self.authed(pb::ToggleFlagRequest {
                project_key: PROJECT.into(),
                environment_key: ENV.into(),
                key: key.into(),
                expected_version: flag.configurations[0].version,
                on,
            }))
            .await
            .expect("toggle");
    }

    pub fn authed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token()).parse().unwrap(),
        );
        request
    }
}

/// Polls `check` (a blocking call is fine) until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestServer {
    /// The server's storage, opened beside it (SQLite in WAL mode allows both).
    pub async fn storage(&self) -> vexil_server::storage::Storage {
        vexil_server::storage::Storage::open_sqlite(&self.data_dir().join(server::SQLITE_FILE))
            .await
            .expect("open the server's database")
    }

    /// Creates a bool flag whose fallthrough is a 50/50 experiment, and turns it on.
    pub async fn create_experiment_flag(&self, key: &str, experiment: &str) {
        self.admin()
            .await
            .create_flag(self.authed(pb::CreateFlagRequest {
                project_key: PROJECT.into(),
                key: key.into(),
                name: key.into(),
                kind: pb::FlagKind::Bool as i32,
                variations: vec![
                    vexil_proto::json::json_to_value(&json!(false)),
                    vexil_proto::json::json_to_value(&json!(true)),
                ],
                off_variation: Some(0),
                fallthrough: Some(pb::Serve {
                    kind: Some(pb::serve::Kind::Rollout(pb::Rollout {
                        variations: vec![
                            pb::WeightedVariation {
                                variation: 0,
                                weight: 50_000,
                            },
                            pb::WeightedVariation {
                                variation: 1,
                                weight: 50_000,
                            },
                        ],
                        bucket_by: None,
                        algorithm: pb::BucketingAlgorithm::Murmur3V1 as i32,
                    })),
                    experiment: Some(pb::ExperimentAllocation {
                        key: experiment.into(),
                        traffic_allocation: None,
                        layer: String::new(),
                        layer_offset: 0,
                    }),
                }),
                ..Default::default()
            }))
            .await
            .expect("create experiment flag");
        self.toggle(key, true).await;
    }
}
