//! MurmurHash3 x86_32, computed over several byte slices as if they were one, so that
//! bucketing hashes `{salt}:{value}` without building that string.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix_block(h: u32, block: u32) -> u32 {
    let k = block.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Hashes the concatenation of `parts` with the given seed.
pub fn murmur3_x86_32(parts: &[&[u8]], seed: u32) -> u32 {
    let mut state = Murmur3::new(seed);
    for part in parts {
        state.update(part);
    }
    state.finish()
}

/// A hash in progress. Cloning it after a common prefix (a rollout's `{salt}:`) lets each
/// evaluation hash only the bytes that differ.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Murmur3 {
    h: u32,
    /// Bytes of an incomplete block, little-endian, and how many there are (0 to 3).
    pending: u32,
    pending_len: u32,
    /// Bytes hashed so far, modulo 2^32 as the reference implementation mixes it in.
    total_len: u32,
}

impl Murmur3 {
    pub(crate) fn new(seed: u32) -> Murmur3 {
        Murmur3 {
            h: seed,
            pending: 0,
            pending_len: 0,
            total_len: 0,
        }
    }

    #[inline]
    pub(crate) fn update(&mut self, mut bytes: &[u8]) {
        self.total_len = self.total_len.wrapping_add(bytes.len() as u32);
        // Complete a pending block first (at most 3 bytes, one at a time).
        while self.pending_len > 0 {
            let Some((&byte, rest)) = bytes.split_first() else {
                return;
            };
            self.pending |= u32::from(byte) << (8 * self.pending_len);
            self.pending_len += 1;
            bytes = rest;
            if self.pending_len == 4 {
                self.h = mix_block(self.h, self.pending);
                self.pending = 0;
                self.pending_len = 0;
            }
        }
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            self.h = mix_block(
                self.h,
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            );
        }
        for (i, &byte) in chunks.remainder().iter().enumerate() {
            self.pending |= u32::from(byte) << (8 * i);
        }
        self.pending_len = chunks.remainder().len() as u32;
    }

    #[inline]
    pub(crate) fn finish(self) -> u32 {
        let mut h = self.h;
        if self.pending_len > 0 {
            h ^= self
                .pending
                .wrapping_mul(C1)
                .rotate_left(15)
                .wrapping_mul(C2);
        }
        h ^= self.total_len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::murmur3_x86_32;

    fn one(s: &str, seed: u32) -> u32 {
        murmur3_x86_32(&[s.as_bytes()], seed)
    }

    #[test]
    fn reference_values() {
        // Published test values of MurmurHash3_x86_32.
        assert_eq!(one("", 0), 0);
        assert_eq!(one("", 1), 0x514E_28B7);
        assert_eq!(one("", 0xffff_ffff), 0x81F1_6F39);
        assert_eq!(one("\0\0\0\0", 0), 0x2362_F9DE);
        assert_eq!(one("aaaa", 0x9747_b28c), 0x5A97_808A);
        assert_eq!(one("aaa", 0x9747_b28c), 0x283E_0130);
        assert_eq!(one("aa", 0x9747_b28c), 0x5D21_1726);
        assert_eq!(one("a", 0x9747_b28c), 0x7FA0_9EA6);
        assert_eq!(one("abcd", 0x9747_b28c), 0xF047_8627);
        assert_eq!(one("Hello, world!", 0x9747_b28c), 0x2488_4CBA);
        assert_eq!(
            one("The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2FA8_26CD
        );
    }

    #[test]
    fn split_input_hashes_like_joined_input() {
        let text = "salt-of-the-flag:user-key-1234567";
        let whole = one(text, 0);
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let parts = [
                    &text.as_bytes()[..i],
                    &text.as_bytes()[i..j],
                    &text.as_bytes()[j..],
                ];
                assert_eq!(murmur3_x86_32(&parts, 0), whole, "split at {i},{j}");
            }
        }
    }
}
