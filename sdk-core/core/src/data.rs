//! The data a client evaluates with, where it came from, and its copy on disk.
//!
//! # The cache file
//!
//! `<cache dir>/vexil-<first 16 hex of SHA-256(sdk key)>.json`: one file per SDK key, so
//! that an application upgrade (same key) finds it, and two keys never mix. Its first line is
//! a header, `{"format": 2, "saved_at": ms, "version": n, "kind": "ruleset"|"values",
//! "context": …, "checksum": "crc32:…"}`; the rest of the file is the payload, JSON
//! text kept as written so that loading parses it once. It is written to a temporary file,
//! flushed and renamed over the old one, so a crash leaves either file whole. A file that
//! does not parse, has another format or a wrong checksum is ignored with a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use vexil_engine::{Reason, Ruleset};

use crate::summaries::SummaryCounters;

/// Version of the cache file layout; files of another format are ignored.
const CACHE_FORMAT: u32 = 2;

/// Where the data being served came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Source {
    /// Live from the server: the stream is up.
    Network,
    /// From the server, but the connection is lost (or the cached data is older than the
    /// maximum age): the last good data.
    Stale,
    /// Read from the cache file at start, not yet confirmed by the server.
    Cache,
    /// From the bootstrap file.
    Bootstrap,
    /// No data at all: the caller's defaults.
    Defaults,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Network => "NETWORK",
            Source::Stale => "STALE",
            Source::Cache => "CACHE",
            Source::Bootstrap => "BOOTSTRAP",
            Source::Defaults => "DEFAULTS",
        }
    }
}

/// A value served remotely (client and mobile keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteValue {
    /// `None`: the flag could not be served (its reason says why).
    pub value: Option<Value>,
    pub variation: Option<usize>,
    pub reason: Reason<String>,
    #[serde(default)]
    pub in_experiment: bool,
    #[serde(default)]
    pub experiment_key: Option<String>,
    #[serde(default)]
    pub flag_version: i64,
}

/// What the client evaluates with.
#[derive(Debug)]
pub enum Data {
    /// Nothing yet.
    Empty,
    /// A ruleset, evaluated in process.
    Ruleset {
        ruleset: Ruleset,
        version: i64,
        source: Source,
        /// When the data was received from the server (ms since the epoch).
        received_at: i64,
        /// Evaluations of this ruleset's flags, for the summaries.
        counters: SummaryCounters,
    },
    /// Values evaluated by the server for one context.
    Values {
        values: HashMap<String, RemoteValue>,
        /// The context they were evaluated for (canonical JSON).
        context: Value,
        version: i64,
        source: Source,
        received_at: i64,
    },
}

impl Data {
    pub fn version(&self) -> i64 {
        match self {
            Data::Empty => 0,
            Data::Ruleset { version, .. } | Data::Values { version, .. } => *version,
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Data::Empty => Source::Defaults,
            Data::Ruleset { source, .. } | Data::Values { source, .. } => *source,
        }
    }

    pub fn received_at(&self) -> i64 {
        match self {
            Data::Empty => 0,
            Data::Ruleset { received_at, .. } | Data::Values { received_at, .. } => *received_at,
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The cache file of an SDK key in `dir`.
pub fn cache_path(dir: &Path, sdk_key: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(sdk_key.as_bytes()));
    dir.join(format!("vexil-{}.json", &digest[..16]))
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheHeader {
    format: u32,
    saved_at: i64,
    version: i64,
    kind: String,
    #[serde(default)]
    context: Value,
    checksum: String,
}

/// What a cache file held.
#[derive(Debug)]
pub enum Cached {
    Ruleset {
        ruleset: Ruleset,
        version: i64,
        saved_at: i64,
    },
    Values {
        values: HashMap<String, RemoteValue>,
        context: Value,
        version: i64,
        saved_at: i64,
    },
}

/// CRC-32 of the payload: it catches torn and damaged files (not tampering, which needs
/// write access to the application's own folder anyway) at memory speed, where a SHA-256
/// would take about 15 ms of a 10,000-flag start-up.
fn checksum(payload: &[u8]) -> String {
    format!("crc32:{:08x}", crc32fast::hash(payload))
}

/// Writes `data` to `path` atomically (temporary file, flush, rename).
pub fn save(path: &Path, data: &Data) -> std::io::Result<()> {
    let (kind, payload, context, version) = match data {
        Data::Empty => return Ok(()),
        Data::Ruleset {
            ruleset, version, ..
        } => (
            "ruleset",
            ruleset.to_value().to_string(),
            Value::Null,
            *version,
        ),
        Data::Values {
            values,
            context,
            version,
            ..
        } => (
            "values",
            serde_json::to_string(values).map_err(std::io::Error::other)?,
            context.clone(),
            *version,
        ),
    };
    let header = CacheHeader {
        format: CACHE_FORMAT,
        saved_at: now_millis(),
        version,
        kind: kind.into(),
        context,
        checksum: checksum(payload.as_bytes()),
    };
    // serde_json never writes a raw newline, so the header is exactly the first line.
    let mut text = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    text.push(b'\n');
    text.extend_from_slice(payload.as_bytes());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        use std::io::Write;
        let mut out = std::fs::File::create(&temporary)?;
        out.write_all(&text)?;
        out.sync_all()?;
    }
    std::fs::rename(&temporary, path)
}

/// Reads a cache file; `Ok(None)` when there is none. Any other problem is an error the
/// caller logs and ignores.
pub fn load(path: &Path) -> Result<Option<Cached>, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let not_cache = |why: String| format!("{} is not a cache file: {why}", path.display());
    let split = text
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| not_cache("no header line".into()))?;
    let (header, payload) = (&text[..split], &text[split + 1..]);
    let header: CacheHeader =
        serde_json::from_slice(header).map_err(|err| not_cache(err.to_string()))?;
    if header.format != CACHE_FORMAT {
        return Err(format!(
            "{} has cache format {}, expected {CACHE_FORMAT}",
            path.display(),
            header.format
        ));
    }
    if checksum(payload) != header.checksum {
        return Err(format!("{} fails its checksum", path.display()));
    }
    let payload = std::str::from_utf8(payload).map_err(|err| not_cache(err.to_string()))?;
    match header.kind.as_str() {
        "ruleset" => {
            let ruleset =
                Ruleset::from_json(payload).map_err(|err| format!("{}: {err}", path.display()))?;
            Ok(Some(Cached::Ruleset {
                ruleset,
                version: header.version,
                saved_at: header.saved_at,
            }))
        }
        "values" => {
            let values = serde_json::from_str(payload)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            Ok(Some(Cached::Values {
                values,
                context: header.context,
                version: header.version,
                saved_at: header.saved_at,
            }))
        }
        other => Err(format!("{}: unknown kind {other:?}", path.display())),
    }
}

/// Reads a bootstrap file: a ruleset JSON (the export format).
pub fn load_bootstrap(path: &Path) -> Result<Ruleset, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read bootstrap file {}: {err}", path.display()))?;
    Ruleset::from_json(&text).map_err(|err| format!("bootstrap file {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_rejects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(dir.path(), "vxl-server-abc");
        assert!(load(&path).unwrap().is_none());
        let ruleset = Ruleset::from_json(
            r#"{"version": 7, "flags": [{"key": "f", "kind": "bool", "variations": [true, false],
                "on": true, "fallthrough": {"variation": 0}}]}"#,
        )
        .unwrap();
        save(
            &path,
            &Data::Ruleset {
                ruleset,
                version: 7,
                source: Source::Network,
                received_at: 1,
                counters: Default::default(),
            },
        )
        .unwrap();
        match load(&path).unwrap() {
            Some(Cached::Ruleset {
                ruleset, version, ..
            }) => {
                assert_eq!(version, 7);
                assert_eq!(ruleset.flag_count(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"on\":true", "\"on\":false")).unwrap();
        assert!(load(&path).unwrap_err().contains("checksum"));
        std::fs::write(&path, "not json").unwrap();
        assert!(load(&path).is_err());
    }
}
