//! Which web pages may use an environment's client keys: the environment's allowed origins.
//!
//! An entry is an origin as browsers send it (`https://app.example.com`,
//! `http://localhost:5173`), a wildcard for the subdomains of a domain
//! (`https://*.example.com`, which does not match `https://example.com` itself), or `*`, any
//! origin (client keys are public anyway; the list keeps other sites from spending the
//! environment's quota and polluting its events). An empty list allows the pages of this
//! machine only (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`, any port, http or https):
//! development works without configuration and nothing else does until someone says so.

/// Most origins one environment may list.
pub const MAX_ALLOWED_ORIGINS: usize = 100;
/// Longest origin accepted.
const MAX_ORIGIN_LENGTH: usize = 256;

/// Checks and normalises an environment's allowed origins (lower case, no default port, no
/// trailing slash, no duplicates); the error names the field and the entry.
pub fn normalize(field: &str, origins: &[String]) -> Result<Vec<String>, String> {
    if origins.len() > MAX_ALLOWED_ORIGINS {
        return Err(format!(
            "{field}: at most {MAX_ALLOWED_ORIGINS} origins, not {}",
            origins.len()
        ));
    }
    let mut normalized: Vec<String> = Vec::with_capacity(origins.len());
    for (index, entry) in origins.iter().enumerate() {
        let entry = entry.trim();
        let origin = if entry == "*" {
            "*".to_owned()
        } else {
            Origin::parse(entry.strip_suffix('/').unwrap_or(entry), true)
                .map_err(|why| format!("{field}[{index}]: `{entry}` {why}"))?
                .to_string()
        };
        if !normalized.contains(&origin) {
            normalized.push(origin);
        }
    }
    Ok(normalized)
}

/// Whether a page of `origin` (the request's `Origin` header) may call with the keys of an
/// environment that allows `allowed`.
pub fn allows(allowed: &[String], origin: &str) -> bool {
    let Ok(origin) = Origin::parse(origin, false) else {
        return false;
    };
    if allowed.is_empty() {
        return origin.is_loopback();
    }
    allowed.iter().any(|entry| {
        entry == "*" || Origin::parse(entry, true).is_ok_and(|pattern| pattern.matches(&origin))
    })
}

/// `scheme://host[:port]`, lower case, with the scheme's default port left out.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    /// With `*.` in front for a pattern of subdomains.
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(text: &str, pattern: bool) -> Result<Origin, &'static str> {
        if text.len() > MAX_ORIGIN_LENGTH {
            return Err("is too long for an origin");
        }
        let text = text.to_ascii_lowercase();
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("is not an origin: scheme://host[:port] expected")?;
        if scheme != "http" && scheme != "https" {
            return Err("is not an origin: the scheme must be http or https");
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(
                "is not an origin: no path, query, fragment or user, only scheme://host[:port]",
            );
        }
        let (host, port) = split_port(rest)?;
        let name = host.strip_prefix("*.").filter(|_| pattern).unwrap_or(host);
        let valid_name = if name.starts_with('[') {
            name.ends_with(']')
                && name[1..name.len() - 1]
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok()
        } else {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !valid_name {
            return Err("is not an origin: the host is not a name or an address");
        }
        let default_port = if scheme == "http" { 80 } else { 443 };
        Ok(Origin {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port: port.filter(|port| *port != default_port),
        })
    }

    fn matches(&self, origin: &Origin) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => origin
                .host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == origin.host,
        }
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host.ends_with(".localhost")
            || self.host == "[::1]"
            || self
                .host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// `host[:port]`, where an IPv6 host is in brackets.
fn split_port(rest: &str) -> Result<(&str, Option<u16>), &'static str> {
    let colon = match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains(']') => colon,
        _ => return Ok((rest, None)),
    };
    let port = rest[colon + 1..]
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or("is not an origin: the port is not a number from 1 to 65535")?;
    Ok((&rest[..colon], Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn an_empty_list_allows_this_machine_only() {
        for origin in [
            "http://localhost:5173",
            "http://127.0.0.1:8080",
            "https://localhost",
            "http://[::1]:3000",
            "http://app.localhost:3000",
        ] {
            assert!(allows(&[], origin), "{origin}");
        }
        for origin in [
            "https://example.com",
            "http://localhost.example.com",
            "http://10.0.0.1",
            "null",
            "",
        ] {
            assert!(!allows(&[], origin), "{origin}");
        }
    }

    #[test]
    fn exact_origins_compare_scheme_host_and_port() {
        let allowed = normalize(
            "allowed_origins",
            &list(&["HTTPS://App.Example.com:443/", "http://localhost:3000"]),
        )
        .unwrap();
        assert_eq!(
            allowed,
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert!(allows(&allowed, "https://app.example.com"));
        assert!(allows(&allowed, "https://app.example.com:443"));
        assert!(!allows(&allowed, "http://app.example.com"));
        assert!(!allows(&allowed, "https://app.example.com:8443"));
        assert!(!allows(&allowed, "https://evil-app.example.com"));
        // A list replaces the development default.
        assert!(!allows(&allowed, "http://localhost:5173"));
    }

    #[test]
    fn a_wildcard_matches_subdomains_not_the_domain() {
        let allowed = list(&["https://*.example.com"]);
        assert!(allows(&allowed, "https://a.example.com"));
        assert!(allows(&allowed, "https://a.b.example.com"));
        assert!(!allows(&allowed, "https://example.com"));
        assert!(!allows(&allowed, "https://badexample.com"));
        assert!(!allows(&allowed, "http://a.example.com"));
        assert!(allows(&list(&["*"]), "https://anything.test"));
    }

    #[test]
    fn bad_entries_are_refused_with_their_field_and_index() {
        let cases = [
            (
                "example.com",
                "allowed_origins[1]: `example.com` is not an origin",
            ),
            ("ftp://example.com", "the scheme must be http or https"),
            ("https://example.com/app", "no path"),
            ("https://example.com:99999", "the port"),
            ("https://exa mple.com", "the host"),
            ("https://*.", "the host"),
        ];
        for (entry, message) in cases {
            let error = normalize("allowed_origins", &list(&["*", entry])).unwrap_err();
            assert!(error.contains(message), "{entry}: {error}");
            assert!(error.starts_with("allowed_origins[1]: "), "{error}");
        }
        let many: Vec<String> = (0..=MAX_ALLOWED_ORIGINS)
            .map(|i| format!("https://{i}.example.com"))
            .collect();
        assert!(
            normalize("allowed_origins", &many)
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn duplicates_are_kept_once() {
        let allowed =
            normalize("o", &list(&["https://a.test", "HTTPS://A.TEST/", "*", "*"])).unwrap();
        assert_eq!(allowed, ["https://a.test", "*"]);
    }
}
