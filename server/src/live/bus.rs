//! Redis: the change-notice bus between instances and the L2 cache of serialized rulesets.
//!
//! Every Redis call has a short timeout and failures are counted, logged and otherwise
//! ignored: Redis speeds propagation and warm-up up, and correctness never depends on it.
//!
//! One node (`redis://host:port`) or a Redis Cluster (several seed URLs separated by
//! commas). On a cluster every command names one key, so keys may live in any slot; notices
//! go over sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7), which keeps them on the
//! shard owning the channel instead of broadcasting them over the cluster bus, and whose
//! subscription the client moves to the shard's new primary after a failover. Notices sent
//! while a subscription moves are lost: the instance compares versions with the store once
//! it is subscribed again, as after any reconnection.

use std::sync::Weak;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, PushKind, RedisFuture};
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
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);
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

/// Where Redis is.
#[derive(Clone)]
enum Target {
    Node(redis::Client),
    /// The seed nodes of a cluster.
    Cluster(Vec<redis::ConnectionInfo>),
}

impl Target {
    /// One URL, or several separated by commas for a cluster's seed nodes.
    fn parse(url: &str) -> redis::RedisResult<Target> {
        let urls: Vec<&str> = url.split(',').map(str::trim).collect();
        if let [url] = urls[..] {
            return redis::Client::open(url).map(Target::Node);
        }
        urls.into_iter()
            .map(redis::IntoConnectionInfo::into_connection_info)
            .collect::<redis::RedisResult<Vec<_>>>()
            .map(Target::Cluster)
    }

    fn cluster(seeds: &[redis::ConnectionInfo]) -> ClusterClientBuilder {
        ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            // A command retried through a failover still ends within this: the L2 cache
            // and notices are worth a short wait, not a stalled load.
            .overall_response_timeout(Some(CLUSTER_TIMEOUT))
    }
}

/// How long a command to a cluster may take, retries through a failover included.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(2);

/// A command connection to a node or to a cluster.
#[derive(Clone)]
enum Connection {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Connection::Node(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Clone)]
pub(super) struct RedisBus {
    target: Option<Target>,
    /// Prefix of every key and channel (`vexil` by default), so that deployments can share
    /// a Redis.
    prefix: String,
    /// The command connection, opened on first use and dropped after a failure so that the
    /// next call reconnects.
    connection: std::sync::Arc<tokio::sync::Mutex<Option<Connection>>>,
    metrics: Metrics,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisBus")
    }
}

impl RedisBus {
    pub(super) fn new(url: &str, prefix: &str, metrics: Metrics) -> RedisBus {
        let target = match Target::parse(url) {
            Ok(target) => Some(target),
            Err(err) => {
                // Checked at start-up by `check_url`; kept lenient here.
                tracing::error!(error = %err, "invalid redis url; running without redis");
                None
            }
        };
        RedisBus {
            target,
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

    async fn connection(&self) -> Option<Connection> {
        let target = self.target.as_ref()?;
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref() {
            return Some(connection.clone());
        }
        let connected = match target {
            Target::Node(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Connection::Node)
            }
            Target::Cluster(seeds) => match Target::cluster(seeds).build() {
                Ok(client) => client.get_async_connection().await.map(Connection::Cluster),
                Err(err) => Err(err),
            },
        };
        match connected {
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
        let command = match connection {
            Connection::Node(_) => "PUBLISH",
            Connection::Cluster(_) => "SPUBLISH",
        };
        let sent: redis::RedisResult<i64> = redis::cmd(command)
            .arg(self.channel())
            .arg(payload)
            .query_async(&mut connection)
            .await;
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
        let Some(target) = self.target.clone() else {
            return;
        };
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            let followed = match &target {
                Target::Node(client) => self.follow_node(client, &instance, &hub).await,
                Target::Cluster(seeds) => self.follow_cluster(seeds, &instance, &hub).await,
            };
            match followed {
                Followed::HubGone => return,
                Followed::Lost => {
                    delay = FIRST_RECONNECT_DELAY;
                    self.metrics.redis_connected.set(0);
                    tracing::warn!("redis subscription lost; reconnecting");
                }
                Followed::NotSubscribed(err) => self.error("subscribe", &err),
            }
            if hub.strong_count() == 0 {
                return;
            }
            back_off(&mut delay).await;
        }
    }

    /// Marks the subscription up and compares versions with the store; false when the hub
    /// is gone.
    async fn subscribed(&self, hub: &Weak<HubInner>) -> bool {
        self.metrics.redis_connected.set(1);
        match hub.upgrade() {
            Some(hub) => {
                hub.check_versions().await;
                true
            }
            None => false,
        }
    }

    /// Waits at most `limit` for `subscribing`, then marks the subscription up and compares
    /// versions with the store; the [`Followed`] to return when it fails or the hub is gone.
    async fn subscribe<T>(
        &self,
        limit: Duration,
        subscribing: impl std::future::Future<Output = redis::RedisResult<T>>,
        hub: &Weak<HubInner>,
    ) -> Result<T, Followed> {
        let subscription = match tokio::time::timeout(limit, subscribing).await {
            Ok(Ok(subscription)) => subscription,
            Ok(Err(err)) => return Err(Followed::NotSubscribed(err.to_string())),
            Err(_) => return Err(Followed::NotSubscribed("timed out".into())),
        };
        tracing::info!("subscribed to redis change notices");
        if !self.subscribed(hub).await {
            return Err(Followed::HubGone);
        }
        Ok(subscription)
    }

    /// Subscribes to one node's channel and handles its notices until the connection drops.
    async fn follow_node(
        &self,
        client: &redis::Client,
        instance: &str,
        hub: &Weak<HubInner>,
    ) -> Followed {
        let channel = self.channel();
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match self.subscribe(TIMEOUT, subscribed, hub).await {
            Ok(pubsub) => pubsub,
            Err(followed) => return followed,
        };
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Some(hub) = hub.upgrade() else {
                return Followed::HubGone;
            };
            match message.get_payload::<String>() {
                Ok(payload) => self.on_payload(&payload, instance, &hub).await,
                Err(err) => self.error("notice", &err),
            }
        }
        Followed::Lost
    }

    async fn on_payload(&self, payload: &str, instance: &str, hub: &HubInner) {
        match serde_json::from_str::<Envelope>(payload) {
            Ok(envelope) if envelope.instance == instance => {}
            Ok(envelope) => hub.on_notice(&envelope.notice).await,
            Err(err) => self.error("notice", &err),
        }
    }

    /// [`RedisBus::follow_node`] on a cluster: a sharded subscription, which the client keeps
    /// on whichever node owns the channel's slot. A dropped node connection may have carried
    /// it: the subscription is then asked for again (harmless when the client already moved
    /// it), and once confirmed, versions are compared with the store for what was missed.
    async fn follow_cluster(
        &self,
        seeds: &[redis::ConnectionInfo],
        instance: &str,
        hub: &Weak<HubInner>,
    ) -> Followed {
        let channel = self.channel();
        let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
        let subscribed = async {
            let client = Target::cluster(seeds)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                .build()?;
            let mut connection = client.get_async_connection().await?;
            connection.ssubscribe(&channel).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let mut connection = match self.subscribe(CLUSTER_TIMEOUT, subscribed, hub).await {
            Ok(connection) => connection,
            Err(followed) => return followed,
        };
        while let Some(push) = received.recv().await {
            let Some(live) = hub.upgrade() else {
                return Followed::HubGone;
            };
            match push.kind {
                PushKind::SMessage | PushKind::Message => {
                    match push
                        .data
                        .into_iter()
                        .nth(1)
                        .map(redis::from_redis_value::<String>)
                    {
                        Some(Ok(payload)) => self.on_payload(&payload, instance, &live).await,
                        Some(Err(err)) => self.error("notice", &err),
                        None => self.error("notice", &"a push without a payload"),
                    }
                }
                PushKind::Disconnection => {
                    self.metrics.redis_connected.set(0);
                    self.error("subscribe", &"a cluster node connection dropped");
                    self.resubscribe(&mut connection, &channel).await;
                }
                PushKind::SSubscribe if self.metrics.redis_connected.get() == 0 => {
                    tracing::info!("redis cluster subscription back");
                    if !self.subscribed(hub).await {
                        return Followed::HubGone;
                    }
                }
                _ => {}
            }
        }
        Followed::Lost
    }

    /// Asks for the sharded subscription again until the cluster confirms it (the
    /// confirmation arrives as a push), backing off while a failover is under way.
    async fn resubscribe(&self, connection: &mut ClusterConnection, channel: &str) {
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            match tokio::time::timeout(CLUSTER_TIMEOUT, connection.ssubscribe(channel)).await {
                Ok(Ok(())) => return,
                Ok(Err(err)) => self.error("subscribe", &err),
                Err(_) => self.error("subscribe", &"timed out"),
            }
            back_off(&mut delay).await;
        }
    }
}

/// How following the notices ended.
enum Followed {
    /// The hub was dropped: the instance is stopping.
    HubGone,
    /// The subscription was up, then lost.
    Lost,
    /// The subscription could not be made.
    NotSubscribed(String),
}

/// Waits `delay`, then doubles it up to [`MAX_RECONNECT_DELAY`].
async fn back_off(delay: &mut Duration) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(MAX_RECONNECT_DELAY);
}

/// Checks that `url` is a Redis URL, or a list of a cluster's seed URLs separated by
/// commas, for a clear error at start-up.
pub fn check_url(url: &str) -> Result<(), String> {
    Target::parse(url)
        .map(|_| ())
        .map_err(|err| format!("invalid redis url: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_node_and_several_are_a_cluster() {
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/"),
            Ok(Target::Node(_))
        ));
        match Target::parse("redis://10.0.0.1:7000, redis://10.0.0.2:7000,redis://10.0.0.3:7000") {
            Ok(Target::Cluster(seeds)) => assert_eq!(seeds.len(), 3),
            _ => panic!("three seeds make a cluster"),
        }
        let err = check_url("redis://10.0.0.1:7000,http://10.0.0.2").expect_err("a bad seed");
        assert!(err.starts_with("invalid redis url"), "{err}");
        assert!(check_url("not a url").is_err());
    }
}
