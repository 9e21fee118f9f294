//! Reading a flag key out of a Java string on every variation call, without the allocation
//! (and the JVM's own allocation behind `GetStringUTFChars`) that a general string conversion
//! costs: the UTF-16 units are copied with `GetStringRegion` into a buffer on the stack and
//! converted to UTF-8 into another, for keys of up to [`STACK_UNITS`] units; longer keys take a
//! heap buffer. The hot calls also pass the key's length from Java (`String.length` is free
//! there), which saves the JNI call that would ask for it: every JNI function costs a
//! transition into the VM, with a memory fence.

use jni::sys::{self, jchar, jsize, jstring};

use crate::failure::Failure;

/// Flag keys are short identifiers; this covers them with room to spare.
const STACK_UNITS: usize = 64;
/// One UTF-16 unit never needs more than three UTF-8 bytes (a surrogate pair, two units, four).
const STACK_BYTES: usize = STACK_UNITS * 3;

/// Calls `use_key` with the text of the Java string `key`, whose length in UTF-16 units is
/// `length` when the caller knows it (`None`: asked from the JVM).
///
/// An unpaired surrogate (which no flag key can contain) becomes U+FFFD, as with any lossy
/// conversion: such a key is reported as not found.
///
/// # Safety
/// `env` must be the JNI environment of the current thread, inside a native call, with no
/// exception pending; `key` must be null or a live reference to a `java.lang.String`. A
/// `length` beyond the string's makes the JVM throw `StringIndexOutOfBoundsException` (pending
/// when the native method returns), never read out of bounds.
pub(crate) unsafe fn with_flag_key<R>(
    env: *mut sys::JNIEnv,
    key: jstring,
    length: Option<jsize>,
    use_key: impl FnOnce(&str) -> R,
) -> Result<R, Failure> {
    if key.is_null() {
        return Err(Failure::new(
            vexil_core::ErrorCode::NullArgument,
            "flagKey: must not be null",
        ));
    }
    // SAFETY: per the contract, `env` is a valid environment; GetStringRegion is JNI 1.2,
    // which every JVM this library loads in provides.
    let interface = unsafe { &**env };
    let length = match length {
        Some(length) if length >= 0 => length,
        // SAFETY: `key` is a live, non-null String reference.
        _ => unsafe { (interface.v1_1.GetStringLength)(env, key) },
    };
    let units = usize::try_from(length).unwrap_or(0);
    if units <= STACK_UNITS {
        let mut utf16 = [0 as jchar; STACK_UNITS];
        // SAFETY: the buffer holds `length` units; the JVM checks the range against the string.
        unsafe { (interface.v1_2.GetStringRegion)(env, key, 0, length, utf16.as_mut_ptr()) };
        let mut utf8 = [0u8; STACK_BYTES];
        let text = utf16_to_utf8(&utf16[..units], &mut utf8);
        Ok(use_key(text))
    } else {
        let mut utf16 = vec![0 as jchar; units];
        let length = jsize::try_from(units).unwrap_or(0);
        // SAFETY: as above, with a heap buffer of `length` units.
        unsafe { (interface.v1_2.GetStringRegion)(env, key, 0, length, utf16.as_mut_ptr()) };
        Ok(use_key(&String::from_utf16_lossy(&utf16)))
    }
}

/// Converts UTF-16 to UTF-8 in `out`, which must hold three bytes per unit. ASCII, what keys
/// nearly always are, is copied byte by byte.
fn utf16_to_utf8<'a>(units: &[u16], out: &'a mut [u8]) -> &'a str {
    let mut written = 0;
    if units.iter().all(|&unit| unit < 0x80) {
        for (byte, &unit) in out.iter_mut().zip(units) {
            // Lossless: every unit is below 0x80.
            *byte = unit as u8;
        }
        written = units.len();
    } else {
        for decoded in char::decode_utf16(units.iter().copied()) {
            let character = decoded.unwrap_or(char::REPLACEMENT_CHARACTER);
            written += character.encode_utf8(&mut out[written..]).len();
        }
    }
    // SAFETY: the bytes are ASCII, or whole characters encoded by `encode_utf8` (this skips a
    // validation pass that would cost as much as the conversion).
    unsafe { std::str::from_utf8_unchecked(&out[..written]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &[u16]) -> String {
        let mut out = vec![0u8; text.len() * 3];
        utf16_to_utf8(text, &mut out).to_owned()
    }

    #[test]
    fn ascii_keys_are_copied() {
        let key: Vec<u16> = "new-checkout_2".encode_utf16().collect();
        assert_eq!(convert(&key), "new-checkout_2");
        assert_eq!(convert(&[]), "");
    }

    #[test]
    fn other_characters_are_encoded() {
        for text in ["café", "ключ", "旗標", "flag-😀-x"] {
            let key: Vec<u16> = text.encode_utf16().collect();
            assert_eq!(convert(&key), text);
        }
    }

    #[test]
    fn unpaired_surrogates_become_replacement_characters() {
        assert_eq!(convert(&[0x61, 0xD800, 0x62]), "a\u{FFFD}b");
        assert_eq!(convert(&[0xDC00]), "\u{FFFD}");
    }

    #[test]
    fn the_stack_buffer_holds_the_worst_case() {
        // Every unit a three-byte character, or an unpaired surrogate.
        let wide = vec![0x65E5u16; STACK_UNITS];
        let mut out = [0u8; STACK_BYTES];
        assert_eq!(utf16_to_utf8(&wide, &mut out).chars().count(), STACK_UNITS);
        let lone = vec![0xD800u16; STACK_UNITS];
        assert_eq!(utf16_to_utf8(&lone, &mut out).chars().count(), STACK_UNITS);
    }
}
