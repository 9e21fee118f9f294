//! Putting the server together: storage, first start, signing secret, the live rulesets,
//! the gRPC services (admin, experiments, evaluation, sync, events, health, reflection; the
//! SDK-facing ones also over gRPC-web for browsers) and the HTTP endpoints, until a
//! shutdown signal.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use vexil_proto::v1::admin_service_server::AdminServiceServer;
use vexil_proto::v1::evaluation_service_server::EvaluationServiceServer;
use vexil_proto::v1::event_service_server::EventServiceServer;
use vexil_proto::v1::experiment_service_server::ExperimentServiceServer;
use vexil_proto::v1::sync_service_server::SyncServiceServer;

use crate::auth::{self, Authenticator, Signer};
use crate::browser::{BrowserCors, BrowserLayer};
use crate::limits::MAX_REQUEST_BYTES;
use crate::live::{Hub, LiveSettings};
use crate::metrics::Metrics;
use crate::overload::{DEFAULT_MAX_INFLIGHT_REQUESTS, InflightLayer, InflightLimit};
use crate::rate_limit::AdminRateLimit;
use crate::sdk_auth::SdkAuth;
use crate::services::admin::Admin;
use crate::services::evaluation::EvaluationApi;
use crate::services::events::EventApi;
use crate::services::experiments::ExperimentApi;
use crate::services::sync::SyncApi;
use crate::storage::secrets::generate_sdk_key;
use crate::storage::{
    NewAdminToken, NewEnvironment, NewProject, NewSdkKey, Role, RoleBinding, SdkKeyKind, Storage,
};

/// Name of the first-start credentials file in the data directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// Name of the generated token-signing secret in the data directory.
pub const JWT_SECRET_FILE: &str = "jwt-secret";
/// Name of the embedded SQLite database in the data directory.
pub const SQLITE_FILE: &str = "vexil.db";
/// HTTP/2 pings on idle connections, and how long a ping may go unanswered.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The actor of the first start's audit entries.
const SYSTEM_ACTOR: &str = "system";

/// How often the experiment roll-ups take in new events (a results read also catches up
/// before it reads).
const ANALYTICS_COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A task aborted when this handle is dropped, however the function holding it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the server keeps its state and how it signs tokens.
#[derive(Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `None`: the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// A Postgres read replica of `database_url`, for the reads that tolerate lag.
    pub database_replica_url: Option<String>,
    /// `None`: a secret generated at first start and kept in the data directory.
    pub jwt_secret: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "…"))
            .field(
                "database_replica_url",
                &self.database_replica_url.as_ref().map(|_| "…"),
            )
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A server ready to serve: storage open and migrated, first start done.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub storage: Storage,
    pub signer: Arc<Signer>,
    /// The credentials file written by this start, if it was the first.
    pub credentials: Option<PathBuf>,
}

/// Opens the storage, loads or creates the signing secret, and sets up an empty storage.
pub async fn prepare(settings: &Settings) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let storage = match &settings.database_url {
        Some(url) => Storage::connect(url).await?,
        None => Storage::open_sqlite(&settings.data_dir.join(SQLITE_FILE)).await?,
    };
    let storage = match &settings.database_replica_url {
        Some(url) => storage.with_replica(url)?,
        None => storage,
    };
    let secret = match &settings.jwt_secret {
        Some(secret) => {
            anyhow::ensure!(
                secret.len() >= 16,
                "the jwt secret must be at least 16 characters long"
            );
            secret.as_bytes().to_vec()
        }
        None => auth::load_or_create_secret(&settings.data_dir.join(JWT_SECRET_FILE))?,
    };
    let signer = Arc::new(Signer::new(&secret));
    let credentials = if storage.is_empty().await? {
        let path = settings.data_dir.join(CREDENTIALS_FILE);
        first_start(&storage, &signer, &path).await?;
        tracing::info!(path = %path.display(), "first start: credentials written");
        Some(path)
    } else {
        None
    };
    Ok(Prepared {
        storage,
        signer,
        credentials,
    })
}

/// The first-start credentials file.
#[derive(Debug, Serialize)]
struct Credentials {
    project: String,
    admin_token: TokenCredentials,
    /// Environment key → SDK key kind → secret.
    sdk_keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
struct TokenCredentials {
    id: String,
    principal: String,
    token: String,
}

/// Creates the project `default` with `development` and `production`, an admin token on
/// every project, and server, client and mobile SDK keys for each environment; writes the
/// secrets to `path`, readable by the owner only.
async fn first_start(storage: &Storage, signer: &Signer, path: &Path) -> anyhow::Result<()> {
    let project = "default";
    storage
        .create_project(
            SYSTEM_ACTOR,
            &NewProject {
                key: project.into(),
                name: "Default".into(),
                description: "Created at first start".into(),
            },
        )
        .await?;
    let mut sdk_keys = std::collections::BTreeMap::new();
    for (env, name) in [("development", "Development"), ("production", "Production")] {
        storage
            .create_environment(
                SYSTEM_ACTOR,
                project,
                &NewEnvironment {
                    key: env.into(),
                    name: name.into(),
                    description: String::new(),
                    ..NewEnvironment::default()
                },
            )
            .await?;
        let mut keys = std::collections::BTreeMap::new();
        for kind in [SdkKeyKind::Server, SdkKeyKind::Client, SdkKeyKind::Mobile] {
            let generated =
                generate_sdk_key(kind).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
            storage
                .issue_sdk_key(
                    SYSTEM_ACTOR,
                    project,
                    env,
                    &NewSdkKey {
                        kind,
                        name: format!("{env} {}", kind.as_str()),
                        prefix: generated.prefix.clone(),
                        hash: generated.hash.clone(),
                    },
                )
                .await?;
            keys.insert(kind.as_str().to_owned(), generated.secret);
        }
        sdk_keys.insert(env.to_owned(), keys);
    }
    let principal = "admin";
    let issued = signer.issue(principal, None)?;
    storage
        .create_admin_token(
            SYSTEM_ACTOR,
            &NewAdminToken {
                id: issued.id.clone(),
                principal: principal.into(),
                description: "Created at first start".into(),
                hash: issued.hash.clone(),
                roles: vec![RoleBinding {
                    project_key: "*".into(),
                    role: Role::Admin,
                }],
                expires_at: None,
            },
        )
        .await?;
    let credentials = Credentials {
        project: project.into(),
        admin_token: TokenCredentials {
            id: issued.id,
            principal: principal.into(),
            token: issued.token,
        },
        sdk_keys,
    };
    let mut text = serde_json::to_string_pretty(&credentials)?;
    text.push('\n');
    // A file left by an earlier installation whose storage is gone is stale.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    auth::write_private(path, text.as_bytes())?;
    Ok(())
}

/// TLS material, PEM encoded.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles")
    }
}

/// How to serve, beyond the gRPC listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<TlsFiles>,
    pub live: LiveSettings,
    /// How fast each admin token may call the admin and experiment APIs.
    pub admin_rate_limit: AdminRateLimit,
    /// Unary calls served at once (0: no limit); see `crate::overload`.
    pub max_inflight_requests: usize,
    /// How often this instance watches the running experiments for alerts; `None`: never.
    pub experiment_watch_interval: Option<Duration>,
    /// How often this instance looks for due scheduled changes; `None`: never (others do).
    pub schedule_interval: Option<Duration>,
    /// How long a guarded ramp's guardrails may go unread between steps (one instance of
    /// those with a scheduler reads them).
    pub ramp_guard_interval: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            tls: None,
            live: LiveSettings::default(),
            admin_rate_limit: AdminRateLimit::default(),
            max_inflight_requests: DEFAULT_MAX_INFLIGHT_REQUESTS,
            experiment_watch_interval: Some(crate::services::experiments::DEFAULT_WATCH_INTERVAL),
            schedule_interval: Some(crate::services::admin::DEFAULT_SCHEDULE_INTERVAL),
            ramp_guard_interval: crate::services::admin::DEFAULT_RAMP_GUARD_INTERVAL,
        }
    }
}

/// Serves the gRPC services on `listener` with the defaults (no TLS, no Redis, no HTTP)
/// until `shutdown` completes: see [`serve_with`].
pub async fn serve(
    prepared: Prepared,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve_with(
        prepared,
        listener,
        None,
        ServeOptions {
            tls,
            ..ServeOptions::default()
        },
        shutdown,
    )
    .await
}

/// Serves AdminService, EvaluationService, SyncService, EventService, health and
/// reflection on `listener`, and the HTTP endpoints on `http` when given, until `shutdown`
/// completes; then ends the streams and lets calls in flight finish.
pub async fn serve_with(
    prepared: Prepared,
    listener: TcpListener,
    http: Option<TcpListener>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let Prepared {
        storage, signer, ..
    } = prepared;
    if let Some(url) = &options.live.redis_url {
        crate::live::check_url(url).map_err(|err| anyhow::anyhow!(err))?;
    }
    let metrics = Metrics::new();
    if let Some(replica_reads) = storage.replica_reads() {
        metrics.register_collector(&replica_reads, "vexil_replica_reads_total");
    }
    let hub = Hub::start(storage.clone(), metrics.clone(), options.live.clone());
    // Folds new events into the experiment roll-ups; stops with the server.
    let _compactor = AbortOnDrop(tokio::spawn(
        storage
            .clone()
            .compact_analytics_every(ANALYTICS_COMPACTION_INTERVAL),
    ));
    let sdk_auth = Arc::new(SdkAuth::new(storage.clone()));
    let auth = Authenticator::with_rate_limit(signer, storage.clone(), options.admin_rate_limit);
    let admin_api = Admin::new(storage.clone(), auth.clone()).with_hub(hub.clone());
    // Applies scheduled changes as they fall due; stops with the server.
    let _scheduler = options.schedule_interval.map(|interval| {
        AbortOnDrop(tokio::spawn(admin_api.clone().run_scheduled_changes(
            metrics.clone(),
            interval,
            options.ramp_guard_interval,
        )))
    });
    let admin = AdminServiceServer::new(admin_api).max_decoding_message_size(MAX_REQUEST_BYTES);
    let experiment_api = ExperimentApi::new(storage.clone(), auth).with_hub(hub.clone());
    // Watches the running experiments for alerts; stops with the server.
    let _experiment_watch = options.experiment_watch_interval.map(|interval| {
        AbortOnDrop(tokio::spawn(
            experiment_api.clone().watch(metrics.clone(), interval),
        ))
    });
    let experiments =
        ExperimentServiceServer::new(experiment_api).max_decoding_message_size(MAX_REQUEST_BYTES);
    let evaluation =
        EvaluationServiceServer::new(EvaluationApi::new(hub.clone(), sdk_auth.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
    let sync = SyncServiceServer::new(SyncApi::new(hub.clone(), sdk_auth.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    // SDKs send event batches gzip-compressed.
    let events = EventServiceServer::new(EventApi::new(hub.clone(), sdk_auth.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST_BYTES);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    for service in [
        <AdminServiceServer<Admin> as NamedService>::NAME,
        <EvaluationServiceServer<EvaluationApi> as NamedService>::NAME,
        <SyncServiceServer<SyncApi> as NamedService>::NAME,
        <EventServiceServer<EventApi> as NamedService>::NAME,
        <ExperimentServiceServer<ExperimentApi> as NamedService>::NAME,
    ] {
        health_reporter
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vexil_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vexil_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Dead peers of long-lived streams are found by HTTP/2 pings as well as by the
    // heartbeats the streams send. HTTP/1.1 is for browsers' gRPC-web.
    let mut builder = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = options.tls {
        let identity = tonic::transport::Identity::from_pem(tls.cert, tls.key);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "serving");
    // The builder's `tcp_nodelay` applies only to sockets it binds itself: set it on each
    // accepted connection, or a large response waits on delayed ACKs (40 ms on Linux).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));

    let (stopping, stop) = tokio::sync::watch::channel(false);
    let http_task = http.map(|listener| {
        let mut stop = stop.clone();
        tokio::spawn(crate::http::serve(
            listener,
            hub.clone(),
            sdk_auth.clone(),
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        ))
    });
    let stop_hub = hub.clone();
    let grpc_shutdown = async move {
        shutdown.await;
        // Streams never end on their own: end them so that the graceful shutdown can.
        stop_hub.shutdown();
        stopping.send_replace(true);
    };
    // Outermost: web pages' CORS and which methods they may call; then the gRPC-web
    // translation, which leaves native gRPC untouched; then the refusal of calls beyond
    // the instance's limit, answered before they are decoded.
    let served = builder
        .layer(BrowserLayer::new(BrowserCors::new(sdk_auth.clone())))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(InflightLayer::new(InflightLimit::new(
            options.max_inflight_requests,
            hub.metrics().clone(),
        )))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(admin)
        .add_service(evaluation)
        .add_service(sync)
        .add_service(events)
        .add_service(experiments)
        .serve_with_incoming_shutdown(incoming, grpc_shutdown)
        .await;
    hub.shutdown();
    if let Some(task) = http_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "http server failed"),
            Err(err) => tracing::warn!(error = %err, "http server task failed"),
        }
    }
    served?;
    tracing::info!("server stopped");
    storage.close().await;
    Ok(())
}
