//! Who is calling the SDK-facing APIs (Evaluation, Sync, the HTTP snapshot): an SDK key,
//! `authorization: Bearer vxl-…`, which names the environment.
//!
//! Keys are looked up by the SHA-256 of the secret and remembered for a short time
//! ([`KEY_CACHE_TTL`]) so that evaluations do not touch the database: a revoked key keeps
//! working on an instance for at most that long. Unknown keys are not remembered (nothing
//! for a caller to fill memory with), and the memory holds at most [`MAX_CACHED_KEYS`].
//!
//! A call that carries an `origin` header comes from a web page (browsers always send it on
//! the cross-origin POSTs of gRPC-web; native clients never do). Such a call needs a client
//! key, and its origin must be one the key's environment allows ([`crate::origins`]). The
//! allowed origins are remembered as long as keys are, so a change reaches every instance
//! within [`KEY_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::origins;
use crate::storage::secrets::hash_secret;
use crate::storage::{SdkKey, SdkKeyKind, Storage, now_millis};

/// How long a key looked up stays trusted without asking the store again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// Keys remembered at most; beyond, the memory is cleared.
const MAX_CACHED_KEYS: usize = 100_000;

/// Authenticates SDK keys, with a short-lived memory of the keys seen.
#[derive(Debug)]
pub struct SdkAuth {
    storage: Storage,
    cache: RwLock<HashMap<String, (SdkKey, Instant)>>,
    /// (project, environment) → its allowed origins.
    origins: RwLock<HashMap<EnvironmentId, Remembered<Origins>>>,
    /// Every environment's allowed origins, for preflights, which carry no key.
    every_origins: RwLock<Option<Remembered<EveryOrigins>>>,
}

/// A value and when it was read from the store.
type Remembered<T> = (T, Instant);
/// (project key, environment key).
type EnvironmentId = (String, String);
/// An environment's allowed origins.
type Origins = Arc<[String]>;
/// Every environment's allowed origins.
type EveryOrigins = Arc<[Vec<String>]>;

impl SdkAuth {
    pub fn new(storage: Storage) -> SdkAuth {
        SdkAuth {
            storage,
            cache: RwLock::new(HashMap::new()),
            origins: RwLock::new(HashMap::new()),
            every_origins: RwLock::new(None),
        }
    }

    /// The SDK key of an `authorization` header value (`Bearer vxl-…`).
    pub async fn authenticate_header(&self, header: Option<&str>) -> Result<SdkKey, Status> {
        let header = header.ok_or_else(|| {
            Status::unauthenticated("missing `authorization: Bearer <SDK key>` metadata")
        })?;
        let secret = crate::auth::bearer_credential(header, "SDK key")?;
        if !secret.starts_with("vxl-") {
            return Err(Status::unauthenticated(
                "this API takes an SDK key (vxl-server-…, vxl-client-… or vxl-mobile-…), not an admin token",
            ));
        }
        let hash = hash_secret(secret);
        let now = Instant::now();
        if let Some(key) = self.cached(&hash, now) {
            return Ok(key);
        }
        let key = self
            .storage
            .lookup_sdk_key(&hash)
            .await
            .map_err(crate::status::from_storage)?
            .ok_or_else(|| Status::unauthenticated("the SDK key is unknown, revoked or expired"))?;
        let mut cache = write(&self.cache);
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(hash, (key.clone(), now));
        Ok(key)
    }

    /// The SDK key of gRPC request metadata; for a call from a web page (an `origin`
    /// header), a client key of an environment that allows the page's origin.
    pub async fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<SdkKey, Status> {
        let header = match metadata.get("authorization") {
            Some(value) => Some(value.to_str().map_err(|_| {
                Status::unauthenticated("the authorization metadata is not readable text")
            })?),
            None => None,
        };
        let key = self.authenticate_header(header).await?;
        if let Some(origin) = metadata.get("origin") {
            let origin = origin.to_str().unwrap_or_default();
            self.check_browser(&key, origin).await?;
        }
        Ok(key)
    }

    /// Refuses a web page's call unless it uses a client key of an environment that allows
    /// the page's origin.
    pub async fn check_browser(&self, key: &SdkKey, origin: &str) -> Result<(), Status> {
        if key.kind != SdkKeyKind::Client {
            return Err(Status::permission_denied(format!(
                "a web page ({origin}) may only use a client SDK key; {} keys must stay out of browsers",
                key.kind.as_str()
            )));
        }
        let allowed = self
            .environment_origins(&key.project_key, &key.environment_key)
            .await?;
        if origins::allows(&allowed, origin) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "origin {origin} is not allowed for environment {}/{}; add it to the environment's allowed origins",
                key.project_key, key.environment_key
            )))
        }
    }

    async fn environment_origins(&self, project: &str, env: &str) -> Result<Arc<[String]>, Status> {
        let id = (project.to_owned(), env.to_owned());
        let now = Instant::now();
        if let Some((origins, fetched)) = read(&self.origins).get(&id)
            && now.duration_since(*fetched) < KEY_CACHE_TTL
        {
            return Ok(origins.clone());
        }
        let environment = self
            .storage
            .get_environment(project, env)
            .await
            .map_err(crate::status::from_storage)?;
        let origins: Arc<[String]> = environment.allowed_origins.into();
        let mut cache = write(&self.origins);
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(id, (origins.clone(), now));
        Ok(origins)
    }

    /// Whether some environment allows pages of `origin`: a CORS preflight names no key, so
    /// it is answered for every environment at once (the call itself is then checked
    /// against its key's environment). A storage failure answers no.
    pub async fn any_environment_allows(&self, origin: &str) -> bool {
        let now = Instant::now();
        let cached = read(&self.every_origins)
            .as_ref()
            .filter(|(_, fetched)| now.duration_since(*fetched) < KEY_CACHE_TTL)
            .map(|(every, _)| every.clone());
        let every = match cached {
            Some(every) => every,
            None => match self.storage.every_allowed_origins().await {
                Ok(every) => {
                    let every: Arc<[Vec<String>]> = every.into();
                    *write(&self.every_origins) = Some((every.clone(), now));
                    every
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the allowed origins");
                    return false;
                }
            },
        };
        every.iter().any(|allowed| origins::allows(allowed, origin))
    }

    fn cached(&self, hash: &str, now: Instant) -> Option<SdkKey> {
        let cache = read(&self.cache);
        let (key, fetched) = cache.get(hash)?;
        (now.duration_since(*fetched) < KEY_CACHE_TTL && key.is_active(now_millis()))
            .then(|| key.clone())
    }
}

/// A cache's lock; a panic elsewhere leaves the cache usable (it holds no invariant).
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fails with `PERMISSION_DENIED` unless `key` is a server key.
pub fn require_server_key(key: &SdkKey, what: &str) -> Result<(), Status> {
    if key.kind == SdkKeyKind::Server {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{what} needs a server SDK key; {} keys receive evaluated values only (use EvaluationService)",
            key.kind.as_str()
        )))
    }
}
