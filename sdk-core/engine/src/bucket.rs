//! Bucketing: the `murmur3_v1` hash of `{salt}:{value}` scaled to [0, 100000). The ruleset
//! hashes each rollout's `{salt}:` once when it is built; evaluation finishes the hash with
//! the context's value.

use crate::model::TOTAL_WEIGHT;
use crate::murmur3::Murmur3;

/// The `murmur3_v1` bucket of `{salt}:{value}`, in [0, 100000).
pub fn bucket(salt: &str, value: &[u8]) -> u32 {
    bucket_after(&bucket_prefix(salt), value)
}

/// The hash state after `{salt}:`, computed once per rollout when the ruleset is built.
pub(crate) fn bucket_prefix(salt: &str) -> Murmur3 {
    let mut state = Murmur3::new(0);
    state.update(salt.as_bytes());
    state.update(b":");
    state
}

/// The bucket of `{salt}:{value}`, from the state after `{salt}:`.
#[inline]
pub(crate) fn bucket_after(prefix: &Murmur3, value: &[u8]) -> u32 {
    let mut state = *prefix;
    state.update(value);
    ((u64::from(state.finish()) * u64::from(TOTAL_WEIGHT)) >> 32) as u32
}
