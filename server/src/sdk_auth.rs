//! Who is calling the SDK-facing APIs (Evaluation, Sync, the HTTP snapshot): an SDK key,
//! `authorization: Bearer vxl-…`, which names the environment.
//!
//! Keys are looked up by the SHA-256 of the secret and remembered for a short time
//! ([`KEY_CACHE_TTL`]) so that evaluations do not touch the database: a revoked key keeps
//! working on an instance for at most that long. Unknown keys are not remembered (nothing
//! for a caller to fill memory with), and the memory holds at most [`MAX_CACHED_KEYS`].

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use tonic::Status;

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
}

impl SdkAuth {
    pub fn new(storage: Storage) -> SdkAuth {
        SdkAuth {
            storage,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The SDK key of an `authorization` header value (`Bearer vxl-…`).
    pub async fn authenticate_header(&self, header: Option<&str>) -> Result<SdkKey, Status> {
        let header = header.ok_or_else(|| {
            Status::unauthenticated("missing `authorization: Bearer <SDK key>` metadata")
        })?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be `Bearer <SDK key>`")
            })?;
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
        let mut cache = match self.cache.write() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(hash, (key.clone(), now));
        Ok(key)
    }

    /// The SDK key of gRPC request metadata.
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
        self.authenticate_header(header).await
    }

    fn cached(&self, hash: &str, now: Instant) -> Option<SdkKey> {
        let cache = match self.cache.read() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (key, fetched) = cache.get(hash)?;
        (now.duration_since(*fetched) < KEY_CACHE_TTL && key.is_active(now_millis()))
            .then(|| key.clone())
    }
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
