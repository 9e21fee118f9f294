//! Semantic Versioning 2.0 parsing and precedence, borrowing from the input so that
//! comparing versions allocates nothing.
//!
//! Leniency: `1` and `1.2` read as `1.0.0` and `1.2.0`. Build metadata is ignored. Numeric
//! identifiers (major, minor, patch, and numeric pre-release identifiers) with a leading zero
//! are not versions (Semantic Versioning 2.0, item 2 and 9): `02.0.0` matches nothing.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    /// Dot-separated pre-release identifiers; empty for a release.
    pre: &'a str,
}

/// A version parsed once and kept, for clause values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedVersion {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Box<str>,
}

impl OwnedVersion {
    pub fn parse(text: &str) -> Option<OwnedVersion> {
        Version::parse(text).map(|v| OwnedVersion {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            pre: v.pre.into(),
        })
    }

    pub fn borrow(&self) -> Version<'_> {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
        }
    }
}

fn parse_number(s: &str) -> Option<u64> {
    // Empty, or a leading zero before another digit (`01`), which SemVer forbids.
    if s.is_empty() || (s.len() > 1 && s.as_bytes()[0] == b'0') {
        return None;
    }
    // By hand rather than `str::parse`: same result (digits only, `None` on overflow), a
    // fraction of the cost on the evaluation path, where the context's version is parsed.
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Pre-release identifiers: [`valid_identifiers`], and no numeric one with a leading zero.
fn valid_prerelease(s: &str) -> bool {
    valid_identifiers(s)
        && s.split('.').all(|id| {
            id.len() == 1 || !id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Dot-separated identifiers, each non-empty and made of `[0-9A-Za-z-]`.
fn valid_identifiers(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes[0] != b'.'
        && bytes[bytes.len() - 1] != b'.'
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !bytes.windows(2).any(|w| w == b"..")
}

/// The position of the first `needle` byte (a byte loop: these strings are a few bytes
/// long, too short for `memchr` to pay off).
#[inline]
fn find_byte(s: &str, needle: u8) -> Option<usize> {
    s.bytes().position(|b| b == needle)
}

impl<'a> Version<'a> {
    pub fn parse(text: &'a str) -> Option<Version<'a>> {
        let rest = match find_byte(text, b'+') {
            Some(i) => {
                if !valid_identifiers(&text[i + 1..]) {
                    return None;
                }
                &text[..i]
            }
            None => text,
        };
        let (core, pre) = match find_byte(rest, b'-') {
            Some(i) => {
                let pre = &rest[i + 1..];
                if !valid_prerelease(pre) {
                    return None;
                }
                (&rest[..i], pre)
            }
            None => (rest, ""),
        };
        let (major, minor, patch) = match find_byte(core, b'.') {
            None => (core, None, None),
            Some(i) => {
                let after = &core[i + 1..];
                match find_byte(after, b'.') {
                    None => (&core[..i], Some(after), None),
                    Some(j) => (&core[..i], Some(&after[..j]), Some(&after[j + 1..])),
                }
            }
        };
        // A fourth part shows up as a dot in the third, which `parse_number` refuses.
        Some(Version {
            major: parse_number(major)?,
            minor: minor.map_or(Some(0), parse_number)?,
            patch: patch.map_or(Some(0), parse_number)?,
            pre,
        })
    }

    /// Precedence as defined by Semantic Versioning 2.0, section 11.
    pub fn precedence(&self, other: &Version<'_>) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| compare_prerelease(self.pre, other.pre))
    }
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        // A release has higher precedence than any of its pre-releases.
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (parse_number(x), parse_number(y)) {
                    (Some(nx), Some(ny)) => nx.cmp(&ny),
                    // Numeric identifiers have lower precedence than alphanumeric ones.
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version<'_> {
        Version::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn specification_order() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                v(pair[0]).precedence(&v(pair[1])),
                Ordering::Less,
                "{pair:?}"
            );
            assert_eq!(
                v(pair[1]).precedence(&v(pair[0])),
                Ordering::Greater,
                "{pair:?}"
            );
        }
    }

    #[test]
    fn lenient_forms_and_build_metadata() {
        assert_eq!(v("1").precedence(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("1.2").precedence(&v("1.2.0")), Ordering::Equal);
        assert_eq!(v("1.2.3+build.5").precedence(&v("1.2.3")), Ordering::Equal);
        assert_eq!(v("1.2-rc.1").precedence(&v("1.2.0-rc.1")), Ordering::Equal);
        assert_eq!(
            v("18446744073709551615.0.0-x-y.1+b-c.2").precedence(&v("18446744073709551615")),
            Ordering::Less
        );
        assert_eq!(v("1.2.3-a-b").pre, "a-b");
        // Zero itself, alphanumeric identifiers and build metadata may start with 0.
        assert_eq!(v("0.0.0-0.0a.01a+001").pre, "0.0a.01a");
        assert_eq!(v("1.2.3+007").precedence(&v("1.2.3")), Ordering::Equal);
    }

    /// The parser as first written (with `split_once` and `str::parse`), kept to check
    /// that the hand-written one accepts and reads exactly the same strings.
    fn reference_parse(text: &str) -> Option<(u64, u64, u64, &str)> {
        fn numeric(s: &str) -> bool {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
        }
        fn number(s: &str) -> Option<u64> {
            if !numeric(s) || (s.len() > 1 && s.starts_with('0')) {
                return None;
            }
            s.parse().ok()
        }
        fn identifiers(s: &str) -> bool {
            s.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        }
        fn prerelease(s: &str) -> bool {
            identifiers(s)
                && s.split('.')
                    .all(|id| !(numeric(id) && id.len() > 1 && id.starts_with('0')))
        }
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        if build.is_some_and(|b| !identifiers(b)) {
            return None;
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) if prerelease(pre) => (core, pre),
            Some(_) => return None,
            None => (rest, ""),
        };
        let mut parts = core.split('.');
        let major = number(parts.next()?)?;
        let minor = parts.next().map_or(Some(0), number)?;
        let patch = parts.next().map_or(Some(0), number)?;
        if parts.next().is_some() {
            return None;
        }
        Some((major, minor, patch, pre))
    }

    #[test]
    fn parses_exactly_like_the_reference() {
        let alphabet = ['0', '1', '9', '.', '-', '+', 'a', '_'];
        let mut texts = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..6 {
            let mut next = Vec::new();
            for text in &frontier {
                for c in alphabet {
                    next.push(format!("{text}{c}"));
                }
            }
            texts.extend(next.iter().cloned());
            frontier = next;
        }
        texts.push("18446744073709551615.18446744073709551616.0".into());
        texts.push("1.2.3-rc.1+build.5".into());
        for text in &texts {
            let parsed = Version::parse(text).map(|v| (v.major, v.minor, v.patch, v.pre));
            assert_eq!(parsed, reference_parse(text), "{text:?}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "v1.2.3",
            "1.2.3.4",
            "1..2",
            "a.b.c",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            " 1.2.3",
            "1.-2.3",
            "1.2.3-a.",
            "1.2.3-.a",
            "1.2.3+b..c",
            "1.2.3+b+c",
            "1.2.",
            ".1.2",
            "1..",
            "18446744073709551616.0.0",
            "1.2.3-a_b",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "00",
            "1.0.0-rc.01",
            "1.0.0-00",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
