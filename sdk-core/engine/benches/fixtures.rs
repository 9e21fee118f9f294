//! Rulesets shared by the benchmarks and the allocation test.

use serde_json::{Value, json};

pub fn simple_flag(key: &str) -> Value {
    json!({"key": key, "kind": "bool", "variations": [true, false], "on": true, "fallthrough": {"variation": 0}})
}

pub fn two_clause_flag() -> Value {
    json!({"key": "two-clauses", "kind": "bool", "variations": [true, false], "on": true,
        "rules": [{"id": "r", "serve": {"variation": 0}, "clauses": [
            {"attribute": "country", "op": "in", "values": ["fr", "de", "es"]},
            {"attribute": "plan", "op": "in", "values": ["pro", "team"]}]}],
        "fallthrough": {"variation": 1}})
}

/// 10 rules of 5 clauses (regex, semver, segment among them); the context matches only the
/// last rule, so every rule is tried.
pub fn ten_rules_flag() -> Value {
    let rules: Vec<Value> = (0..10)
        .map(|r| {
            json!({"id": format!("rule-{r}"), "serve": {"variation": 0}, "clauses": [
                {"attribute": "country", "op": "in", "values": ["fr", "de", format!("c{r}")]},
                {"attribute": "email", "op": "matches", "values": [format!("^[a-z]+@(example|corp{r})\\.com$")]},
                {"attribute": "app_version", "op": "semver_gt", "values": ["2.0.0"]},
                {"op": "segment_match", "values": ["beta"]},
                {"attribute": "age", "op": "gte", "values": [if r == 9 { 18 } else { 99 }]}
            ]})
        })
        .collect();
    json!({"key": "ten-rules", "kind": "bool", "variations": [true, false], "on": true,
        "rules": rules, "fallthrough": {"variation": 1}})
}

pub fn beta_segment() -> Value {
    json!({"key": "beta", "included": [{"values": ["vip"]}], "rules": [{"id": "s", "clauses": [
        {"attribute": "plan", "op": "in", "values": ["pro"]}]}]})
}

pub fn prerequisite_chain() -> Vec<Value> {
    vec![
        json!({"key": "chain-1", "kind": "bool", "variations": [true, false], "on": true,
            "prerequisites": [{"key": "chain-2", "variation": 0}], "off_variation": 1, "fallthrough": {"variation": 0}}),
        json!({"key": "chain-2", "kind": "bool", "variations": [true, false], "on": true,
            "prerequisites": [{"key": "chain-3", "variation": 0}], "off_variation": 1, "fallthrough": {"variation": 0}}),
        json!({"key": "chain-3", "kind": "bool", "variations": [true, false], "on": true, "fallthrough": {"variation": 0}}),
    ]
}

pub fn rollout_flag() -> Value {
    json!({"key": "rollout", "kind": "bool", "variations": [true, false], "on": true,
        "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}})
}

/// A ruleset with every benchmark flag above.
pub fn bench_ruleset() -> Value {
    let mut flags = vec![
        simple_flag("simple"),
        two_clause_flag(),
        ten_rules_flag(),
        rollout_flag(),
    ];
    flags.extend(prerequisite_chain());
    json!({"flags": flags, "segments": [beta_segment()]})
}

/// `count` flags of mixed shapes, as an environment of that size might hold.
pub fn large_ruleset(count: usize) -> Value {
    let flags: Vec<Value> = (0..count)
        .map(|i| match i % 4 {
            0 => simple_flag(&format!("flag-{i}")),
            1 => json!({"key": format!("flag-{i}"), "kind": "string", "variations": ["a", "b", "c"], "on": true,
                "targets": [{"values": ["alice", "bob"], "variation": 2}],
                "rules": [{"id": "r", "serve": {"variation": 1}, "clauses": [
                    {"attribute": "country", "op": "in", "values": ["fr", "de"]}]}],
                "fallthrough": {"variation": 0}}),
            2 => json!({"key": format!("flag-{i}"), "kind": "bool", "variations": [true, false], "on": true,
                "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}}),
            _ => json!({"key": format!("flag-{i}"), "kind": "number", "variations": [1, 2], "on": true,
                "rules": [{"id": "r", "serve": {"variation": 1}, "clauses": [
                    {"attribute": "email", "op": "ends_with", "values": ["@example.com"]},
                    {"attribute": "age", "op": "gt", "values": [30]}]}],
                "fallthrough": {"variation": 0}}),
        })
        .collect();
    json!({"flags": flags, "segments": []})
}

pub fn user() -> vexil_engine::Context {
    let mut user = vexil_engine::SingleContext::new("user", "user-12345").expect("valid context");
    user.set("country", json!("fr"))
        .set("plan", json!("pro"))
        .set("email", json!("someone@example.com"))
        .set("app_version", json!("2.3.1"))
        .set("age", json!(42));
    vexil_engine::Context::from(user)
}
