//! Finding a flag by key: an open-addressing table of positions, probed with a hash that
//! reads the key a word at a time. A general-purpose map hashes byte by byte and compares
//! keys through `memcmp`; for the short keys of flags this table is several times cheaper,
//! and it stores no copy of the keys (they stay in the ruleset's flag list).

use crate::context::{short_eq, word4, word8};

/// Positions of keys in a list, which the caller passes back on lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyIndex {
    /// (hash, position + 1); 0 marks an empty slot. At most half full, so probes are short
    /// and always reach an empty slot.
    slots: Box<[(u64, usize)]>,
    /// `64 - log2(slots.len())`: the slot of a hash is its top bits, the best mixed.
    shift: u32,
}

impl KeyIndex {
    /// Indexes distinct keys by their position in `keys`.
    pub(crate) fn new<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> KeyIndex {
        let capacity = (keys.len() * 2).max(8).next_power_of_two();
        let mask = capacity - 1;
        let shift = 64 - capacity.trailing_zeros();
        let mut slots = vec![(0u64, 0usize); capacity].into_boxed_slice();
        for (position, key) in keys.enumerate() {
            let hash = hash_key(key.as_bytes());
            let mut i = (hash >> shift) as usize;
            while slots[i].1 != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (hash, position + 1);
        }
        KeyIndex { slots, shift }
    }

    /// The position of `key`, given the key at each position.
    #[inline(always)]
    pub(crate) fn get<'k>(&self, key: &str, key_at: impl Fn(usize) -> &'k str) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let hash = hash_key(key.as_bytes());
        let mut i = (hash >> self.shift) as usize;
        loop {
            let (stored, position) = *self.slots.get(i)?;
            if position == 0 {
                return None;
            }
            if stored == hash && short_eq(key_at(position - 1), key) {
                return Some(position - 1);
            }
            i = (i + 1) & mask;
        }
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A fast hash for short keys. Each step is a bijection of the state (xor, then multiply
/// by an odd constant), so the top bits of the result depend on every input bit.
///
/// Up to 8 bytes, the word mixed in holds every byte of the key, so two keys of the same
/// length up to 8 bytes have the same hash only when they are equal (name lookups rely on
/// it to skip comparing the bytes).
#[inline]
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    let n = key.len();
    let mut h = (n as u64 ^ K).wrapping_mul(K);
    match n {
        0 => {}
        1..=3 => {
            let w = u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16;
            h = (h ^ w).wrapping_mul(K);
        }
        4..=8 => {
            let w = u64::from(word4(key, 0)) << 32 | u64::from(word4(key, n - 4));
            h = (h ^ w).wrapping_mul(K);
        }
        // The loop below, unrolled for its commonest length (one word, then the last).
        9..=16 => {
            h = (h ^ word8(key, 0)).wrapping_mul(K);
            h = (h ^ word8(key, n - 8)).wrapping_mul(K);
        }
        _ => {
            let mut i = 0;
            while i + 8 < n {
                h = (h ^ word8(key, i)).wrapping_mul(K);
                i += 8;
            }
            h = (h ^ word8(key, n - 8)).wrapping_mul(K);
        }
    }
    // Fold the well-mixed high half into the low half before the final multiply.
    (h ^ (h >> 29)).wrapping_mul(K)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let keys: Vec<String> = (0..1000)
            .map(|i| format!("flag-{i}"))
            .chain(["", "a", "ab", "abc", "abcd", "a-much-longer-flag-key.v2"].map(String::from))
            .collect();
        let index = KeyIndex::new(keys.iter().map(String::as_str));
        let key_at = |p: usize| keys[p].as_str();
        for (position, key) in keys.iter().enumerate() {
            assert_eq!(index.get(key, key_at), Some(position), "{key}");
        }
        for missing in [
            "flag-1000",
            "flag-",
            "b",
            "abce",
            "a-much-longer-flag-key.v3",
        ] {
            assert_eq!(index.get(missing, key_at), None, "{missing}");
        }
        assert_eq!(KeyIndex::default().get("a", key_at), None);
        assert_eq!(KeyIndex::new(std::iter::empty()).get("a", key_at), None);
    }

    /// The general loop `hash_key` unrolls for 9 to 16 bytes.
    fn hash_by_loop(key: &[u8]) -> u64 {
        let n = key.len();
        let mut h = (n as u64 ^ K).wrapping_mul(K);
        let mut i = 0;
        while i + 8 < n {
            h = (h ^ word8(key, i)).wrapping_mul(K);
            i += 8;
        }
        h = (h ^ word8(key, n - 8)).wrapping_mul(K);
        (h ^ (h >> 29)).wrapping_mul(K)
    }

    #[test]
    fn unrolled_lengths_hash_like_the_loop() {
        let text = b"0123456789abcdefghijklmnopqrstuvwxyz";
        for n in 9..=text.len() {
            for start in 0..=text.len() - n {
                let key = &text[start..start + n];
                assert_eq!(hash_key(key), hash_by_loop(key), "{n}");
            }
        }
    }

    /// Name lookups skip comparing the bytes of names up to 8 bytes whose hashes and
    /// lengths are equal. Every string of up to 3 bytes over a small alphabet, and many of
    /// 4 to 8, hash apart.
    #[test]
    fn short_keys_of_one_length_never_share_a_hash() {
        use std::collections::HashMap;
        let alphabet = b"ab0~\xff";
        let mut seen: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
        let mut check = |key: Vec<u8>| {
            if let Some(other) = seen.insert((key.len(), hash_key(&key)), key.clone()) {
                assert_eq!(other, key, "two keys share a hash");
            }
        };
        for n in 0..=3u32 {
            for i in 0..alphabet.len().pow(n) {
                let mut rest = i;
                let key = (0..n)
                    .map(|_| {
                        let b = alphabet[rest % alphabet.len()];
                        rest /= alphabet.len();
                        b
                    })
                    .collect();
                check(key);
            }
        }
        // 4 to 8 bytes: every key differing from a base in one or two bytes.
        for n in 4..=8 {
            let base: Vec<u8> = (0..n as u8).collect();
            for i in 0..n {
                for j in i..n {
                    for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                        let mut key = base.clone();
                        key[i] = b;
                        key[j] ^= b;
                        check(key);
                    }
                }
            }
        }
    }
}
