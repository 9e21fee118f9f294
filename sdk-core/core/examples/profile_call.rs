//! Calls one variation many times, for profilers that count instructions:
//! `valgrind --tool=callgrind target/release/examples/profile_call client 100000`
//! (`engine` for the engine's own evaluation of the same flag, `serve_at` for the engine's
//! lean call the client uses, `off` for a client with events off). Run with a count of 0
//! to measure the set-up alone.

use std::hint::black_box;

use vexil_core::EventConfig;
use vexil_engine::{Ruleset, ValueKind};

/// The benchmarks' ruleset, context and client: the calls profiled are the calls timed.
#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "client".to_owned());
    let count: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let text = common::ruleset_json(100);
    let alice = common::context();
    let mut served = 0usize;
    if mode == "engine" {
        let ruleset = Ruleset::from_json(&text).expect("ruleset");
        for _ in 0..count {
            let value = ruleset.evaluate(black_box("flag-42"), &alice, ValueKind::Bool);
            served += usize::from(value.value.and_then(|v| v.as_bool()) == Some(true));
        }
    } else if mode == "serve_at" {
        let ruleset = Ruleset::from_json(&text).expect("ruleset");
        for _ in 0..count {
            let index = ruleset
                .flag_index(black_box("flag-42"))
                .unwrap_or(usize::MAX);
            let value = ruleset.serve_at(index, &alice, ValueKind::Bool).value;
            served += usize::from(value.and_then(|v| v.as_bool()) == Some(true));
        }
    } else {
        let dir = std::env::temp_dir().join(format!("vexil-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        let bootstrap = dir.join("flags.json");
        std::fs::write(&bootstrap, &text).expect("bootstrap file");
        let events = EventConfig {
            enabled: mode != "off",
            ..EventConfig::default()
        };
        let client = common::offline_client(&bootstrap, events);
        for _ in 0..count {
            served += usize::from(client.bool_variation(black_box("flag-42"), &alice, false));
        }
        client.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{mode}: {served} of {count} served true");
}
