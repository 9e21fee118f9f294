//! Canonical flag JSON (conformance/SCHEMA.md) to and from the `vexil.v1` messages, and the
//! JSON shapes the `--json` output uses.
//!
//! Going to the server, only the shape is checked here (a field of the wrong JSON type is
//! named with its path); whether the flag makes sense is for the server, which validates
//! every write with the engine and names the field of each problem.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow, bail};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp};
use serde_json::{Map, Number, Value, json};
use vexil_proto::v1 as pb;

pub type Result<T> = anyhow::Result<T>;

// ----- values --------------------------------------------------------------------------------

/// JSON as a `google.protobuf.Value`.
pub fn to_value(json: &Value) -> prost_types::Value {
    let kind = match json {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<BTreeMap<_, _>>(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `google.protobuf.Value` as JSON; whole numbers print without a fraction.
pub fn from_value(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), from_value(v)))
                .collect(),
        ),
    }
}

// ----- reading canonical JSON ----------------------------------------------------------------

/// A JSON object being read, with its path for messages.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, path: impl Into<String>) -> Result<Obj<'a>> {
        let path = path.into();
        match value.as_object() {
            Some(map) => Ok(Obj { path, map }),
            None => bail!("{}: expected an object", display(&path)),
        }
    }

    fn at(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn string(&self, name: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => bail!("{}: expected a string", self.at(name)),
        }
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>> {
        Ok(match self.get(name) {
            None => None,
            Some(_) => Some(self.string(name)?),
        })
    }

    fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => bail!("{}: expected true or false", self.at(name)),
        }
    }

    fn opt_index(&self, name: &str) -> Result<Option<u32>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| anyhow!("{}: expected a non-negative integer", self.at(name))),
        }
    }

    fn index(&self, name: &str) -> Result<u32> {
        Ok(self.opt_index(name)?.unwrap_or_default())
    }

    fn array(&self, name: &str) -> Result<&'a [Value]> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => bail!("{}: expected an array", self.at(name)),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>> {
        self.array(name)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("{}[{i}]: expected a string", self.at(name)))
            })
            .collect()
    }

    /// Each element of an array field, read by `read` with its path.
    fn each<T>(&self, name: &str, read: impl Fn(&Value, String) -> Result<T>) -> Result<Vec<T>> {
        self.array(name)?
            .iter()
            .enumerate()
            .map(|(i, v)| read(v, format!("{}[{i}]", self.at(name))))
            .collect()
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() { "(top level)" } else { path }
}

pub fn kind_from_name(name: &str, path: &str) -> Result<i32> {
    Ok(match name {
        "bool" => pb::FlagKind::Bool,
        "string" => pb::FlagKind::String,
        "number" => pb::FlagKind::Number,
        "json" => pb::FlagKind::Json,
        other => bail!("{path}: unknown kind {other:?} (bool, string, number or json)"),
    } as i32)
}

pub fn kind_name(kind: i32) -> &'static str {
    match pb::FlagKind::try_from(kind) {
        Ok(pb::FlagKind::Bool) => "bool",
        Ok(pb::FlagKind::String) => "string",
        Ok(pb::FlagKind::Number) => "number",
        Ok(pb::FlagKind::Json) => "json",
        _ => "unspecified",
    }
}

fn operator_from_name(name: &str, path: &str) -> Result<i32> {
    match pb::Operator::from_str_name(&format!("OPERATOR_{}", name.to_ascii_uppercase())) {
        Some(op) if op != pb::Operator::Unspecified && !name.is_empty() => Ok(op as i32),
        _ => bail!("{path}: unknown operator {name:?}"),
    }
}

fn operator_name(op: i32) -> String {
    pb::Operator::try_from(op)
        .ok()
        .filter(|op| *op != pb::Operator::Unspecified)
        .map_or_else(
            || "unspecified".to_owned(),
            |op| {
                op.as_str_name()
                    .trim_start_matches("OPERATOR_")
                    .to_ascii_lowercase()
            },
        )
}

fn target(value: &Value, path: String) -> Result<pb::Target> {
    let o = Obj::new(value, path)?;
    Ok(pb::Target {
        context_kind: o.string("context_kind")?,
        values: o.strings("values")?,
        variation: o.index("variation")?,
    })
}

fn clause(value: &Value, path: String) -> Result<pb::Clause> {
    let o = Obj::new(value, path)?;
    Ok(pb::Clause {
        context_kind: o.string("context_kind")?,
        attribute: o.string("attribute")?,
        op: operator_from_name(&o.string("op")?, &o.at("op"))?,
        values: o.array("values")?.iter().map(to_value).collect(),
        negate: o.bool("negate")?,
    })
}

fn serve(value: &Value, path: String) -> Result<pb::Serve> {
    let o = Obj::new(value, path)?;
    let kind = match (o.get("variation"), o.get("rollout")) {
        (Some(_), _) => Some(pb::serve::Kind::Variation(o.index("variation")?)),
        (None, Some(rollout)) => {
            let r = Obj::new(rollout, o.at("rollout"))?;
            let bucket_by = match r.get("bucket_by") {
                None => None,
                Some(b) => {
                    let b = Obj::new(b, r.at("bucket_by"))?;
                    Some(pb::BucketBy {
                        context_kind: b.string("context_kind")?,
                        attribute: b.string("attribute")?,
                    })
                }
            };
            let algorithm = match r.opt_string("algorithm")?.as_deref() {
                None => pb::BucketingAlgorithm::Unspecified,
                Some("murmur3_v1") => pb::BucketingAlgorithm::Murmur3V1,
                Some(other) => bail!("{}: unknown algorithm {other:?}", r.at("algorithm")),
            } as i32;
            Some(pb::serve::Kind::Rollout(pb::Rollout {
                variations: r.each("variations", |w, path| {
                    let w = Obj::new(w, path)?;
                    Ok(pb::WeightedVariation {
                        variation: w.index("variation")?,
                        weight: w.index("weight")?,
                    })
                })?,
                bucket_by,
                algorithm,
            }))
        }
        (None, None) => None,
    };
    let experiment = match o.get("experiment") {
        None => None,
        Some(e) => {
            let e = Obj::new(e, o.at("experiment"))?;
            Some(pb::ExperimentAllocation {
                key: e.string("key")?,
                traffic_allocation: e.opt_index("traffic_allocation")?,
                layer: e.string("layer")?,
                layer_offset: e.index("layer_offset")?,
            })
        }
    };
    Ok(pb::Serve { kind, experiment })
}

fn rule(value: &Value, path: String) -> Result<pb::Rule> {
    let o = Obj::new(value, path)?;
    Ok(pb::Rule {
        id: o.string("id")?,
        clauses: o.each("clauses", clause)?,
        serve: match o.get("serve") {
            Some(s) => Some(serve(s, o.at("serve"))?),
            None => None,
        },
        description: o.string("description")?,
    })
}

/// A flag file: the canonical flag JSON, plus the optional people-facing fields `name`,
/// `description` and `tags` that the engine does not read.
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
    let o = Obj::new(json, "")?;
    let key = o.string("key")?;
    let kind = match o.get("kind") {
        Some(Value::String(name)) => kind_from_name(name, "kind")?,
        Some(_) => bail!("kind: expected a string"),
        None => bail!("kind: required (bool, string, number or json)"),
    };
    let configuration = pb::FlagConfiguration {
        environment_key: String::new(),
        on: o.bool("on")?,
        off_variation: o.opt_index("off_variation")?,
        targets: o.each("targets", target)?,
        rules: o.each("rules", rule)?,
        fallthrough: match o.get("fallthrough") {
            Some(s) => Some(serve(s, "fallthrough".into())?),
            None => None,
        },
        prerequisites: o.each("prerequisites", |p, path| {
            let p = Obj::new(p, path)?;
            Ok(pb::Prerequisite {
                key: p.string("key")?,
                variation: p.index("variation")?,
            })
        })?,
        salt: o.opt_string("salt")?,
        version: 0,
        updated_at: None,
    };
    Ok(FlagFile {
        key,
        kind,
        variations: o.array("variations")?.iter().map(to_value).collect(),
        client_side: o.bool("client_side")?,
        name: o.opt_string("name")?,
        description: o.opt_string("description")?,
        tags: match o.get("tags") {
            Some(_) => Some(o.strings("tags")?),
            None => None,
        },
        configuration,
    })
}

fn segment_target(value: &Value, path: String) -> Result<pb::SegmentTarget> {
    let o = Obj::new(value, path)?;
    Ok(pb::SegmentTarget {
        context_kind: o.string("context_kind")?,
        values: o.strings("values")?,
    })
}

/// A segment file: the canonical segment JSON, plus optional `name` and `description`.
pub fn segment_file(json: &Value) -> Result<pb::Segment> {
    let o = Obj::new(json, "")?;
    Ok(pb::Segment {
        key: o.string("key")?,
        name: o.string("name")?,
        description: o.string("description")?,
        included: o.each("included", segment_target)?,
        excluded: o.each("excluded", segment_target)?,
        rules: o.each("rules", |r, path| {
            let r = Obj::new(r, path)?;
            Ok(pb::SegmentRule {
                id: r.string("id")?,
                clauses: r.each("clauses", clause)?,
            })
        })?,
        version: 0,
        environment_key: String::new(),
        created_at: None,
        updated_at: None,
    })
}

/// Reads a JSON file.
pub fn read_json(path: &std::path::Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

// ----- writing JSON --------------------------------------------------------------------------

fn put_str(out: &mut Map<String, Value>, name: &str, text: &str) {
    if !text.is_empty() {
        out.insert(name.to_owned(), Value::from(text));
    }
}

fn clause_json(c: &pb::Clause) -> Value {
    let mut out = Map::new();
    put_str(&mut out, "context_kind", &c.context_kind);
    put_str(&mut out, "attribute", &c.attribute);
    out.insert("op".into(), Value::from(operator_name(c.op)));
    out.insert(
        "values".into(),
        Value::Array(c.values.iter().map(from_value).collect()),
    );
    if c.negate {
        out.insert("negate".into(), Value::Bool(true));
    }
    Value::Object(out)
}

fn serve_json(s: &pb::Serve) -> Value {
    let mut out = Map::new();
    match &s.kind {
        Some(pb::serve::Kind::Variation(v)) => {
            out.insert("variation".into(), Value::from(*v));
        }
        Some(pb::serve::Kind::Rollout(r)) => {
            let mut rollout = Map::new();
            rollout.insert(
                "variations".into(),
                r.variations
                    .iter()
                    .map(|w| json!({"variation": w.variation, "weight": w.weight}))
                    .collect(),
            );
            if let Some(b) = &r.bucket_by {
                let mut by = Map::new();
                put_str(&mut by, "context_kind", &b.context_kind);
                put_str(&mut by, "attribute", &b.attribute);
                if !by.is_empty() {
                    rollout.insert("bucket_by".into(), Value::Object(by));
                }
            }
            if r.algorithm == pb::BucketingAlgorithm::Murmur3V1 as i32 {
                rollout.insert("algorithm".into(), Value::from("murmur3_v1"));
            }
            out.insert("rollout".into(), Value::Object(rollout));
        }
        None => {}
    }
    if let Some(e) = &s.experiment {
        let mut exp = Map::new();
        exp.insert("key".into(), Value::from(e.key.as_str()));
        if let Some(t) = e.traffic_allocation {
            exp.insert("traffic_allocation".into(), Value::from(t));
        }
        put_str(&mut exp, "layer", &e.layer);
        if e.layer_offset != 0 {
            exp.insert("layer_offset".into(), Value::from(e.layer_offset));
        }
        out.insert("experiment".into(), Value::Object(exp));
    }
    Value::Object(out)
}

fn rule_json(r: &pb::Rule) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::from(r.id.as_str()));
    out.insert(
        "clauses".into(),
        r.clauses.iter().map(clause_json).collect(),
    );
    if let Some(s) = &r.serve {
        out.insert("serve".into(), serve_json(s));
    }
    put_str(&mut out, "description", &r.description);
    Value::Object(out)
}

/// The engine-facing fields of a configuration, as canonical JSON members.
fn configuration_members(c: &pb::FlagConfiguration, out: &mut Map<String, Value>) {
    out.insert("on".into(), Value::Bool(c.on));
    out.insert(
        "off_variation".into(),
        c.off_variation.map_or(Value::Null, Value::from),
    );
    out.insert(
        "targets".into(),
        c.targets
            .iter()
            .map(|t| {
                let mut o = Map::new();
                put_str(&mut o, "context_kind", &t.context_kind);
                o.insert("values".into(), Value::from(t.values.clone()));
                o.insert("variation".into(), Value::from(t.variation));
                Value::Object(o)
            })
            .collect(),
    );
    out.insert("rules".into(), c.rules.iter().map(rule_json).collect());
    if let Some(s) = &c.fallthrough {
        out.insert("fallthrough".into(), serve_json(s));
    }
    out.insert(
        "prerequisites".into(),
        c.prerequisites
            .iter()
            .map(|p| json!({"key": p.key, "variation": p.variation}))
            .collect(),
    );
    if let Some(salt) = &c.salt {
        out.insert("salt".into(), Value::from(salt.as_str()));
    }
}

pub fn configuration_json(c: &pb::FlagConfiguration) -> Value {
    let mut out = Map::new();
    out.insert(
        "environment".into(),
        Value::from(c.environment_key.as_str()),
    );
    configuration_members(c, &mut out);
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
        "variations": f.variations.iter().map(from_value).collect::<Vec<_>>(),
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
        f.variations.iter().map(from_value).collect(),
    );
    configuration_members(c, &mut out);
    out.insert("version".into(), Value::from(c.version));
    out.insert("client_side".into(), Value::Bool(f.client_side));
    out.insert("name".into(), Value::from(f.name.as_str()));
    out.insert("description".into(), Value::from(f.description.as_str()));
    out.insert("tags".into(), Value::from(f.tags.clone()));
    Value::Object(out)
}

fn segment_target_json(t: &pb::SegmentTarget) -> Value {
    let mut o = Map::new();
    put_str(&mut o, "context_kind", &t.context_kind);
    o.insert("values".into(), Value::from(t.values.clone()));
    Value::Object(o)
}

pub fn segment_json(s: &pb::Segment) -> Value {
    json!({
        "key": s.key,
        "name": s.name,
        "description": s.description,
        "environment": s.environment_key,
        "included": s.included.iter().map(segment_target_json).collect::<Vec<_>>(),
        "excluded": s.excluded.iter().map(segment_target_json).collect::<Vec<_>>(),
        "rules": s.rules.iter().map(|r| json!({
            "id": r.id,
            "clauses": r.clauses.iter().map(clause_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "version": s.version,
        "created_at": time_json(s.created_at.as_ref()),
        "updated_at": time_json(s.updated_at.as_ref()),
    })
}

pub fn sdk_key_kind_name(kind: i32) -> &'static str {
    match pb::SdkKeyKind::try_from(kind) {
        Ok(pb::SdkKeyKind::Server) => "server",
        Ok(pb::SdkKeyKind::Client) => "client",
        Ok(pb::SdkKeyKind::Mobile) => "mobile",
        _ => "unspecified",
    }
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
        "before": a.before.as_ref().map_or(Value::Null, from_value),
        "after": a.after.as_ref().map_or(Value::Null, from_value),
    })
}

// ----- time ----------------------------------------------------------------------------------

fn time_json(ts: Option<&Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| Value::from(format_time(t)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
pub fn parse_time(text: &str) -> Result<Timestamp> {
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
    let date = days_from_civil(year, month, day) * 86_400;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for field in [
            "key",
            "kind",
            "variations",
            "on",
            "off_variation",
            "targets",
            "rules",
            "fallthrough",
            "prerequisites",
            "salt",
            "client_side",
            "tags",
        ] {
            assert_eq!(back[field], json[field], "{field}");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = flag_file(&json!({"key": "f", "kind": "bool",
            "rules": [{"id": "r", "clauses": [{"attribute": "a", "op": "nope", "values": [1]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules[0].clauses[0].op: unknown operator \"nope\""
        );
        let err =
            flag_file(&json!({"key": "f", "kind": "bool", "off_variation": "x"})).unwrap_err();
        assert!(err.to_string().starts_with("off_variation:"), "{err}");
    }
}
