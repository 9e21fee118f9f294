//! Secrets: SDK keys are generated here, and only a hash of any secret is ever stored.

use sha2::{Digest, Sha256};

use super::SdkKeyKind;

/// How many characters of a secret are kept, in the clear, for people to recognise it.
pub const PREFIX_LEN: usize = 12;

/// A freshly generated secret: hand `secret` to its owner once, store `prefix` and `hash`.
#[derive(Clone)]
pub struct GeneratedSecret {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

impl std::fmt::Debug for GeneratedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedSecret")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The stored form of a secret: lowercase hex SHA-256 of its UTF-8 bytes.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Generates an SDK key: `vxl-<kind>-` followed by 32 random bytes in hex, such as
/// `vxl-server-3f9a…`. The kind is readable in the key so that a leaked key is easy to triage.
pub fn generate_sdk_key(kind: SdkKeyKind) -> Result<GeneratedSecret, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!("vxl-{}-{}", kind.as_str(), hex::encode(bytes));
    let prefix_len = format!("vxl-{}-", kind.as_str()).len() + 6;
    Ok(GeneratedSecret {
        prefix: secret[..prefix_len.max(PREFIX_LEN)].to_owned(),
        hash: hash_secret(&secret),
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_keys_differ_and_carry_their_kind() {
        let a = generate_sdk_key(SdkKeyKind::Client).unwrap();
        let b = generate_sdk_key(SdkKeyKind::Client).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("vxl-client-"));
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_secret(&a.secret));
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
