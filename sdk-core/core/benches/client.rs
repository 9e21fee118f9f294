//! The client's costs against the engine's own: a variation call through the client API
//! (target ≤ 1.2 × the engine's evaluation), `track` on the caller's thread (≤ 200 ns),
//! and start-up from a persisted cache of 10,000 flags (≤ 50 ms).
//!
//! `cargo bench -p vexil-core --bench client`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vexil_core::{Client, Config, EventConfig};
use vexil_engine::{Ruleset, ValueKind};

mod common;
use common::{context, offline_client, ruleset_json};

fn variation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let bootstrap = dir.path().join("flags.json");
    std::fs::write(&bootstrap, ruleset_json(100)).unwrap_or_else(|_| unreachable!());
    let ruleset = Ruleset::from_json(&ruleset_json(100)).unwrap_or_else(|_| unreachable!());
    let alice = context();
    let mut group = c.benchmark_group("variation");
    group.bench_function("engine evaluate", |b| {
        b.iter(|| {
            black_box(
                ruleset
                    .evaluate(black_box("flag-42"), &alice, ValueKind::Bool)
                    .value,
            )
        })
    });
    // What the client's typed variations evaluate with: the value and the outcome to
    // count, without the reason.
    group.bench_function("engine serve_at", |b| {
        b.iter(|| {
            let index = ruleset
                .flag_index(black_box("flag-42"))
                .unwrap_or(usize::MAX);
            black_box(ruleset.serve_at(index, &alice, ValueKind::Bool).value)
        })
    });
    for (name, events) in [
        (
            "client bool_variation (summaries on)",
            EventConfig::default(),
        ),
        (
            "client bool_variation (events off)",
            EventConfig {
                enabled: false,
                ..EventConfig::default()
            },
        ),
    ] {
        let client = offline_client(&bootstrap, events);
        group.bench_function(name, |b| {
            b.iter(|| black_box(client.bool_variation(black_box("flag-42"), &alice, false)))
        });
        // Eight flags in turn: each call serves another outcome than the last.
        let keys: Vec<String> = (40..48).map(|i| format!("flag-{i}")).collect();
        let mut turn = 0;
        group.bench_function(format!("{name}, 8 flags in turn"), |b| {
            b.iter(|| {
                turn = (turn + 1) % keys.len();
                black_box(client.bool_variation(black_box(&keys[turn]), &alice, false))
            })
        });
    }
    let keys: Vec<String> = (40..48).map(|i| format!("flag-{i}")).collect();
    let mut turn = 0;
    group.bench_function("engine evaluate, 8 flags in turn", |b| {
        b.iter(|| {
            turn = (turn + 1) % keys.len();
            black_box(
                ruleset
                    .evaluate(black_box(&keys[turn]), &alice, ValueKind::Bool)
                    .value,
            )
        })
    });
    group.finish();

    let client = Client::new(
        Config::new("vxl-server-bench")
            .with_endpoint("http://127.0.0.1:9")
            .with_events(EventConfig {
                capacity: 1_000_000,
                flush_interval: Duration::from_secs(3600),
                batch_size: 1_000_000,
                ..EventConfig::default()
            }),
    )
    .unwrap_or_else(|_| unreachable!());
    c.bench_function("track", |b| {
        b.iter(|| client.track(black_box("checkout"), &alice, Some(1.0)))
    });
}

fn startup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let bootstrap = dir.path().join("flags.json");
    std::fs::write(&bootstrap, ruleset_json(10_000)).unwrap_or_else(|_| unreachable!());
    let cache = dir.path().join("cache");
    // Write the cache file once, through a client's own persistence.
    {
        let seed = offline_client(&bootstrap, EventConfig::default());
        seed.write_cache_to(&cache)
            .unwrap_or_else(|_| unreachable!());
    }
    let mut group = c.benchmark_group("startup");
    group.sample_size(10);
    // Start-up only: the client (and its 10,000 flags) is dropped outside the timing.
    group.bench_function("from cache, 10k flags", |b| {
        b.iter_with_large_drop(|| {
            let client = Client::new(
                Config::new("vxl-server-bench")
                    .with_offline(true)
                    .with_cache_dir(&cache),
            )
            .unwrap_or_else(|_| unreachable!());
            assert_eq!(
                client.source(),
                vexil_core::Source::Cache,
                "started from the cache"
            );
            client
        })
    });
    group.finish();
}

criterion_group!(benches, variation, startup);
criterion_main!(benches);
