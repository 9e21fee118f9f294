//! Engine benchmarks (`cargo bench -p vexil-engine`); figures go to BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vexil_engine::{Ruleset, ValueKind};

#[path = "fixtures.rs"]
mod fixtures;

fn evaluation(c: &mut Criterion) {
    let ruleset = Ruleset::from_value(&fixtures::bench_ruleset()).expect("ruleset");
    assert!(ruleset.problems().is_empty(), "{:?}", ruleset.problems());
    let user = fixtures::user();
    // Each benchmark checks once that it measures the path it claims to.
    let check = |key: &str, reason: &str| {
        let evaluation = ruleset.evaluate(key, &user, ValueKind::Bool);
        assert_eq!(evaluation.reason.kind_str(), reason, "{key}");
    };
    check("simple", "FALLTHROUGH");
    check("two-clauses", "RULE_MATCH");
    check("ten-rules", "RULE_MATCH");
    check("chain-1", "FALLTHROUGH");
    check("rollout", "FALLTHROUGH");

    let mut group = c.benchmark_group("evaluate");
    for (name, key) in [
        ("simple_bool", "simple"),
        ("two_clauses", "two-clauses"),
        ("ten_rules_five_clauses", "ten-rules"),
        ("prerequisite_chain_3", "chain-1"),
        ("rollout_50_50", "rollout"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| ruleset.bool_variation(black_box(key), black_box(&user), false))
        });
    }
    group.finish();
}

fn large(c: &mut Criterion) {
    let json = serde_json::to_string(&fixtures::large_ruleset(10_000)).expect("json");
    let ruleset = Ruleset::from_json(&json).expect("ruleset");
    assert_eq!(ruleset.flag_count(), 10_000);
    let user = fixtures::user();
    let mut group = c.benchmark_group("ruleset_10k");
    group.sample_size(20);
    group.bench_function("evaluate_all", |b| {
        b.iter(|| ruleset.evaluate_all(black_box(&user)).len())
    });
    // The same, into a buffer reused across iterations, as a server evaluating many
    // contexts would do.
    let mut buffer = Vec::new();
    group.bench_function("evaluate_all_into", |b| {
        b.iter(|| {
            ruleset.evaluate_all_into(black_box(&user), &mut buffer);
            buffer.len()
        })
    });
    group.bench_function("build_from_json", |b| {
        b.iter(|| {
            Ruleset::from_json(black_box(&json))
                .expect("ruleset")
                .flag_count()
        })
    });
    group.finish();
}

criterion_group!(benches, evaluation, large);
criterion_main!(benches);
