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
    let mut h = seed;
    let mut pending = [0u8; 4];
    let mut pending_len = 0usize;
    let mut total_len: usize = 0;
    for part in parts {
        total_len += part.len();
        let mut bytes: &[u8] = part;
        if pending_len > 0 {
            let take = (4 - pending_len).min(bytes.len());
            pending[pending_len..pending_len + take].copy_from_slice(&bytes[..take]);
            pending_len += take;
            bytes = &bytes[take..];
            if pending_len < 4 {
                continue;
            }
            h = mix_block(h, u32::from_le_bytes(pending));
        }
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            h = mix_block(
                h,
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            );
        }
        let rest = chunks.remainder();
        pending[..rest.len()].copy_from_slice(rest);
        pending_len = rest.len();
    }
    if pending_len > 0 {
        let mut k: u32 = 0;
        for (i, byte) in pending[..pending_len].iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    // The length is mixed in modulo 2^32, as the reference implementation does.
    h ^= total_len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
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
