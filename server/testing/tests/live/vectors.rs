//! Every conformance vector through the gRPC evaluation API: `Evaluate` must give exactly
//! the vector's expectation, and `EvaluateAll` exactly what the engine gives in process.
//!
//! Each vector file goes into a project of its own (flag keys repeat across files with other
//! kinds), imported straight into the store: files such as `malformed.json` hold flags the
//! admin API would refuse, and the server must still serve them as the engine says.

use std::path::Path;

use serde_json::{Value, json};
use vexil_engine::{Ruleset, ValueKind};
use vexil_proto::v1 as pb;
use vexil_server::convert::{context_to_json, json_to_value, value_to_json};
use vexil_server::live::LiveSettings;
use vexil_server::storage::secrets::generate_sdk_key;
use vexil_server::storage::{NewEnvironment, NewProject, NewSdkKey, RulesetData, SdkKeyKind};

use vexil_testing::{Cluster, authed};

/// A context the wire cannot carry as given (a key or kind that is not a string, an empty
/// kind, attributes that are not an object): sent as a context with an empty key, which the engine
/// refuses in the same way (`INVALID_CONTEXT`).
fn unrepresentable() -> pb::Context {
    pb::Context {
        kind: "user".into(),
        ..Default::default()
    }
}

fn context_to_pb(value: &Value) -> pb::Context {
    // The wire carries no private-attribute marks (they concern events, and evaluation reads
    // every attribute): a context invalid only through its marks is sent as an invalid one.
    if marks_private_attributes(value) && vexil_engine::Context::from_json(value).is_err() {
        return unrepresentable();
    }
    let Some(object) = value.as_object() else {
        return unrepresentable();
    };
    // An empty kind on the wire means `user`, so an explicitly empty kind (invalid in
    // JSON) cannot be carried either.
    let kind = match object.get("kind") {
        None => String::new(),
        Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
        Some(_) => return unrepresentable(),
    };
    if kind == "multi" {
        let parts = object
            .get("contexts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return pb::Context {
            kind,
            contexts: parts.iter().map(context_to_pb).collect(),
            ..Default::default()
        };
    }
    let key = match object.get("key") {
        None => String::new(),
        Some(Value::String(key)) => key.clone(),
        Some(_) => return unrepresentable(),
    };
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(fields)) => Some(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
        Some(_) => return unrepresentable(),
    };
    pb::Context {
        kind,
        key,
        attributes,
        contexts: Vec::new(),
        redacted_attributes: Vec::new(),
    }
}

/// Whether a context, or one part of a multi-kind context, marks attributes private.
fn marks_private_attributes(value: &Value) -> bool {
    value.get("private_attributes").is_some()
        || value
            .get("contexts")
            .and_then(Value::as_array)
            .is_some_and(|parts| parts.iter().any(marks_private_attributes))
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A result's reason in the vectors' JSON shape.
fn reason_json(reason: Option<&pb::Reason>) -> Value {
    let Some(reason) = reason else {
        return Value::Null;
    };
    let kind = pb::ReasonKind::try_from(reason.kind).unwrap_or(pb::ReasonKind::Unspecified);
    match kind {
        pb::ReasonKind::Off => json!({"kind": "OFF"}),
        pb::ReasonKind::TargetMatch => json!({"kind": "TARGET_MATCH"}),
        pb::ReasonKind::Fallthrough => json!({"kind": "FALLTHROUGH"}),
        pb::ReasonKind::RuleMatch => json!({
            "kind": "RULE_MATCH", "rule_index": reason.rule_index, "rule_id": reason.rule_id,
        }),
        pb::ReasonKind::PrerequisiteFailed => json!({
            "kind": "PREREQUISITE_FAILED", "prerequisite_key": reason.prerequisite_key,
        }),
        pb::ReasonKind::Error => {
            let error = pb::ErrorKind::try_from(reason.error_kind)
                .map(|e| e.as_str_name().trim_start_matches("ERROR_KIND_").to_owned())
                .unwrap_or_default();
            json!({"kind": "ERROR", "error_kind": error})
        }
        pb::ReasonKind::Unspecified => json!({"kind": "UNSPECIFIED"}),
    }
}

fn result_json(result: &pb::EvaluationResult) -> Value {
    json!({
        "value": result.value.as_ref().map(value_to_json),
        "variation": result.variation,
        "reason": reason_json(result.reason.as_ref()),
        "in_experiment": result.in_experiment,
    })
}

fn engine_json(evaluation: &vexil_engine::Evaluation<'_>) -> Value {
    let reason = serde_json::to_value(evaluation.reason.to_owned_reason()).unwrap();
    json!({
        "value": evaluation.value,
        "variation": evaluation.variation,
        "reason": reason,
        "in_experiment": evaluation.in_experiment,
    })
}

/// The entries of the array `name` of `file` that parse as `T`; `unparsed` is set when some do
/// not.
fn parse_each<T: serde::de::DeserializeOwned>(
    file: &Value,
    name: &str,
    unparsed: &mut bool,
) -> Vec<T> {
    let items = file.get(name).and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|item| T::deserialize(item).inspect_err(|_| *unparsed = true).ok())
        .collect()
}

/// The flags and segments of a vector file as the model, and whether some of them do not fit
/// it (a malformed flag the engine must report, which the admin API never stores).
fn storable(file: &Value) -> (RulesetData, bool) {
    let mut unstorable = false;
    let flags = parse_each(file, "flags", &mut unstorable);
    let segments = parse_each(file, "segments", &mut unstorable);
    let data = RulesetData {
        version: 0,
        flags,
        segments,
    };
    (data, unstorable)
}

fn requested_kind(case: &Value) -> i32 {
    (match case.get("type").and_then(Value::as_str) {
        Some("bool") => pb::FlagKind::Bool,
        Some("string") => pb::FlagKind::String,
        Some("number") => pb::FlagKind::Number,
        Some("json") => pb::FlagKind::Json,
        _ => pb::FlagKind::Unspecified,
    }) as i32
}

#[tokio::test]
async fn every_conformance_vector_agrees_over_grpc() {
    let cluster = Cluster::sqlite(LiveSettings::default()).await;
    let instance = &cluster.instances[0];
    let storage = &instance.storage;
    let mut eval = instance.evaluation().await;
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("vectors folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 17, "vector files found: {}", files.len());
    let (mut single, mut bulk, mut skipped) = (0, 0, 0);
    for path in &files {
        let stem = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('_', "-");
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let project = format!("v-{stem}");
        storage
            .create_project(
                "tests",
                &NewProject {
                    key: project.clone(),
                    name: stem.clone(),
                    description: String::new(),
                },
            )
            .await
            .expect("create project");
        storage
            .create_environment(
                "tests",
                &project,
                &NewEnvironment {
                    key: "production".into(),
                    name: "Production".into(),
                    ..NewEnvironment::default()
                },
            )
            .await
            .expect("create environment");
        let generated = generate_sdk_key(SdkKeyKind::Server).unwrap();
        storage
            .issue_sdk_key(
                "tests",
                &project,
                "production",
                &NewSdkKey {
                    kind: SdkKeyKind::Server,
                    name: "vectors".into(),
                    prefix: generated.prefix.clone(),
                    hash: generated.hash.clone(),
                },
            )
            .await
            .expect("issue key");
        let (ruleset, unstorable) = storable(&file);
        let imported = storage
            .import_environment("tests", &project, "production", &ruleset, None)
            .await
            .unwrap_or_else(|err| panic!("import {}: {err}", path.display()))
            .version;
        // The live ruleset reaches the import's version asynchronously: wait for it.
        let started = std::time::Instant::now();
        loop {
            let served = eval
                .evaluate_all(authed(
                    pb::EvaluateAllRequest {
                        context: Some(context_to_pb(&json!({"kind": "user", "key": "probe"}))),
                        flag_keys: vec![],
                    },
                    &generated.secret,
                ))
                .await
                .expect("evaluate all")
                .into_inner()
                .environment_version;
            if served >= imported {
                break;
            }
            assert!(
                started.elapsed() < crate::WAIT,
                "{}: the import never reached the server",
                path.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The engine in process, on what the store holds, for EvaluateAll.
        let stored = storage
            .load_ruleset(&project, "production")
            .await
            .expect("load ruleset");
        let local = Ruleset::from_model(stored);

        for case in file["cases"].as_array().expect("cases") {
            let name = format!("{} / {}", path.display(), case["name"]);
            let flag = case["flag"].as_str().expect("flag key");
            if unstorable {
                // The server stores only what the model holds: the vectors about flags it
                // cannot hold are the engine's and the SDKs' to pass.
                skipped += 1;
                continue;
            }
            let context = context_to_pb(&case["context"]);
            let default = json_to_value(&case["default"]);

            let result = eval
                .evaluate(authed(
                    pb::EvaluateRequest {
                        flag_key: flag.into(),
                        context: Some(context.clone()),
                        default_value: Some(default),
                        kind: requested_kind(case),
                    },
                    &generated.secret,
                ))
                .await
                .unwrap_or_else(|status| panic!("{name}: {status}"))
                .into_inner()
                .result
                .expect("result");
            let got = result_json(&result);
            let expect = &case["expect"];
            for field in ["value", "variation", "reason", "in_experiment"] {
                assert!(
                    same(&got[field], &expect[field]),
                    "{name}: Evaluate {field}: got {}, expected {}",
                    got,
                    expect
                );
            }
            single += 1;

            let all = eval
                .evaluate_all(authed(
                    pb::EvaluateAllRequest {
                        context: Some(context.clone()),
                        flag_keys: vec![flag.into()],
                    },
                    &generated.secret,
                ))
                .await
                .unwrap_or_else(|status| panic!("{name}: {status}"))
                .into_inner();
            assert_eq!(all.results.len(), 1, "{name}");
            let got = result_json(&all.results[0]);
            let engine = engine_json(&local.evaluate_json(
                flag,
                &context_to_json(&context),
                ValueKind::Json,
            ));
            for field in ["value", "variation", "reason", "in_experiment"] {
                assert!(
                    same(&got[field], &engine[field]),
                    "{name}: EvaluateAll {field}: got {}, engine {}",
                    got[field],
                    engine[field]
                );
            }
            bulk += 1;
        }
    }
    eprintln!(
        "{single} cases through Evaluate, {bulk} through EvaluateAll, {skipped} skipped \
         (files with flags or segments the model cannot hold)"
    );
    assert!(single >= 600, "only {single} cases ran");
    cluster.stop().await;
}
