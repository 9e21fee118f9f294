//! Runs every conformance vector file (`conformance/vectors/*.json`) through the engine, and
//! checks each file against the JSON Schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vexil_engine::{Ruleset, ValueKind};

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

fn vector_files() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conformance_dir().join("vectors"))
        .expect("vectors directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files found");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read vector file");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect()
}

fn requested_kind(case: &Value) -> ValueKind {
    match case.get("type").and_then(Value::as_str) {
        Some("bool") => ValueKind::Bool,
        Some("string") => ValueKind::String,
        Some("number") => ValueKind::Number,
        Some("json") => ValueKind::Json,
        Some(other) => panic!("unknown case type {other}"),
        None => ValueKind::of_default(&case["default"]),
    }
}

fn ruleset_of(file: &Value) -> Ruleset {
    Ruleset::from_value(&json!({
        "flags": file.get("flags").cloned().unwrap_or(json!([])),
        "segments": file.get("segments").cloned().unwrap_or(json!([])),
    }))
    .expect("vector ruleset loads")
}

#[test]
fn every_vector_case_evaluates_as_expected() {
    let mut total = 0;
    let mut failures = Vec::new();
    for (name, file) in vector_files() {
        let ruleset = ruleset_of(&file);
        for (i, case) in file["cases"].as_array().expect("cases").iter().enumerate() {
            total += 1;
            let flag = case["flag"].as_str().expect("case flag");
            let default = &case["default"];
            let detail = ruleset
                .evaluate_json(flag, &case["context"], requested_kind(case))
                .to_detail(default);
            let actual = json!({
                "value": detail.value,
                "variation": detail.variation,
                "reason": detail.reason,
                "in_experiment": detail.in_experiment,
            });
            let expect = &case["expect"];
            if &actual != expect {
                let label = case.get("name").and_then(Value::as_str).unwrap_or("");
                failures.push(format!(
                    "{name} case {i} ({label}):\n  expected {expect}\n  actual   {actual}"
                ));
            }
        }
    }
    assert!(total >= 300, "only {total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Evaluating by position (`flag_index` then `evaluate_at`) gives exactly what evaluating by
/// key gives, for every case whose context is valid.
#[test]
fn evaluation_by_position_agrees_with_evaluation_by_key() {
    let mut compared = 0;
    for (name, file) in vector_files() {
        let ruleset = ruleset_of(&file);
        for case in file["cases"].as_array().expect("cases") {
            let Ok(context) = vexil_engine::Context::from_json(&case["context"]) else {
                continue;
            };
            let flag = case["flag"].as_str().expect("case flag");
            let kind = requested_kind(case);
            let by_key = ruleset.evaluate(flag, &context, kind);
            let by_position = match ruleset.flag_index(flag) {
                Some(index) => {
                    let (key, _) = ruleset.flag_at(index).expect("flag at its index");
                    assert_eq!(key, flag, "{name}");
                    ruleset.evaluate_at(index, &context, kind)
                }
                None => ruleset.evaluate_at(ruleset.flag_count(), &context, kind),
            };
            assert_eq!(
                format!("{by_key:?}"),
                format!("{by_position:?}"),
                "{name}: {flag}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 300, "only {compared} cases compared");
}

/// The typed variations and `served_value` (which skip building the rest of the result)
/// serve each case's expected value, or the default where the expected result is one.
#[test]
fn typed_variations_serve_the_expected_values() {
    let mut compared = 0;
    for (name, file) in vector_files() {
        let ruleset = ruleset_of(&file);
        for (i, case) in file["cases"].as_array().expect("cases").iter().enumerate() {
            let Ok(context) = vexil_engine::Context::from_json(&case["context"]) else {
                continue;
            };
            let flag = case["flag"].as_str().expect("case flag");
            let default = &case["default"];
            let kind = requested_kind(case);
            let expected = &case["expect"]["value"];
            let label = format!("{name} case {i} ({flag})");
            let served = ruleset.served_value(flag, &context, kind);
            assert_eq!(served.unwrap_or(default), expected, "{label}");
            if let Some(index) = ruleset.flag_index(flag) {
                assert_eq!(
                    ruleset.served_value_at(index, &context, kind),
                    served,
                    "{label}"
                );
                // `serve_at`: the same value, and the variation exactly when the full
                // evaluation is an ordinary success.
                let full = ruleset.evaluate_at(index, &context, kind);
                let lean = ruleset.serve_at(index, &context, kind);
                assert_eq!(lean.value, served, "{label}");
                let ordinary = !full.is_error() && full.experiment_key.is_none();
                let outcomes = ruleset.flag_outcomes(index);
                let served_outcome = outcomes.start + full.variation.map_or(0, |v| v + 1);
                assert_eq!(
                    lean.ordinary_outcome(),
                    ordinary.then_some(served_outcome),
                    "{label}"
                );
                if ordinary {
                    assert!(outcomes.contains(&served_outcome), "{label}");
                }
            }
            match (kind, default) {
                (ValueKind::Bool, Value::Bool(d)) => {
                    let value = ruleset.bool_variation(flag, &context, *d);
                    assert_eq!(&Value::Bool(value), expected, "{label}");
                }
                (ValueKind::String, Value::String(d)) => {
                    let value = ruleset.string_variation(flag, &context, d);
                    assert_eq!(expected.as_str(), Some(value), "{label}");
                }
                (ValueKind::Number, Value::Number(d)) => {
                    let d = d.as_f64().expect("number default");
                    let value = ruleset.number_variation(flag, &context, d);
                    assert_eq!(expected.as_f64(), Some(value), "{label}");
                }
                _ => {}
            }
            compared += 1;
        }
    }
    assert!(compared >= 300, "only {compared} cases compared");
}

#[test]
fn validation_reports_exactly_the_expected_problems() {
    let mut failures = Vec::new();
    for (name, file) in vector_files() {
        let ruleset = ruleset_of(&file);
        let mut actual: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        for p in ruleset.problems() {
            actual
                .entry((
                    p.resource.as_str().to_owned(),
                    p.key.clone(),
                    p.path.clone(),
                ))
                .or_default()
                .push(p.message.clone());
        }
        let mut expected: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        for p in file
            .get("expect_problems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = |k: &str| p[k].as_str().expect("problem field").to_owned();
            expected
                .entry((field("resource"), field("key"), field("path")))
                .or_default();
        }
        let actual_keys: Vec<_> = actual.keys().cloned().collect();
        let expected_keys: Vec<_> = expected.keys().cloned().collect();
        if actual_keys != expected_keys {
            failures.push(format!(
                "{name}:\n  expected {expected_keys:?}\n  actual   {actual:#?}"
            ));
        }
        for messages in actual.values() {
            for message in messages {
                assert!(!message.is_empty(), "{name}: empty problem message");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_vector_file_conforms_to_the_json_schema() {
    let schema_dir = conformance_dir().join("schema");
    let load = |file: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(schema_dir.join(file)).expect("schema file"))
            .expect("schema is JSON")
    };
    let ruleset_schema = load("ruleset.schema.json");
    let vector_schema = load("vector.schema.json");
    let ruleset_id = ruleset_schema["$id"].as_str().expect("$id").to_owned();
    let registry = jsonschema::Registry::new()
        .add(ruleset_id, ruleset_schema.clone())
        .expect("ruleset schema registers")
        .prepare()
        .expect("registry prepares");
    let validator = jsonschema::options()
        .with_registry(&registry)
        .build(&vector_schema)
        .expect("vector schema compiles");
    let ruleset_validator =
        jsonschema::validator_for(&ruleset_schema).expect("ruleset schema compiles");
    let mut failures = Vec::new();
    for (name, file) in vector_files() {
        for error in validator.iter_errors(&file) {
            failures.push(format!("{name}: {} at {}", error, error.instance_path()));
        }
        let ruleset = json!({"flags": file["flags"], "segments": file.get("segments").cloned().unwrap_or(json!([]))});
        for error in ruleset_validator.iter_errors(&ruleset) {
            failures.push(format!(
                "{name} (as a ruleset): {} at {}",
                error,
                error.instance_path()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The schema is not vacuous: a flag with an unknown operator is refused.
    let bad = json!({"flags": [{"key": "f", "kind": "bool", "variations": [true], "fallthrough": {"variation": 0},
        "rules": [{"id": "r", "clauses": [{"attribute": "a", "op": "frobnicate", "values": [1]}], "serve": {"variation": 0}}]}],
        "segments": []});
    assert!(!ruleset_validator.is_valid(&bad));
}

#[test]
fn exported_ruleset_round_trips() {
    for (name, file) in vector_files() {
        let ruleset = ruleset_of(&file);
        let exported = ruleset.to_value();
        let again = Ruleset::from_value(&exported).expect("exported ruleset loads");
        assert_eq!(again.to_value(), exported, "{name}");
        assert_eq!(again.problems().len(), ruleset.problems().len(), "{name}");
    }
}

#[test]
fn vector_rulesets_load_alike_from_text_and_value() {
    for (name, file) in vector_files() {
        let value = json!({
            "flags": file.get("flags").cloned().unwrap_or(json!([])),
            "segments": file.get("segments").cloned().unwrap_or(json!([])),
        });
        let from_value = Ruleset::from_value(&value).expect("vector ruleset loads");
        let from_json = Ruleset::from_json(&value.to_string()).expect("vector ruleset loads");
        assert_eq!(from_json.to_value(), from_value.to_value(), "{name}");
        assert_eq!(from_json.problems(), from_value.problems(), "{name}");
    }
}
