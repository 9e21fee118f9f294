//! Generated input: the loader and the evaluator never panic, and evaluation is
//! deterministic. `PROPTEST_CASES` raises the count (the million runs are done with
//! `PROPTEST_CASES=1000000`; the default keeps `cargo test` quick).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use vexil_engine::{Ruleset, ValueKind};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z0-9@._/~ -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("1.2.3"),
            Just("2026-01-01T00:00:00Z"),
            Just("^a.*"),
            Just("("),
            Just("user"),
            Just("key")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const OPS: [&str; 16] = [
    "in",
    "starts_with",
    "ends_with",
    "contains",
    "matches",
    "lt",
    "lte",
    "gt",
    "gte",
    "before",
    "after",
    "semver_eq",
    "semver_lt",
    "semver_gt",
    "segment_match",
    "bogus",
];

fn clause() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&OPS[..]),
        prop::sample::select(&["email", "key", "/nested/x", "age", "tags", "", "/"][..]),
        prop::collection::vec(json_leaf(), 0..3),
        any::<bool>(),
        prop::sample::select(&["user", "org", "bad kind"][..]),
    )
        .prop_map(|(op, attribute, values, negate, kind)| {
            json!({"op": op, "attribute": attribute, "values": values, "negate": negate, "context_kind": kind})
        })
}

fn serve() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0usize..4).prop_map(|v| json!({"variation": v})),
        (
            prop::collection::vec((0usize..4, -10i64..60_000), 0..4),
            any::<bool>()
        )
            .prop_map(|(vs, exp)| {
                let variations: Vec<Value> = vs
                    .iter()
                    .map(|(v, w)| json!({"variation": v, "weight": w}))
                    .collect();
                let mut serve = json!({"rollout": {"variations": variations}});
                if exp {
                    serve["experiment"] =
                        json!({"key": "e", "layer": "l", "traffic_allocation": 50000});
                }
                serve
            }),
    ]
}

fn flag(index: usize) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(prop::collection::vec(clause(), 0..3), 0..3),
        serve(),
        any::<bool>(),
        prop::collection::vec((0usize..4, 0usize..3), 0..2),
        prop::sample::select(&["bool", "string", "json"][..]),
    )
        .prop_map(move |(rules, fallthrough, on, prerequisites, kind)| {
            let variations = match kind {
                "bool" => json!([true, false]),
                "string" => json!(["a", "b"]),
                _ => json!([{"a": 1}, [1], null]),
            };
            let rules: Vec<Value> = rules
                .into_iter()
                .enumerate()
                .map(|(i, clauses)| json!({"id": format!("r{i}"), "clauses": clauses, "serve": {"variation": 0}}))
                .collect();
            let prerequisites: Vec<Value> = prerequisites
                .into_iter()
                .map(|(k, v)| json!({"key": format!("f{k}"), "variation": v}))
                .collect();
            json!({"key": format!("f{index}"), "kind": kind, "variations": variations, "on": on,
                "rules": rules, "fallthrough": fallthrough, "prerequisites": prerequisites})
        })
}

fn context() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_json(),
        ("[a-z]{0,5}", any_json()).prop_map(|(key, attributes)| json!({"key": key, "attributes": attributes})),
        ("[a-z]{1,5}", "[a-z]{1,5}").prop_map(|(u, o)| json!({"kind": "multi", "contexts": [
            {"kind": "user", "key": u, "attributes": {"email": "x@y.z", "age": 3, "tags": ["a", 1]}},
            {"kind": "org", "key": o}]})),
    ]
}

fn segment() -> impl Strategy<Value = Value> {
    prop::collection::vec(clause(), 0..3).prop_map(|clauses| {
        json!({"key": "beta", "included": [{"values": ["a"]}], "rules": [{"id": "s", "clauses": clauses}]})
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/properties.proptest-regressions"),
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn loading_arbitrary_json_never_panics(value in any_json()) {
        if let Ok(ruleset) = Ruleset::from_value(&value) {
            for key in ruleset.flag_keys().map(str::to_owned).collect::<Vec<_>>() {
                let _ = ruleset.evaluate(&key, &vexil_engine::Context::user("u").unwrap(), ValueKind::Json);
            }
        }
        let _ = Ruleset::from_value(&json!({"flags": [value.clone()], "segments": [value]}));
    }

    #[test]
    fn evaluating_generated_rulesets_never_panics_and_is_deterministic(
        flags in (flag(0), flag(1), flag(2), flag(3)),
        segment in segment(),
        context in context(),
    ) {
        let ruleset = Ruleset::from_value(&json!({
            "flags": [flags.0, flags.1, flags.2, flags.3], "segments": [segment]
        })).unwrap();
        for key in ["f0", "f1", "f2", "f3", "missing"] {
            for kind in [ValueKind::Bool, ValueKind::String, ValueKind::Json] {
                let first = ruleset.evaluate_json(key, &context, kind).to_detail(&Value::Null);
                let second = ruleset.evaluate_json(key, &context, kind).to_detail(&Value::Null);
                prop_assert_eq!(&first, &second);
                if ruleset.is_malformed(key) {
                    prop_assert_eq!(first.reason.error_kind(), Some(vexil_engine::ErrorKind::MalformedFlag));
                }
                if let Some(v) = first.variation {
                    prop_assert!(v < ruleset.flag(key).unwrap().variations.len());
                }
            }
        }
        // Problems always name a resource and say what is wrong.
        for problem in ruleset.problems() {
            prop_assert!(!problem.message.is_empty());
            prop_assert!(!problem.key.is_empty());
        }
    }
}
