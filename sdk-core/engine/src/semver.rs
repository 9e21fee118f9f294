//! Semantic Versioning 2.0 parsing and precedence, borrowing from the input so that
//! comparing versions allocates nothing.
//!
//! Leniency: `1` and `1.2` read as `1.0.0` and `1.2.0`. Build metadata is ignored.

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
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn valid_identifiers(s: &str) -> bool {
    s.split('.')
        .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl<'a> Version<'a> {
    pub fn parse(text: &'a str) -> Option<Version<'a>> {
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        if let Some(build) = build
            && !valid_identifiers(build)
        {
            return None;
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => {
                if !valid_identifiers(pre) {
                    return None;
                }
                (core, pre)
            }
            None => (rest, ""),
        };
        let mut parts = core.split('.');
        let major = parse_number(parts.next()?)?;
        let minor = match parts.next() {
            Some(p) => parse_number(p)?,
            None => 0,
        };
        let patch = match parts.next() {
            Some(p) => parse_number(p)?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
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
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
