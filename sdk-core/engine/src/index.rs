//! Finding a flag by key: an open-addressing table of positions, probed with a hash that
//! reads the key a word at a time. A general-purpose map hashes byte by byte and compares
//! keys through `memcmp`; for the short keys of flags this table is several times cheaper,
//! and it stores no copy of the keys (they stay in the ruleset's flag list).

use crate::short_strings::{hash_key, short_eq};

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
}
