//! The `vexil` command's files and `--json` output, over the one model converter it shares
//! with the server ([`vexil_proto::model`]).
//!
//! A flag or segment file is the canonical JSON of `conformance/SCHEMA.md`, read into the
//! engine's typed model; a field of the wrong shape is named with its path before anything is
//! sent. Whether the flag makes sense is for the server, which validates every write with the
//! engine and names the field of each problem. Output is the same canonical JSON, plus the
//! server's own fields (names, versions, times).

use anyhow::{Context as _, anyhow};
use prost_types::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use vexil_engine::ValueKind;
use vexil_engine::model::{Flag, Segment};
use vexil_proto::model;
use vexil_proto::v1 as pb;

pub type Result<T> = anyhow::Result<T>;

// ----- kinds ---------------------------------------------------------------------------------

/// The name of a flag kind (`bool`, `string`, `number`, `json`), `unspecified` for a kind
/// this version does not know.
pub fn kind_name(kind: i32) -> &'static str {
    model::kind_from_proto(kind, "kind").map_or("unspecified", ValueKind::as_str)
}

// ----- reading files -------------------------------------------------------------------------

/// Reads a JSON file.
pub fn read_json(path: &std::path::Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// Reads a JSON file as what `read` makes of it (a flag or segment file); an error names the
/// file.
pub fn read_file<T>(path: &std::path::Path, read: fn(&Value) -> Result<T>) -> Result<T> {
    read(&read_json(path)?).with_context(|| path.display().to_string())
}

/// `json` as a `T`; an error names the offending field's path (`rules[0].clauses[1].op`).
fn typed<T: DeserializeOwned>(json: &Value) -> Result<T> {
    serde_path_to_error::deserialize(json).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." {
            "(top level)".to_owned()
        } else {
            path
        };
        anyhow!("{path}: {}", err.into_inner())
    })
}

/// The fields a file may add to the canonical flag or segment, which the server keeps beside
/// the model.
#[derive(Deserialize)]
struct Described {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A flag file: the canonical flag JSON, plus optional `name`, `description` and `tags`, as
/// the messages that create or update it.
#[derive(Debug)]
pub struct FlagFile {
    pub key: String,
    pub kind: i32,
    pub variations: Vec<prost_types::Value>,
    pub client_side: bool,
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub configuration: pb::FlagConfiguration,
}

impl FlagFile {
    /// Whether anything beyond what CreateFlag sets is configured.
    pub fn has_configuration(&self) -> bool {
        let c = &self.configuration;
        c.on || !c.targets.is_empty()
            || !c.rules.is_empty()
            || !c.prerequisites.is_empty()
            || c.salt.is_some()
    }
}

pub fn flag_file(json: &Value) -> Result<FlagFile> {
    let flag: Flag = typed(json)?;
    let described: Described = typed(json)?;
    Ok(FlagFile {
        kind: model::kind_to_proto(flag.kind),
        variations: flag.variations.iter().map(model::json_to_value).collect(),
        client_side: flag.client_side,
        name: described.name,
        description: described.description,
        tags: described.tags,
        configuration: model::configuration_to_proto(&flag.configuration()),
        key: flag.key,
    })
}

/// A segment file: the canonical segment JSON, plus optional `name` and `description`.
pub fn segment_file(json: &Value) -> Result<pb::Segment> {
    let segment: Segment = typed(json)?;
    let described: Described = typed(json)?;
    Ok(pb::Segment {
        name: described.name.unwrap_or_default(),
        description: described.description.unwrap_or_default(),
        version: 0,
        ..model::segment_to_proto(&segment)
    })
}

// ----- writing JSON --------------------------------------------------------------------------

/// The members of a model's canonical JSON; a message this version cannot read (a newer
/// server's operator) shows what is wrong in place of the members.
///
/// The canonical form leaves out empty lists and unset options; output spells out those named
/// in `listed` (as `[]` or `null`), so that a script reading `--json` finds every field.
fn canonical_members<T: serde::Serialize>(
    read: std::result::Result<T, model::FieldError>,
    listed: &[(&str, Value)],
) -> Map<String, Value> {
    let written = read
        .map_err(|err| err.to_string())
        .and_then(|model| serde_json::to_value(model).map_err(|err| err.to_string()));
    let mut members = match written {
        Ok(Value::Object(members)) => members,
        Ok(_) => Map::new(),
        Err(error) => return Map::from_iter([("error".to_owned(), error.into())]),
    };
    for (name, empty) in listed {
        members.entry(*name).or_insert_with(|| empty.clone());
    }
    members
}

/// A configuration's engine-facing fields, as canonical JSON members.
fn configuration_members(c: &pb::FlagConfiguration) -> Map<String, Value> {
    canonical_members(
        model::configuration_from_proto(c, ""),
        &[
            ("off_variation", Value::Null),
            ("targets", json!([])),
            ("rules", json!([])),
            ("prerequisites", json!([])),
        ],
    )
}

pub fn configuration_json(c: &pb::FlagConfiguration) -> Value {
    let mut out = Map::new();
    out.insert(
        "environment".into(),
        Value::from(c.environment_key.as_str()),
    );
    out.extend(configuration_members(c));
    out.insert("version".into(), Value::from(c.version));
    out.insert("updated_at".into(), time_json(c.updated_at.as_ref()));
    Value::Object(out)
}

pub fn flag_json(f: &pb::Flag) -> Value {
    json!({
        "key": f.key,
        "name": f.name,
        "description": f.description,
        "kind": kind_name(f.kind),
        "variations": f.variations.iter().map(model::value_to_json).collect::<Vec<_>>(),
        "tags": f.tags,
        "client_side": f.client_side,
        "archived": f.archived,
        "version": f.version,
        "created_at": time_json(f.created_at.as_ref()),
        "updated_at": time_json(f.updated_at.as_ref()),
        "configurations": f.configurations.iter().map(configuration_json).collect::<Vec<_>>(),
    })
}

/// A flag in one environment as the canonical flag JSON, plus name, description and tags:
/// the form `flags create` and `flags update` read.
pub fn flag_file_json(f: &pb::Flag, c: &pb::FlagConfiguration) -> Value {
    let mut out = Map::new();
    out.insert("key".into(), Value::from(f.key.as_str()));
    out.insert("kind".into(), Value::from(kind_name(f.kind)));
    out.insert(
        "variations".into(),
        f.variations.iter().map(model::value_to_json).collect(),
    );
    out.extend(configuration_members(c));
    out.insert("version".into(), Value::from(c.version));
    out.insert("client_side".into(), Value::Bool(f.client_side));
    out.insert("name".into(), Value::from(f.name.as_str()));
    out.insert("description".into(), Value::from(f.description.as_str()));
    out.insert("tags".into(), Value::from(f.tags.clone()));
    Value::Object(out)
}

/// A segment as the canonical segment JSON, plus the server's fields.
pub fn segment_json(s: &pb::Segment) -> Value {
    let mut out = canonical_members(
        model::segment_from_proto(s, ""),
        &[
            ("included", json!([])),
            ("excluded", json!([])),
            ("rules", json!([])),
        ],
    );
    out.insert("name".into(), Value::from(s.name.as_str()));
    out.insert("description".into(), Value::from(s.description.as_str()));
    out.insert(
        "environment".into(),
        Value::from(s.environment_key.as_str()),
    );
    out.insert("version".into(), Value::from(s.version));
    out.insert("created_at".into(), time_json(s.created_at.as_ref()));
    out.insert("updated_at".into(), time_json(s.updated_at.as_ref()));
    Value::Object(out)
}

/// How the command names a proto enum value: its name without the prefix all the enum's
/// names share (that of its value 0, `…_UNSPECIFIED`), in lower case (`RAMP_STATE_PAUSED`
/// is `paused`); `fallback` for an unspecified or unknown value.
pub fn enum_value_name<E: TryFrom<i32>>(
    value: i32,
    name: fn(&E) -> &'static str,
    fallback: &str,
) -> String {
    let prefix = E::try_from(0).ok().map_or("", |unspecified| {
        name(&unspecified).trim_end_matches("UNSPECIFIED")
    });
    match E::try_from(value) {
        Ok(known) if value != 0 => {
            let full = name(&known);
            full.strip_prefix(prefix)
                .unwrap_or(full)
                .to_ascii_lowercase()
        }
        _ => fallback.to_owned(),
    }
}

pub fn sdk_key_kind_name(kind: i32) -> String {
    enum_value_name(kind, pb::SdkKeyKind::as_str_name, "unspecified")
}

pub fn sdk_key_json(k: &pb::SdkKey) -> Value {
    json!({
        "id": k.id,
        "project": k.project_key,
        "environment": k.environment_key,
        "kind": sdk_key_kind_name(k.kind),
        "name": k.name,
        "prefix": k.prefix,
        "created_at": time_json(k.created_at.as_ref()),
        "expires_at": time_json(k.expires_at.as_ref()),
        "revoked_at": time_json(k.revoked_at.as_ref()),
    })
}

pub fn environment_json(e: &pb::Environment) -> Value {
    json!({
        "project": e.project_key,
        "key": e.key,
        "name": e.name,
        "description": e.description,
        "version": e.version,
        "allowed_origins": e.allowed_origins,
        "event_retention_days": e.event_retention_days,
        "created_at": time_json(e.created_at.as_ref()),
        "updated_at": time_json(e.updated_at.as_ref()),
    })
}

pub fn audit_json(a: &pb::AuditEntry) -> Value {
    json!({
        "id": a.id,
        "time": time_json(a.time.as_ref()),
        "actor": a.actor,
        "action": a.action,
        "resource_kind": a.resource_kind,
        "resource_key": a.resource_key,
        "project": a.project_key,
        "environment": a.environment_key,
        "before": a.before.as_ref().map_or(Value::Null, model::value_to_json),
        "after": a.after.as_ref().map_or(Value::Null, model::value_to_json),
    })
}

// ----- time ----------------------------------------------------------------------------------

/// A time as JSON: the RFC 3339 text, `null` when unset.
pub fn time_json(ts: Option<&Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| Value::from(format_time(t)))
}

/// The date of a number of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A timestamp in RFC 3339, UTC, to the millisecond.
pub fn format_time(ts: &Timestamp) -> String {
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.nanos / 1_000_000
    )
}

/// Reads a time: RFC 3339 (`2026-01-31T12:00:00Z`, `…+02:00`, fractions allowed), a date
/// (`2026-01-31`, midnight UTC) or whole seconds since the Unix epoch.
fn parse_time(text: &str) -> Result<Timestamp> {
    let fail = || {
        anyhow!(
            "{text:?} is not a time (use RFC 3339 such as 2026-01-31T12:00:00Z, a date such as 2026-01-31, or seconds since the epoch)"
        )
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(Timestamp { seconds, nanos: 0 });
    }
    let bytes = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64> {
        let part = text.get(range).ok_or_else(fail)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| fail())
        } else {
            Err(fail())
        }
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(fail());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(fail());
    }
    let date = vexil_engine::date::days_from_civil(year, month, day) * 86_400;
    if bytes.len() == 10 {
        return Ok(Timestamp {
            seconds: date,
            nanos: 0,
        });
    }
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(fail());
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return Err(fail());
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail());
    }
    let mut rest = &text[19..];
    let mut nanos = 0i32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail());
        }
        let mut padded: String = fraction[..digits].chars().take(9).collect();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().map_err(|_| fail())?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(fail()),
            };
            let zone = &rest[1..];
            if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                return Err(fail());
            }
            let h: i64 = zone[..2].parse().map_err(|_| fail())?;
            let m: i64 = zone[3..].parse().map_err(|_| fail())?;
            sign * (h * 3600 + m * 60)
        }
    };
    Ok(Timestamp {
        seconds: date + hour * 3600 + minute * 60 + second - offset,
        nanos,
    })
}

/// Reads the time given to the option `option` (`--since`); an error names the option.
pub fn parse_time_option(option: &'static str, text: &str) -> Result<Timestamp> {
    parse_time(text).context(option)
}

/// Reads the time given to an option that may be left out; an error names the option.
pub fn parse_optional_time(option: &'static str, text: Option<&str>) -> Result<Option<Timestamp>> {
    text.map(|text| parse_time_option(option, text)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_are_named_without_their_prefix() {
        let role = |r: i32| enum_value_name(r, pb::Role::as_str_name, "none");
        assert_eq!(role(pb::Role::Editor as i32), "editor");
        assert_eq!(role(pb::Role::Unspecified as i32), "none");
        assert_eq!(role(99), "none");
        let error_kind = pb::ErrorKind::FlagNotFound as i32;
        assert_eq!(
            enum_value_name(error_kind, pb::ErrorKind::as_str_name, ""),
            "flag_not_found"
        );
    }

    #[test]
    fn times_parse_and_format() {
        let t = parse_time("2026-01-31T12:00:00.250+02:00").unwrap();
        assert_eq!(format_time(&t), "2026-01-31T10:00:00.250Z");
        assert_eq!(parse_time("1970-01-02").unwrap().seconds, 86_400);
        assert_eq!(parse_time("1700000000").unwrap().seconds, 1_700_000_000);
        assert_eq!(
            format_time(&parse_time("2000-02-29T23:59:59Z").unwrap()),
            "2000-02-29T23:59:59.000Z"
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01").is_err());
    }

    #[test]
    fn a_time_option_is_named_in_its_error() {
        assert_eq!(parse_optional_time("--since", None).unwrap(), None);
        let read = parse_optional_time("--since", Some("1970-01-02")).unwrap();
        assert_eq!(read.map(|t| t.seconds), Some(86_400));
        let err = parse_time_option("--at", "yesterday").unwrap_err();
        assert!(
            format!("{err:#}").starts_with("--at: \"yesterday\" is not a time"),
            "{err:#}"
        );
    }

    #[test]
    fn a_flag_file_round_trips() {
        let json = json!({
            "key": "checkout", "kind": "string", "variations": ["a", "b"], "on": true,
            "off_variation": 1,
            "targets": [{"values": ["alice"], "variation": 0}],
            "rules": [{"id": "r", "clauses": [{"attribute": "email", "op": "ends_with",
                "values": ["@example.com"], "negate": true}],
                "serve": {"rollout": {"variations": [{"variation": 0, "weight": 50000},
                    {"variation": 1, "weight": 50000}], "algorithm": "murmur3_v1"},
                    "experiment": {"key": "e", "traffic_allocation": 1000}}}],
            "fallthrough": {"variation": 0},
            "prerequisites": [{"key": "other", "variation": 0}],
            "salt": "s", "client_side": true, "tags": ["x"]
        });
        let file = flag_file(&json).unwrap();
        assert!(file.has_configuration());
        let flag = pb::Flag {
            key: file.key.clone(),
            kind: file.kind,
            variations: file.variations.clone(),
            client_side: file.client_side,
            tags: file.tags.clone().unwrap(),
            ..Default::default()
        };
        let back = flag_file_json(&flag, &file.configuration);
        // The same flag, written with the model's defaults spelled out.
        let model = |v: &Value| serde_json::from_value::<Flag>(v.clone()).unwrap();
        assert_eq!(model(&back), model(&json));
        assert_eq!(back["tags"], json["tags"]);
        assert_eq!(back["rules"][0]["clauses"][0]["context_kind"], "user");
    }

    #[test]
    fn a_file_read_names_itself_and_the_field_in_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.json");
        std::fs::write(&path, r#"{"key": "s", "included": "alice"}"#).unwrap();
        let err = read_file(&path, segment_file).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!("{}: included:", path.display())),
            "{text}"
        );
        std::fs::write(&path, r#"{"key": "s"}"#).unwrap();
        assert_eq!(read_file(&path, segment_file).unwrap().key, "s");
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = flag_file(&json!({"key": "f", "kind": "bool",
            "rules": [{"id": "r", "clauses": [{"attribute": "a", "op": "nope", "values": [1]}]}]}))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("rules[0].clauses[0].op: unknown variant `nope`"),
            "{err}"
        );
        let err = flag_file(&json!({"key": "f", "kind": "bool", "variations": []})).unwrap_err();
        assert_eq!(err.to_string(), "(top level): missing field `fallthrough`");
        let err =
            flag_file(&json!({"key": "f", "kind": "bool", "off_variation": "x"})).unwrap_err();
        assert!(err.to_string().starts_with("off_variation:"), "{err}");
    }
}
