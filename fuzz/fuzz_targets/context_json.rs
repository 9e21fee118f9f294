//! Any JSON as a context: reading never panics; a context that reads is evaluated against a
//! ruleset using every operator, its canonical JSON reads back to the same context, the
//! server's stored form of it (for events) is built without fault, and its form in events
//! with every attribute private keeps kinds and keys only.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vexil_engine::{Context, Redaction, Ruleset, ValueKind};
use vexil_server::storage::EventContext;

/// The rulesets of the conformance vectors, which between them use every operator.
fn rulesets() -> &'static [Ruleset] {
    static RULESETS: OnceLock<Vec<Ruleset>> = OnceLock::new();
    RULESETS.get_or_init(|| {
        [
            include_str!("../../conformance/vectors/operators_strings.json"),
            include_str!("../../conformance/vectors/operators_numeric.json"),
            include_str!("../../conformance/vectors/operators_dates.json"),
            include_str!("../../conformance/vectors/operators_semver.json"),
            include_str!("../../conformance/vectors/operators_attributes.json"),
            include_str!("../../conformance/vectors/segments.json"),
            include_str!("../../conformance/vectors/multikind.json"),
            include_str!("../../conformance/vectors/experiments.json"),
        ]
        .iter()
        .map(|file| {
            let vectors: serde_json::Value = serde_json::from_str(file).expect("vector file");
            let ruleset = serde_json::json!({
                "flags": vectors["flags"],
                "segments": vectors.get("segments").cloned().unwrap_or_else(|| serde_json::json!([])),
            });
            Ruleset::from_value(&ruleset).expect("the vector file's ruleset")
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(context) = Context::from_json(&value) else {
        return;
    };
    for ruleset in rulesets() {
        let keys: Vec<String> = ruleset.flag_keys().map(str::to_owned).collect();
        for key in &keys {
            let _ = ruleset.evaluate(key, &context, ValueKind::Json);
        }
    }
    let canonical = context.to_json();
    let again = Context::from_json(&canonical).expect("a context's canonical JSON reads");
    assert_eq!(
        again.to_json(),
        canonical,
        "a context's canonical JSON round-trips"
    );
    let stored = EventContext::new(&context);
    assert!(!stored.kind.is_empty());
    // What events carry with every attribute private: each kind and key, no attribute.
    let everything = Redaction::new(true, &[] as &[&str]).expect("no references to refuse");
    let redacted = context.to_redacted_json(&everything);
    let parts = match redacted.get("contexts") {
        Some(serde_json::Value::Array(parts)) => parts.clone(),
        _ => vec![redacted],
    };
    for part in &parts {
        assert!(
            part["kind"].is_string() && part["key"].is_string(),
            "{part}"
        );
        assert!(
            part.get("attributes").is_none(),
            "an attribute left: {part}"
        );
    }
});
