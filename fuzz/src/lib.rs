//! What the fuzz targets share: the server's services in this process (no network), on a
//! SQLite database in a temporary folder, with the credentials of its first start; and the
//! rule that a refusal must be a refusal (a status naming the problem), never a failure of
//! the server.

use std::sync::{Arc, OnceLock};

use tonic::{Code, Request, Status};
use vexil_server::auth::Authenticator;
use vexil_server::live::{Hub, LiveSettings};
use vexil_server::metrics::Metrics;
use vexil_server::rate_limit::AdminRateLimit;
use vexil_server::sdk_auth::SdkAuth;
use vexil_server::server::{Settings, prepare};
use vexil_server::services::admin::Admin;
use vexil_server::services::evaluation::EvaluationApi;
use vexil_server::services::events::EventApi;

pub use vexil_proto::v1 as pb;

/// A server's services, served in this process.
pub struct Served {
    pub runtime: tokio::runtime::Runtime,
    pub admin: Admin,
    pub evaluation: EvaluationApi,
    pub events: EventApi,
    pub http: axum::Router,
    pub root_token: String,
    pub server_key: String,
    pub client_key: String,
    _data: tempfile::TempDir,
}

/// The services, started at the first call.
pub fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(start)
}

fn start() -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("temporary folder");
    let settings = Settings {
        data_dir: data.path().to_owned(),
        database_url: None,
        database_replica_url: None,
        jwt_secret: None,
    };
    let (admin, evaluation, events, http, credentials) = runtime.block_on(async {
        let prepared = prepare(&settings).await.expect("prepare the data folder");
        let credentials: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(prepared.credentials.expect("first start"))
                .expect("credentials"),
        )
        .expect("credentials JSON");
        let storage = prepared.storage;
        // No rate limit: the fuzzer calls far faster than any token may.
        let auth = Authenticator::with_rate_limit(
            prepared.signer,
            storage.clone(),
            AdminRateLimit {
                per_second: 0.0,
                burst: 0.0,
            },
        );
        let hub = Hub::start(storage.clone(), Metrics::new(), LiveSettings::default());
        let sdk_auth = Arc::new(SdkAuth::new(storage.clone()));
        (
            Admin::new(storage, auth).with_hub(hub.clone()),
            EvaluationApi::new(hub.clone(), sdk_auth.clone()),
            EventApi::new(hub.clone(), sdk_auth.clone()),
            vexil_server::http::router(hub, sdk_auth),
            credentials,
        )
    });
    let text = |path: &[&str]| {
        path.iter()
            .fold(&credentials, |value, name| &value[*name])
            .as_str()
            .expect("a credential")
            .to_owned()
    };
    Served {
        root_token: text(&["admin_token", "token"]),
        server_key: text(&["sdk_keys", "production", "server"]),
        client_key: text(&["sdk_keys", "production", "client"]),
        runtime,
        admin,
        evaluation,
        events,
        http,
        _data: data,
    }
}

/// A request carrying `secret` as its bearer credential.
pub fn authed<T>(message: T, secret: &str) -> Request<T> {
    let mut request = Request::new(message);
    vexil_proto::authorize(&mut request, secret).expect("header value");
    request
}

/// Fails the run when a call ended in a server failure rather than an answer or a refusal.
pub fn refused_cleanly<T>(rpc: &str, result: &Result<T, Status>) {
    if let Err(status) = result {
        assert!(
            !matches!(status.code(), Code::Internal | Code::Unknown),
            "{rpc} failed instead of refusing: {status:?}"
        );
        assert!(
            !status.message().is_empty(),
            "{rpc}: a refusal without a message"
        );
    }
}
