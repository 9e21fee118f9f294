//! Memory held by a client for a ruleset of 10,000 flags, against the ruleset's JSON size
//! (target: at most 2×). Linux only (reads VmRSS).
//!
//! `cargo run --release -p vexil-core --example memory [flags]`

use serde_json::json;
use vexil_core::{Client, Config, EventConfig};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// A flag shaped like production flags: a few targets, two rules, a rollout.
fn flag(i: usize) -> serde_json::Value {
    json!({
        "key": format!("team-{}-feature-{i}", i % 50), "kind": "bool",
        "variations": [true, false], "on": !i.is_multiple_of(3), "off_variation": 1,
        "targets": [{"values": [format!("user-{i}"), format!("user-{}", i + 1)], "variation": 0}],
        "rules": [
            {"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with",
                "values": ["@example.com"]}], "serve": {"variation": 0}},
            {"id": "beta", "clauses": [
                {"attribute": "plan", "op": "in", "values": ["beta", "enterprise"]},
                {"attribute": "country", "op": "in", "values": ["FR", "DE", "NL"]}],
             "serve": {"rollout": {"variations": [{"variation": 0, "weight": 25000},
                {"variation": 1, "weight": 75000}]}}}
        ],
        "fallthrough": {"variation": 1}, "version": 3
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let text = json!({"version": 1, "flags": (0..flags).map(flag).collect::<Vec<_>>(),
        "segments": []})
    .to_string();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("flags.json");
    std::fs::write(&file, &text)?;
    let json_kib = text.len() as u64 / 1024;
    drop(text);
    let before = rss_kib();
    let client = Client::new(
        Config::new("vxl-server-memory")
            .with_offline(true)
            .with_bootstrap(&file)
            .with_events(EventConfig {
                enabled: false,
                ..EventConfig::default()
            }),
    )?;
    let after = rss_kib();
    println!(
        "{flags} flags: JSON {json_kib} KiB, client RSS +{} KiB, ratio {:.2} (version {})",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / json_kib.max(1) as f64,
        client.version()
    );
    Ok(())
}
