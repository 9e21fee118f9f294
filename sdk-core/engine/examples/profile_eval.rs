//! Evaluates one benchmark flag many times, for profilers that count instructions
//! (`valgrind --tool=callgrind target/release/examples/profile_eval simple 1000000`).
//!
//! `profile_eval <flag key | all-10k | build-10k> [count] [bool | evaluate]`: a flag is
//! evaluated with `bool_variation` (what the criterion benchmark times) by default, or with
//! `evaluate` (the full result, of which the harness reads the value).

use vexil_engine::{Ruleset, ValueKind};

#[path = "../benches/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

fn main() {
    let mut args = std::env::args().skip(1);
    let key = args.next().unwrap_or_else(|| "simple".to_owned());
    let count: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let full = match args.next().as_deref() {
        None | Some("bool") => false,
        Some("evaluate") => true,
        Some(other) => {
            eprintln!("unknown mode {other:?}: expected bool or evaluate");
            std::process::exit(2);
        }
    };
    if key == "build-10k" {
        let json = serde_json::to_string(&fixtures::large_ruleset(10_000)).expect("json");
        for _ in 0..count {
            let ruleset = Ruleset::from_json(std::hint::black_box(&json)).expect("ruleset");
            println!("{} flags", ruleset.flag_count());
        }
        return;
    }
    if key == "all-10k" {
        let json = serde_json::to_string(&fixtures::large_ruleset(10_000)).expect("json");
        let ruleset = Ruleset::from_json(&json).expect("ruleset");
        let user = fixtures::user();
        let mut total = 0usize;
        for _ in 0..count {
            total += ruleset.evaluate_all(std::hint::black_box(&user)).len();
        }
        println!("{total} evaluations");
        return;
    }
    let ruleset = Ruleset::from_value(&fixtures::bench_ruleset()).expect("ruleset");
    let user = fixtures::user();
    let mut served = 0usize;
    for _ in 0..count {
        let key = std::hint::black_box(key.as_str());
        let user = std::hint::black_box(&user);
        let value = if full {
            ruleset
                .evaluate(key, user, ValueKind::Bool)
                .value
                .and_then(|v| v.as_bool())
                == Some(true)
        } else {
            ruleset.bool_variation(key, user, false)
        };
        if value {
            served += 1;
        }
    }
    println!("{key}: {served} of {count} served true");
}
