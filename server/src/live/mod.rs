//! The live state of an instance: one compiled ruleset per environment in memory (L1),
//! kept current by change notices, and the fan-out of every change to the instance's
//! Sync and Watch streams.
//!
//! # How a change travels
//!
//! 1. A write commits in the store; the storage of the instance that made it sends an
//!    [`EnvironmentChanged`](crate::storage::EnvironmentChanged) notice.
//! 2. That instance publishes `(environment, version, commit time)` on the change bus: the
//!    Redis channel `{prefix}:changes` with `--redis-url` (prefix `vexil` by default), else
//!    nothing leaves the process.
//! 3. Every instance holding the environment and seeing a newer version loads what changed
//!    since the version it holds (one query on the change log), patches its ruleset, swaps it
//!    and broadcasts an [`Update`] to its streams.
//!
//! Pub/sub loses messages while a subscriber is disconnected, so every instance also compares
//! the versions it holds with the store every few seconds and after each reconnection to
//! Redis: a lost notice costs latency, never correctness. With Redis down, serving goes on
//! from memory and propagation falls back to that periodic check.
//!
//! # L2
//!
//! With Redis, serialized rulesets are cached under `{prefix}:snapshot:{project}/{env}:{version}`
//! so that an instance starting up reads one key per environment instead of loading every
//! flag from the store. Storing one lets the one it supersedes expire within a minute.

mod bus;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use vexil_engine::Ruleset;
use vexil_proto::v1 as pb;

use crate::convert;
use crate::metrics::Metrics;
use crate::overload::{StreamLimiter, StreamLimits, StreamSlot};
use crate::storage::{
    FlagModel, ResourceKind, RulesetPatch, SegmentModel, Storage, StorageError, now_millis,
};

use bus::RedisBus;
pub use bus::{ChangeNotice, check_url};

/// How many updates a slow stream may fall behind before it catches up from the store.
const UPDATE_CAPACITY: usize = 64;

/// Tuning of the live state.
#[derive(Clone)]
pub struct LiveSettings {
    /// Redis for change notices and L2 snapshots; `None`: a single instance.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys and channel, so that deployments can share a Redis.
    pub redis_prefix: String,
    /// How often held versions are compared with the store.
    pub version_check_interval: Duration,
    /// How often idle streams receive a heartbeat.
    pub heartbeat_interval: Duration,
    /// How many Sync and Watch streams the instance keeps open, in total and per SDK key.
    pub stream_limits: StreamLimits,
}

impl std::fmt::Debug for LiveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A Redis URL may carry a password.
        f.debug_struct("LiveSettings")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "…"))
            .field("redis_prefix", &self.redis_prefix)
            .field("version_check_interval", &self.version_check_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("stream_limits", &self.stream_limits)
            .finish()
    }
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            redis_url: None,
            redis_prefix: "vexil".to_owned(),
            version_check_interval: Duration::from_secs(3),
            heartbeat_interval: Duration::from_secs(15),
            stream_limits: StreamLimits::default(),
        }
    }
}

/// One environment's ruleset at one version, with its serialized forms built on demand.
#[derive(Debug)]
pub struct Loaded {
    pub version: i64,
    pub ruleset: Ruleset,
    environment_key: String,
    snapshot: OnceLock<Arc<pb::Snapshot>>,
    json: OnceLock<Arc<SnapshotJson>>,
}

/// The ruleset JSON of a version, plain and gzipped, as served over HTTP and cached in L2.
#[derive(Debug)]
pub struct SnapshotJson {
    pub text: String,
    pub gzip: Vec<u8>,
}

impl Loaded {
    fn new(version: i64, ruleset: Ruleset, environment_key: &str) -> Loaded {
        Loaded {
            version,
            ruleset,
            environment_key: environment_key.to_owned(),
            snapshot: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The Sync snapshot of this version (built once, then shared).
    pub fn snapshot(&self) -> Arc<pb::Snapshot> {
        self.snapshot
            .get_or_init(|| {
                let value = self.ruleset.to_value();
                let items = |name: &str| -> Vec<Value> {
                    value
                        .get(name)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                };
                Arc::new(pb::Snapshot {
                    version: self.version,
                    flags: items("flags").into_iter().map(snapshot_flag).collect(),
                    segments: items("segments")
                        .into_iter()
                        .map(|s| snapshot_segment(s, &self.environment_key))
                        .collect(),
                })
            })
            .clone()
    }

    /// The ruleset JSON of this version (built once, then shared).
    pub fn json(&self) -> Arc<SnapshotJson> {
        self.json
            .get_or_init(|| {
                let mut value = self.ruleset.to_value();
                if let Some(object) = value.as_object_mut() {
                    object.insert("version".into(), Value::from(self.version));
                }
                let text = value.to_string();
                let gzip = gzip(text.as_bytes());
                Arc::new(SnapshotJson { text, gzip })
            })
            .clone()
    }
}

/// A flag of a ruleset as Sync sends it. A flag the model cannot hold (stored by an older
/// version) goes with its key and version only, which SDKs keep as malformed, as this
/// instance does.
fn snapshot_flag(value: Value) -> pb::RulesetFlag {
    match serde_json::from_value::<FlagModel>(value.clone()) {
        Ok(flag) => vexil_proto::model::flag_to_proto(&flag),
        Err(_) => pb::RulesetFlag {
            key: text_field(&value, "key"),
            version: value.get("version").and_then(Value::as_i64).unwrap_or(0),
            ..Default::default()
        },
    }
}

/// A segment of a ruleset as Sync sends it; one the model cannot hold goes with a clause
/// SDKs keep as malformed (see [`snapshot_flag`]).
fn snapshot_segment(value: Value, environment_key: &str) -> pb::Segment {
    match serde_json::from_value::<SegmentModel>(value.clone()) {
        Ok(segment) => convert::ruleset_segment(&segment, environment_key),
        Err(_) => pb::Segment {
            key: text_field(&value, "key"),
            environment_key: environment_key.to_owned(),
            rules: vec![pb::SegmentRule {
                id: String::new(),
                clauses: vec![pb::Clause::default()],
            }],
            ..Default::default()
        },
    }
}

fn text_field(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// A change of an environment, as broadcast to the streams of the instance.
#[derive(Debug)]
pub struct Update {
    /// The version the change applies to.
    pub from_version: i64,
    /// The ruleset after the change.
    pub state: Arc<Loaded>,
    /// The change as a Sync patch; `None` when it could not be expressed as one (the log
    /// did not reach back far enough): streams resend everything.
    pub patch: Option<Arc<pb::Patch>>,
    /// Flags whose values may differ after the change; `None`: any flag.
    pub affected: Option<HashSet<String>>,
}

/// An environment held in memory.
#[derive(Debug)]
pub struct Environment {
    pub project: String,
    pub key: String,
    /// `project/environment`, the metrics label.
    pub label: String,
    current: RwLock<Arc<Loaded>>,
    updates: broadcast::Sender<Arc<Update>>,
    /// Set when the environment was deleted: streams end.
    gone: watch::Sender<bool>,
    /// One refresh at a time, so that updates are broadcast in version order.
    refresh: tokio::sync::Mutex<()>,
}

impl Environment {
    /// The ruleset held now.
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, loaded: Arc<Loaded>) {
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
    }

    /// The updates from now on. Subscribe before reading [`Environment::current`] so that
    /// nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.updates.subscribe()
    }

    /// Becomes `true` when the environment is deleted.
    pub fn gone(&self) -> watch::Receiver<bool> {
        self.gone.subscribe()
    }
}

/// The live state of the instance: see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    storage: Storage,
    metrics: Metrics,
    settings: LiveSettings,
    environments: RwLock<HashMap<(String, String), Arc<Environment>>>,
    /// Serializes first loads so that concurrent requests load an environment once.
    first_load: tokio::sync::Mutex<()>,
    bus: Option<RedisBus>,
    /// Names this instance on the bus, to skip its own notices.
    instance_id: String,
    ready: AtomicBool,
    closing: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    streams: Arc<StreamLimiter>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

impl Hub {
    /// Starts the live state: the change listeners, the periodic version check and the
    /// loading of every environment in the background (see [`Hub::is_ready`]).
    pub fn start(storage: Storage, metrics: Metrics, settings: LiveSettings) -> Hub {
        let bus = settings
            .redis_url
            .as_deref()
            .map(|url| RedisBus::new(url, &settings.redis_prefix, metrics.clone()));
        metrics.redis_configured.set(i64::from(bus.is_some()));
        let (closing, _) = watch::channel(false);
        let streams = StreamLimiter::new(settings.stream_limits, metrics.clone());
        let hub = Hub {
            inner: Arc::new(HubInner {
                storage,
                metrics,
                settings,
                environments: RwLock::new(HashMap::new()),
                first_load: tokio::sync::Mutex::new(()),
                bus,
                instance_id: instance_id(),
                ready: AtomicBool::new(false),
                closing,
                tasks: std::sync::Mutex::new(Vec::new()),
                streams,
            }),
        };
        let mut tasks = vec![
            tokio::spawn(local_notices(Arc::downgrade(&hub.inner))),
            tokio::spawn(periodic_check(Arc::downgrade(&hub.inner))),
            tokio::spawn(preload(Arc::downgrade(&hub.inner))),
        ];
        if let Some(bus) = &hub.inner.bus {
            tasks.push(tokio::spawn(
                bus.clone()
                    .listen(hub.inner.instance_id.clone(), Arc::downgrade(&hub.inner)),
            ));
        }
        if let Ok(mut held) = hub.inner.tasks.lock() {
            held.extend(tasks);
        }
        hub
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The place of one more stream of SDK key `key_id`, held while the slot lives;
    /// `RESOURCE_EXHAUSTED` when the instance or the key is at its stream limit.
    pub fn open_stream(&self, key_id: i64) -> Result<StreamSlot, Status> {
        self.inner.streams.open(key_id)
    }

    /// How often idle streams receive a heartbeat (never zero: timers refuse it).
    pub fn heartbeat_interval(&self) -> Duration {
        self.inner
            .settings
            .heartbeat_interval
            .max(Duration::from_millis(1))
    }

    /// Whether every environment was loaded once since the start.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Becomes `true` when the server shuts down: streams end so that it can.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Ends every stream and stops the background tasks.
    pub fn shutdown(&self) {
        self.inner.closing.send_replace(true);
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }

    /// The environment, loaded into memory on first use.
    pub async fn environment(
        &self,
        project: &str,
        env: &str,
    ) -> Result<Arc<Environment>, StorageError> {
        self.inner.environment(project, env).await
    }

    /// Brings every held environment of a project up to the store's version.
    pub async fn refresh_project(&self, project: &str) {
        for held in self.inner.held_all() {
            if held.project == project {
                self.inner.refresh(&held, None, None, "write").await;
            }
        }
    }
}

/// Which version of an environment a load needs, and so whether the read replica may
/// answer it.
#[derive(Debug, Clone, Copy)]
enum Freshness {
    /// Any version: a first load, caught up right after.
    Any,
    /// This version or a newer one (a refresh towards a version it was told of).
    AtLeast(i64),
    /// The primary's: nobody said which version is current.
    Latest,
}

impl HubInner {
    fn held(&self, project: &str, env: &str) -> Option<Arc<Environment>> {
        let environments = match self.environments.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        environments
            .get(&(project.to_owned(), env.to_owned()))
            .cloned()
    }

    fn held_all(&self) -> Vec<Arc<Environment>> {
        let environments = match self.environments.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        environments.values().cloned().collect()
    }

    async fn environment(
        &self,
        project: &str,
        env: &str,
    ) -> Result<Arc<Environment>, StorageError> {
        if let Some(held) = self.held(project, env) {
            self.metrics.cache("l1", true);
            return Ok(held);
        }
        let _loading = self.first_load.lock().await;
        if let Some(held) = self.held(project, env) {
            self.metrics.cache("l1", true);
            return Ok(held);
        }
        self.metrics.cache("l1", false);
        // Any version will do: the catch-up below brings it to the primary's.
        let loaded = self.load(project, env, Freshness::Any).await?;
        let label = format!("{project}/{env}");
        self.metrics
            .environment_version
            .with_label_values(&[label.as_str()])
            .set(loaded.version);
        let (updates, _) = broadcast::channel(UPDATE_CAPACITY);
        let (gone, _) = watch::channel(false);
        let environment = Arc::new(Environment {
            project: project.to_owned(),
            key: env.to_owned(),
            label,
            current: RwLock::new(Arc::new(loaded)),
            updates,
            gone,
            refresh: tokio::sync::Mutex::new(()),
        });
        {
            let mut environments = match self.environments.write() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            environments.insert((project.to_owned(), env.to_owned()), environment.clone());
        }
        // A change committed while the environment loaded was not held yet when its notice
        // came: catch up now rather than at the next periodic check.
        self.refresh(&environment, None, None, "load").await;
        Ok(environment)
    }

    /// Loads an environment's whole ruleset: from L2 when Redis holds the store's current
    /// version, else from the store (and then into L2), on the read replica when there is
    /// one and `freshness` allows its version.
    async fn load(
        &self,
        project: &str,
        env: &str,
        freshness: Freshness,
    ) -> Result<Loaded, StorageError> {
        if let Some(bus) = &self.bus {
            let version = self
                .storage
                .environment_version(project, env)
                .await
                .inspect_err(|err| self.database_error("load", err))?;
            if let Some(text) = bus.get_snapshot(project, env, version).await {
                self.metrics.ruleset_built("full", "serve");
                match Ruleset::from_json(&text) {
                    Ok(ruleset) if i64::try_from(ruleset.version()) == Ok(version) => {
                        self.metrics.cache("l2", true);
                        return Ok(Loaded::new(version, ruleset, env));
                    }
                    _ => tracing::warn!(project, environment = env, "ignoring a bad L2 snapshot"),
                }
            }
            self.metrics.cache("l2", false);
        }
        let data = match freshness {
            Freshness::Any => self.storage.load_ruleset_at_least(project, env, 0).await,
            Freshness::AtLeast(version) => {
                self.storage
                    .load_ruleset_at_least(project, env, version)
                    .await
            }
            Freshness::Latest => self.storage.load_ruleset(project, env).await,
        }
        .inspect_err(|err| self.database_error("load", err))?;
        let version = i64::try_from(data.version).unwrap_or(i64::MAX);
        if let Some(bus) = &self.bus {
            // The model always serializes.
            let text = serde_json::to_string(&data).unwrap_or_default();
            bus.put_snapshot_later(project, env, version, text);
        }
        self.metrics.ruleset_built("full", "serve");
        Ok(Loaded::new(version, Ruleset::from_model(data), env))
    }

    fn database_error(&self, operation: &str, err: &StorageError) {
        if !matches!(err, StorageError::NotFound { .. }) {
            self.metrics
                .database_errors
                .with_label_values(&[operation])
                .inc();
        }
    }

    fn forget(&self, environment: &Environment) {
        let mut environments = match self.environments.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        environments.remove(&(environment.project.clone(), environment.key.clone()));
        environment.gone.send_replace(true);
        tracing::info!(environment = %environment.label, "environment deleted, dropped from memory");
    }

    /// Brings `environment` to the store's current version unless it holds `target`
    /// already: loads the change log since the held version, patches the ruleset, swaps it
    /// and broadcasts the update. `committed_at` (ms since the epoch) measures propagation,
    /// labelled with `source` (what triggered the refresh: `notice`, `check`).
    async fn refresh(
        &self,
        environment: &Arc<Environment>,
        target: Option<i64>,
        committed_at: Option<i64>,
        source: &str,
    ) {
        let _one_at_a_time = environment.refresh.lock().await;
        let held = environment.current();
        if target.is_some_and(|target| held.version >= target) {
            return;
        }
        let (project, env) = (&environment.project, &environment.key);
        // A refresh that knows the version it needs may read it from the read replica (the
        // primary answers when the replica has not replayed it yet); one that does not
        // reads the primary, the only one sure to hold the latest.
        let patch = match target {
            Some(target) => {
                self.storage
                    .load_patch_at_least(project, env, held.version, target)
                    .await
            }
            None => self.storage.load_patch(project, env, held.version).await,
        };
        let update = match patch {
            Ok(Some(patch)) if patch.version <= held.version => return,
            Ok(Some(patch)) => {
                // The models always serialize.
                let engine_patch = vexil_engine::Patch {
                    version: u64::try_from(patch.version).unwrap_or_default(),
                    upsert_flags: patch
                        .upserted_flags
                        .iter()
                        .filter_map(|f| serde_json::to_value(f).ok())
                        .collect(),
                    delete_flags: patch.deleted_flags.clone(),
                    upsert_segments: patch
                        .upserted_segments
                        .iter()
                        .filter_map(|s| serde_json::to_value(s).ok())
                        .collect(),
                    delete_segments: patch.deleted_segments.clone(),
                };
                self.metrics.ruleset_built("patch", "serve");
                let ruleset = held.ruleset.patched(&engine_patch);
                let affected = affected_flags(&ruleset, &patch);
                Update {
                    from_version: held.version,
                    state: Arc::new(Loaded::new(patch.version, ruleset, env)),
                    patch: Some(Arc::new(convert::patch(&patch, env))),
                    affected,
                }
            }
            Ok(None) => match self
                .load(
                    project,
                    env,
                    target.map_or(Freshness::Latest, Freshness::AtLeast),
                )
                .await
            {
                Ok(loaded) if loaded.version <= held.version => return,
                Ok(loaded) => Update {
                    from_version: held.version,
                    state: Arc::new(loaded),
                    patch: None,
                    affected: None,
                },
                Err(err) => return self.refresh_failed(environment, err),
            },
            Err(err) => return self.refresh_failed(environment, err),
        };
        let version = update.state.version;
        environment.swap(update.state.clone());
        self.metrics
            .environment_version
            .with_label_values(&[environment.label.as_str()])
            .set(version);
        // No stream listening is not an error.
        let _ = environment.updates.send(Arc::new(update));
        if let Some(committed_at) = committed_at {
            let lag = (now_millis() - committed_at).max(0) as f64 / 1000.0;
            self.metrics
                .propagation_lag
                .with_label_values(&[source])
                .observe(lag);
        }
        tracing::debug!(environment = %environment.label, version, "ruleset updated");
    }

    fn refresh_failed(&self, environment: &Environment, err: StorageError) {
        match err {
            StorageError::NotFound {
                kind: ResourceKind::Environment | ResourceKind::Project,
                ..
            } => self.forget(environment),
            err => {
                self.database_error("refresh", &err);
                tracing::warn!(environment = %environment.label, error = %err,
                    "cannot refresh; serving the held version until the next check");
            }
        }
    }

    /// Handles a change notice: refreshes the environment if it is held and behind.
    async fn on_notice(&self, notice: &ChangeNotice) {
        if let Some(held) = self.held(&notice.project, &notice.environment) {
            self.refresh(
                &held,
                Some(notice.version),
                Some(notice.committed_at),
                "notice",
            )
            .await;
        }
    }

    /// Compares every held version with the store and refreshes those behind; forgets the
    /// environments deleted.
    async fn check_versions(&self) {
        let versions = match self.storage.environment_versions().await {
            Ok(versions) => versions,
            Err(err) => {
                self.database_error("version_check", &err);
                tracing::warn!(error = %err, "version check failed");
                return;
            }
        };
        let current: HashMap<(String, String), (i64, i64)> = versions
            .into_iter()
            .map(|(project, env, version, at)| ((project, env), (version, at)))
            .collect();
        for held in self.held_all() {
            match current.get(&(held.project.clone(), held.key.clone())) {
                Some(&(version, committed_at)) if version > held.current().version => {
                    self.refresh(&held, Some(version), Some(committed_at), "check")
                        .await;
                }
                Some(_) => {}
                None => self.forget(&held),
            }
        }
    }
}

/// Which flags may evaluate differently after `patch`: the flags it changed and, through
/// prerequisites, every flag depending on them; every flag when a segment changed.
fn affected_flags(ruleset: &Ruleset, patch: &RulesetPatch) -> Option<HashSet<String>> {
    if !patch.upserted_segments.is_empty() || !patch.deleted_segments.is_empty() {
        return None;
    }
    let mut affected: HashSet<String> = patch
        .upserted_flags
        .iter()
        .map(|f| f.key.clone())
        .chain(patch.deleted_flags.iter().cloned())
        .collect();
    // Dependents, to a fixed point: prerequisite chains are short.
    loop {
        let before = affected.len();
        for key in ruleset.flag_keys() {
            if affected.contains(key) {
                continue;
            }
            if let Some(flag) = ruleset.flag(key)
                && flag.prerequisites.iter().any(|p| affected.contains(&p.key))
            {
                affected.insert(key.to_owned());
            }
        }
        if affected.len() == before {
            return Some(affected);
        }
    }
}

/// Refreshes on the notices of writes made through this instance, and passes them on to the
/// other instances.
async fn local_notices(hub: std::sync::Weak<HubInner>) {
    let mut notices = match hub.upgrade() {
        Some(hub) => hub.storage.subscribe(),
        None => return,
    };
    loop {
        let received = notices.recv().await;
        let Some(hub) = hub.upgrade() else { return };
        match received {
            Ok(changed) => {
                let notice = ChangeNotice {
                    project: changed.project_key,
                    environment: changed.environment_key,
                    version: changed.version,
                    committed_at: now_millis(),
                };
                // Tell the other instances and refresh this one at the same time: neither
                // should wait for the other.
                let publish = async {
                    if let Some(bus) = &hub.bus {
                        bus.publish(&hub.instance_id, &notice).await;
                    }
                };
                tokio::join!(publish, hub.on_notice(&notice));
                if let Some(bus) = &hub.bus
                    && let Some(held) = hub.held(&notice.project, &notice.environment)
                {
                    let current = held.current();
                    if current.version == notice.version {
                        bus.put_snapshot_later(
                            &notice.project,
                            &notice.environment,
                            current.version,
                            current.json().text.clone(),
                        );
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => hub.check_versions().await,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn periodic_check(hub: std::sync::Weak<HubInner>) {
    let interval = match hub.upgrade() {
        Some(hub) => hub.settings.version_check_interval,
        None => return,
    };
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.check_versions().await;
    }
}

/// Loads every environment once at start, so that the first requests find them in memory.
async fn preload(hub: std::sync::Weak<HubInner>) {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let Some(inner) = hub.upgrade() else { return };
        match inner.storage.environment_versions().await {
            Ok(versions) => {
                for (project, env, ..) in &versions {
                    if let Err(err) = inner.environment(project, env).await {
                        tracing::warn!(project, environment = env, error = %err, "cannot preload");
                    }
                }
                inner.ready.store(true, Ordering::Release);
                tracing::info!(
                    environments = versions.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "rulesets loaded"
                );
                return;
            }
            Err(err) => {
                inner.database_error("preload", &err);
                tracing::warn!(error = %err, "cannot list environments; retrying");
            }
        }
        drop(inner);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A random name for this instance: on the change bus, as a lease holder.
pub(crate) fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Uniqueness only avoids handling one's own notices twice, or two instances
        // holding a lease at once: both harmless.
        return format!("pid-{}", std::process::id());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::LiveSettings;

    #[test]
    fn debug_output_hides_the_redis_url() {
        let settings = LiveSettings {
            redis_url: Some("redis://:hunter2@cache.internal:6379".into()),
            ..LiveSettings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redis_url: Some(\"…\")"), "{printed}");
    }
}
