//! Variation calls from several threads at once on one client, against one thread alone:
//! what sharing costs. Every thread evaluates the same flag, so anything the threads write
//! in common (a counter, a reference count) moves between their cores on every call.
//!
//! `cargo run --release -p vexil-core --example threads [calls per thread] [max threads]`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use vexil_core::{Client, Config};
use vexil_engine::{Context, SingleContext};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000_000);
    let max_threads: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);

    let dir = tempfile::tempdir()?;
    let bootstrap = dir.path().join("flags.json");
    let ruleset = json!({"version": 1, "segments": [], "flags": [{
        "key": "checkout", "kind": "bool", "variations": [true, false], "on": true,
        "rules": [{"id": "beta", "clauses": [
            {"attribute": "plan", "op": "in", "values": ["beta"]}], "serve": {"variation": 0}}],
        "fallthrough": {"variation": 1}, "version": 1
    }]});
    std::fs::write(&bootstrap, ruleset.to_string())?;
    let client = Arc::new(Client::new(
        Config::new("vxl-server-threads")
            .with_offline(true)
            .with_bootstrap(&bootstrap),
    )?);
    let mut user = SingleContext::new("user", "alice")?;
    user.set("plan", json!("beta"));
    let alice = Context::from(user);

    for threads in 1..=max_threads {
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (client, alice) = (client.clone(), alice.clone());
                std::thread::spawn(move || {
                    (0..calls)
                        .filter(|_| client.bool_variation(black_box("checkout"), &alice, false))
                        .count()
                })
            })
            .collect();
        let mut served = 0;
        for worker in workers {
            served += worker.join().map_err(|_| "a worker panicked")?;
        }
        let per_call = started.elapsed().as_nanos() as f64 / f64::from(calls);
        println!(
            "{threads} thread(s): {per_call:.1} ns per call on each thread ({served} served true)"
        );
    }
    Ok(())
}
