//! Who is calling: signed admin tokens (JWT, HS256) checked against the storage.
//!
//! A token is accepted when its signature is valid, and the token it names (claim `jti`)
//! exists in the storage with the hash of this exact token string, and is neither revoked
//! nor expired. Roles are read from the storage at every call, so a change of roles or a
//! revocation takes effect at once. SDK keys are recognised and refused on the admin API.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::rate_limit::{AdminRateLimit, RateLimiter};
use crate::storage::secrets::hash_secret;
use crate::storage::{AdminToken, Millis, Role, Storage};

/// Length in bytes of a generated signing secret.
const SECRET_LEN: usize = 32;

/// The claims of an admin token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    /// The token's id in the storage.
    jti: String,
    /// The principal (the audit log's actor).
    sub: String,
    /// Issued at, seconds since the epoch.
    iat: i64,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// A token just signed: hand `token` to its owner once, store `id` and `hash`.
#[derive(Clone)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub hash: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Signs and verifies admin tokens.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and revocation are checked against the storage, which is the authority.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        Signer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a new token for `principal`.
    pub fn issue(
        &self,
        principal: &str,
        expires_at: Option<Millis>,
    ) -> anyhow::Result<IssuedToken> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
        let id = format!("tok_{}", hex::encode(id));
        let claims = Claims {
            jti: id.clone(),
            sub: principal.to_owned(),
            iat: crate::storage::now_millis() / 1000,
            exp: expires_at.map(|ms| ms.div_euclid(1000)),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            id,
            hash: hash_secret(&token),
            token,
        })
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Reads the signing secret at `path`, creating it (readable by the owner only) when missing.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = hex::decode(text.trim())
                .map_err(|_| anyhow::anyhow!("{} does not hold a hex secret", path.display()))?;
            anyhow::ensure!(
                secret.len() >= 16,
                "{} holds a secret shorter than 16 bytes",
                path.display()
            );
            Ok(secret)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; SECRET_LEN];
            getrandom::fill(&mut secret).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
            write_private(path, hex::encode(&secret).as_bytes())?;
            Ok(secret)
        }
        Err(err) => Err(err.into()),
    }
}

/// Writes a new file readable and writable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// An authenticated caller of the admin API.
#[derive(Debug, Clone)]
pub struct Caller {
    token: AdminToken,
}

impl Caller {
    /// The name recorded in the audit log.
    pub fn actor(&self) -> &str {
        &self.token.principal
    }

    pub fn token(&self) -> &AdminToken {
        &self.token
    }

    /// Whether the caller holds at least `role` on `project` ("*": on every project).
    pub fn has(&self, project: &str, role: Role) -> bool {
        self.token.role_on(project).is_some_and(|held| held >= role)
    }

    /// Fails with `PERMISSION_DENIED` unless the caller holds at least `role` on `project`.
    pub fn require(&self, project: &str, role: Role) -> Result<(), Status> {
        if self.has(project, role) {
            Ok(())
        } else if project == "*" {
            Err(Status::permission_denied(format!(
                "this call needs the {} role on every project",
                role.as_str()
            )))
        } else {
            Err(Status::permission_denied(format!(
                "this call needs the {} role on project `{project}`",
                role.as_str()
            )))
        }
    }
}

/// Authenticates admin API calls.
#[derive(Debug, Clone)]
pub struct Authenticator {
    signer: Arc<Signer>,
    storage: Storage,
    limiter: Arc<RateLimiter>,
}

impl Authenticator {
    /// An authenticator with the default rate limit per token.
    pub fn new(signer: Arc<Signer>, storage: Storage) -> Authenticator {
        Authenticator::with_rate_limit(signer, storage, AdminRateLimit::default())
    }

    pub fn with_rate_limit(
        signer: Arc<Signer>,
        storage: Storage,
        limit: AdminRateLimit,
    ) -> Authenticator {
        Authenticator {
            signer,
            storage,
            limiter: Arc::new(RateLimiter::new(limit)),
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The caller named by the `authorization: Bearer …` metadata.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated("missing `authorization: Bearer <token>` metadata")
            })?
            .to_str()
            .map_err(|_| {
                Status::unauthenticated("the authorization metadata is not readable text")
            })?;
        let token = bearer_credential(header, "token")?;
        if token.starts_with("vxl-") {
            return Err(sdk_key_refused());
        }
        let hash = hash_secret(token);
        if let Some(claims) = self.signer.verify(token) {
            if let Some(stored) = self.storage.lookup_admin_token(&hash).await?
                && stored.id == claims.jti
            {
                self.limiter.check(&stored.id, std::time::Instant::now())?;
                return Ok(Caller { token: stored });
            }
            return Err(Status::unauthenticated(
                "the admin token is unknown, revoked or expired",
            ));
        }
        if self.storage.lookup_sdk_key(&hash).await?.is_some() {
            return Err(sdk_key_refused());
        }
        Err(Status::unauthenticated("the admin token is not valid"))
    }
}

/// The credential of an `authorization` value `Bearer <credential>` (the scheme's case
/// aside); refused naming what it should be, `what`.
pub(crate) fn bearer_credential<'a>(header: &'a str, what: &str) -> Result<&'a str, Status> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated(format!(
                "the authorization metadata must be `Bearer <{what}>`"
            ))
        })
}

fn sdk_key_refused() -> Status {
    Status::permission_denied("SDK keys cannot call the admin API; use an admin token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_secret() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let issued = signer.issue("alice", None).unwrap();
        let claims = signer.verify(&issued.token).unwrap();
        assert_eq!(claims.jti, issued.id);
        assert_eq!(claims.sub, "alice");
        let other = Signer::new(b"another secret, another signature");
        assert!(other.verify(&issued.token).is_none());
        assert!(signer.verify("not.a.token").is_none());
        assert!(!format!("{issued:?}").contains(&issued.token));
    }
}
