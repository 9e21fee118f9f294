//! The ruleset, context and client the benchmarks and the profiling example share.

use std::path::Path;

use serde_json::{Value, json};
use vexil_core::{Client, Config, EventConfig};
use vexil_engine::{Context, SingleContext};

/// A boolean flag whose one rule serves `true` to the beta and enterprise plans.
pub fn flag(i: usize) -> Value {
    json!({
        "key": format!("flag-{i}"), "kind": "bool", "variations": [true, false], "on": true,
        "rules": [{"id": "beta", "clauses": [
            {"attribute": "plan", "op": "in", "values": ["beta", "enterprise"]}],
            "serve": {"variation": 0}}],
        "fallthrough": {"variation": 1}, "version": 1
    })
}

/// A ruleset of `flags` flags, `flag-0` to `flag-{flags - 1}`.
pub fn ruleset_json(flags: usize) -> String {
    json!({"version": 7, "flags": (0..flags).map(flag).collect::<Vec<_>>(), "segments": []})
        .to_string()
}

/// A user on the beta plan, whom the rule of [`flag`] matches.
pub fn context() -> Context {
    let mut user = SingleContext::new("user", "alice").unwrap_or_else(|_| unreachable!());
    user.set("plan", json!("beta"));
    Context::from(user)
}

/// An offline client serving the ruleset of the file `bootstrap`.
pub fn offline_client(bootstrap: &Path, events: EventConfig) -> Client {
    Client::new(
        Config::new("vxl-server-bench")
            .with_offline(true)
            .with_bootstrap(bootstrap)
            .with_events(events),
    )
    .unwrap_or_else(|_| unreachable!())
}
