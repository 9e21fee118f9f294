//! Redis: the change-notice bus between instances and the L2 cache of serialized rulesets.
//!
//! Every Redis call has a short timeout and failures are counted, logged and otherwise
//! ignored: Redis speeds propagation and warm-up up, and correctness never depends on it.

use std::sync::Weak;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use super::HubInner;
use crate::metrics::Metrics;

/// How long an L2 snapshot is kept: long enough for a fleet to warm up from it.
const SNAPSHOT_TTL_SECONDS: u64 = 3600;
/// How long a snapshot stays once a newer one of its environment is stored: instances load
/// the store's current version, so an older one only serves a load already under way.
/// Without this, Redis kept one ruleset per change for an hour (the fault suite, creating a
/// flag every 200 ms, grew it past 600 MB in ten minutes).
const SUPERSEDED_TTL_SECONDS: i64 = 60;
/// Timeout of a connection attempt and of each command.
const TIMEOUT: Duration = Duration::from_secs(1);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// A committed environment version, as published on the channel `{prefix}:changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    pub project: String,
    pub environment: String,
    pub version: i64,
    /// When the write committed, in milliseconds since the Unix epoch.
    pub committed_at: i64,
}

/// A notice on the wire: who sent it and what.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    instance: String,
    #[serde(flatten)]
    notice: ChangeNotice,
}

#[derive(Clone)]
pub(super) struct RedisBus {
    client: Option<redis::Client>,
    /// Prefix of every key and channel (`vexil` by default), so that deployments can share
    /// a Redis.
    prefix: String,
    /// The command connection, opened on first use and dropped after a failure so that the
    /// next call reconnects.
    connection: std::sync::Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
    metrics: Metrics,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisBus")
    }
}

impl RedisBus {
    pub(super) fn new(url: &str, prefix: &str, metrics: Metrics) -> RedisBus {
        let client = match redis::Client::open(url) {
            Ok(client) => Some(client),
            Err(err) => {
                // Checked at start-up by `check_url`; kept lenient here.
                tracing::error!(error = %err, "invalid redis url; running without redis");
                None
            }
        };
        RedisBus {
            client,
            prefix: prefix.to_owned(),
            connection: Default::default(),
            metrics,
        }
    }

    /// The pub/sub channel of change notices: `{prefix}:changes`.
    fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    fn snapshot_key(&self, project: &str, env: &str, version: i64) -> String {
        format!("{}:snapshot:{project}/{env}:{version}", self.prefix)
    }

    /// The version of an environment's newest stored snapshot: `{prefix}:snapshot-version:…`.
    fn newest_snapshot_key(&self, project: &str, env: &str) -> String {
        format!("{}:snapshot-version:{project}/{env}", self.prefix)
    }

    fn error(&self, operation: &str, err: &dyn std::fmt::Display) {
        self.metrics
            .redis_errors
            .with_label_values(&[operation])
            .inc();
        tracing::debug!(operation, error = %err, "redis call failed");
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let client = self.client.as_ref()?;
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref() {
            return Some(connection.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(connection) => {
                *held = Some(connection.clone());
                Some(connection)
            }
            Err(err) => {
                self.error("connect", &err);
                None
            }
        }
    }

    async fn reset(&self) {
        *self.connection.lock().await = None;
    }

    /// Publishes a notice; failures only cost latency (the periodic check catches up).
    pub(super) async fn publish(&self, instance: &str, notice: &ChangeNotice) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let envelope = Envelope {
            instance: instance.to_owned(),
            notice: notice.clone(),
        };
        let payload = serde_json::to_string(&envelope).unwrap_or_default();
        let sent: redis::RedisResult<i64> = connection.publish(self.channel(), payload).await;
        if let Err(err) = sent {
            self.error("publish", &err);
            self.reset().await;
        }
    }

    /// The L2 snapshot of an environment at `version`, if Redis has it.
    pub(super) async fn get_snapshot(
        &self,
        project: &str,
        env: &str,
        version: i64,
    ) -> Option<String> {
        let mut connection = self.connection().await?;
        let found: redis::RedisResult<Option<String>> = connection
            .get(self.snapshot_key(project, env, version))
            .await;
        match found {
            Ok(found) => found,
            Err(err) => {
                self.error("get_snapshot", &err);
                self.reset().await;
                None
            }
        }
    }

    /// Stores an L2 snapshot in the background, and lets the one it supersedes expire soon
    /// (whichever of the two is older, when instances store out of order), so that Redis
    /// holds about one snapshot per environment however often flags change.
    pub(super) fn put_snapshot_later(&self, project: &str, env: &str, version: i64, text: String) {
        let bus = self.clone();
        let (project, env) = (project.to_owned(), env.to_owned());
        tokio::spawn(async move {
            let Some(mut connection) = bus.connection().await else {
                return;
            };
            let key = bus.snapshot_key(&project, &env, version);
            let stored: redis::RedisResult<Option<i64>> = async {
                let () = connection.set_ex(&key, text, SNAPSHOT_TTL_SECONDS).await?;
                // SET … GET: the newest version recorded before this one.
                redis::cmd("SET")
                    .arg(bus.newest_snapshot_key(&project, &env))
                    .arg(version)
                    .arg("GET")
                    .arg("EX")
                    .arg(SNAPSHOT_TTL_SECONDS)
                    .query_async(&mut connection)
                    .await
            }
            .await;
            let superseded = match stored {
                Ok(Some(previous)) if previous < version => previous,
                Ok(Some(previous)) if previous > version => {
                    // A newer snapshot was stored first: this one is the superseded one, and
                    // the record goes back to the newer version.
                    let _: redis::RedisResult<()> = connection
                        .set_ex(
                            bus.newest_snapshot_key(&project, &env),
                            previous,
                            SNAPSHOT_TTL_SECONDS,
                        )
                        .await;
                    version
                }
                Ok(_) => return,
                Err(err) => {
                    bus.error("put_snapshot", &err);
                    bus.reset().await;
                    return;
                }
            };
            let expired: redis::RedisResult<()> = connection
                .expire(
                    bus.snapshot_key(&project, &env, superseded),
                    SUPERSEDED_TTL_SECONDS,
                )
                .await;
            if let Err(err) = expired {
                bus.error("put_snapshot", &err);
            }
        });
    }

    /// Follows the notices of the other instances until the hub is dropped, reconnecting
    /// with backoff; after each (re)connection, compares versions with the store to make up
    /// for the notices missed meanwhile.
    pub(super) async fn listen(self, instance: String, hub: Weak<HubInner>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let channel = self.channel();
        let mut delay = Duration::from_millis(100);
        loop {
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(TIMEOUT, subscribed).await {
                Ok(Ok(mut pubsub)) => {
                    delay = Duration::from_millis(100);
                    self.metrics.redis_connected.set(1);
                    tracing::info!("subscribed to redis change notices");
                    match hub.upgrade() {
                        Some(hub) => hub.check_versions().await,
                        None => return,
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Some(hub) = hub.upgrade() else { return };
                        let payload: String = match message.get_payload() {
                            Ok(payload) => payload,
                            Err(err) => {
                                self.error("notice", &err);
                                continue;
                            }
                        };
                        match serde_json::from_str::<Envelope>(&payload) {
                            Ok(envelope) if envelope.instance == instance => {}
                            Ok(envelope) => hub.on_notice(&envelope.notice).await,
                            Err(err) => self.error("notice", &err),
                        }
                    }
                    self.metrics.redis_connected.set(0);
                    tracing::warn!("redis subscription lost; reconnecting");
                }
                Ok(Err(err)) => self.error("subscribe", &err),
                Err(_) => self.error("subscribe", &"timed out"),
            }
            if hub.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }
}

/// Checks that `url` is a Redis URL, for a clear error at start-up.
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|err| format!("invalid redis url: {err}"))
}
