//! Any text as a ruleset: loading never panics; a ruleset that loads evaluates every flag for
//! a few contexts as every type, and its own JSON loads again to the same ruleset.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use vexil_engine::{Context, Ruleset, ValueKind};

fn contexts() -> &'static [Context] {
    static CONTEXTS: OnceLock<Vec<Context>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        [
            json!({"key": "alice", "attributes": {"email": "alice@example.com", "age": 42,
                "plan": "pro", "version": "1.2.3", "signup": "2024-05-01T10:00:00Z",
                "tags": ["a", "b"], "beta": true}}),
            json!({"kind": "multi", "contexts": [{"kind": "user", "key": "bob"},
                {"kind": "org", "key": "acme", "attributes": {"tier": 3}}]}),
            json!({"kind": "device", "key": ""}),
        ]
        .iter()
        .filter_map(|value| Context::from_json(value).ok())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ruleset) = Ruleset::from_json(text) else {
        return;
    };
    let keys: Vec<String> = ruleset.flag_keys().map(str::to_owned).collect();
    for key in keys.iter().map(String::as_str).chain(["no-such-flag"]) {
        for context in contexts() {
            for kind in ValueKind::ALL {
                let _ = ruleset.evaluate(key, context, kind);
            }
        }
    }
    let saved = ruleset.to_value();
    let reloaded = Ruleset::from_value(&saved).expect("a ruleset's own JSON loads");
    assert_eq!(reloaded.to_value(), saved, "a ruleset's JSON round-trips");
});
