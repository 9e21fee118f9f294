//! Hashing and comparing short strings a machine word at a time.
//!
//! Flag keys, context kinds, attribute names and clause values are short, and for them a few
//! word loads beat a byte loop, `memcmp` or a general-purpose hasher. The flag index hashes
//! keys with [`hash_key`]; contexts and compiled rules carry names hashed the same way and
//! compare texts with [`short_eq`]. Both build on these helpers, which depend on nothing else
//! in the crate.

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
        _ => h = mix_words(h, key),
    }
    finish(h)
}

/// Mixes every word of a key longer than 8 bytes into `h`, the last one ending at the key's
/// end (it may overlap the one before).
#[inline]
fn mix_words(mut h: u64, key: &[u8]) -> u64 {
    let n = key.len();
    let mut i = 0;
    while i + 8 < n {
        h = (h ^ word8(key, i)).wrapping_mul(K);
        i += 8;
    }
    (h ^ word8(key, n - 8)).wrapping_mul(K)
}

/// Folds the well-mixed high half into the low half before the final multiply.
#[inline]
fn finish(h: u64) -> u64 {
    (h ^ (h >> 29)).wrapping_mul(K)
}

/// String equality that compares lengths, then the bytes inline a word at a time:
/// attribute names, kinds and clause values are short, and a call to `memcmp` (or a
/// byte-by-byte loop) costs more than a few word comparisons.
#[inline]
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    match n {
        0 => true,
        // Three probes cover every byte of a 1 to 3 byte string.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        // Two overlapping 4-byte words cover 4 to 8 bytes.
        4..=8 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        // And two 8-byte words 9 to 16 (the loop below, unrolled for its commonest case).
        9..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if word8(a, i) != word8(b, i) {
                    return false;
                }
                i += 8;
            }
            // The last word may overlap the previous one.
            word8(a, n - 8) == word8(b, n - 8)
        }
    }
}

/// The 4 bytes of `s` at `at`, as a word (native byte order).
#[inline(always)]
pub(crate) fn word4(s: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(w)
}

/// The 8 bytes of `s` at `at`, as a word (native byte order).
#[inline(always)]
pub(crate) fn word8(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_eq_agrees_with_eq() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "abd",
            "xbc",
            "user",
            "usex",
            "email",
            "emaik",
            "country",
            "countrx",
            "xountry",
            "app_vers",
            "app_verx",
            "app_version",
            "app_versiox",
            "xpp_version",
            "app_xersion",
            "app_vexsion",
            "abcdefghi",
            "abcdefghj",
            "xbcdefghi",
            "abcdefgxi",
            "abcdefghijklmnop",
            "abcdefghijklmnox",
            "abcdefgxijklmnop",
            "abcdefghxjklmnop",
            "abcdefghijklmnopq",
            "some-longer-name-0123456789",
            "some-longer-name-0123456788",
            "some-longer-nXme-0123456789",
        ];
        for a in words {
            for b in words {
                assert_eq!(short_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// The general loop `hash_key` unrolls for 9 to 16 bytes.
    fn hash_by_loop(key: &[u8]) -> u64 {
        let h = (key.len() as u64 ^ K).wrapping_mul(K);
        finish(mix_words(h, key))
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
