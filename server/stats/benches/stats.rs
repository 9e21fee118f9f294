//! One call of each public computation; the target is ≤ 1 ms per comparison.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vexil_stats::{
    Design, MetricKind, Settings, Summary, achieved_power, bayesian, compare, holm,
    required_sample_size, sample_ratio_mismatch,
};

fn comparisons(criterion: &mut Criterion) {
    let settings = Settings::default();
    let control = Summary::from_values(
        &(0..1_000)
            .map(|i| (i % 37) as f64 * 1.5)
            .collect::<Vec<_>>(),
    );
    let treatment = Summary::from_values(
        &(0..1_100)
            .map(|i| (i % 41) as f64 * 1.45)
            .collect::<Vec<_>>(),
    );
    let counts_control = Summary::from_sums(500_000, 1_000_000.0, 3_000_000.0);
    let counts_treatment = Summary::from_sums(500_300, 1_012_000.0, 3_050_000.0);
    let conversions_control = Summary::conversions(1_000_000, 100_000);
    let conversions_treatment = Summary::conversions(1_000_000, 100_700);
    // 15,000 conversions per arm: the exact Beta sums near their longest, below the switch
    // to normal posteriors (20,000).
    let longest_control = Summary::conversions(150_000, 15_000);
    let longest_treatment = Summary::conversions(150_000, 15_500);
    let frequentist = [
        (
            "compare mean (Welch)",
            MetricKind::Mean,
            &control,
            &treatment,
        ),
        (
            "compare count (Welch)",
            MetricKind::Count,
            &counts_control,
            &counts_treatment,
        ),
        (
            "compare conversion (z-test, score intervals)",
            MetricKind::Conversion,
            &conversions_control,
            &conversions_treatment,
        ),
    ];
    for (name, kind, control, treatment) in frequentist {
        criterion.bench_function(name, |bench| {
            bench.iter(|| compare(kind, black_box(control), black_box(treatment), &settings))
        });
    }
    let bayesian_cases = [
        (
            "bayesian conversion (exact sums, 15,000 conversions)",
            MetricKind::Conversion,
            &longest_control,
            &longest_treatment,
        ),
        (
            "bayesian conversion (normal, 10^5 conversions)",
            MetricKind::Conversion,
            &conversions_control,
            &conversions_treatment,
        ),
        ("bayesian mean", MetricKind::Mean, &control, &treatment),
    ];
    for (name, kind, control, treatment) in bayesian_cases {
        criterion.bench_function(name, |bench| {
            bench.iter(|| bayesian(kind, black_box(control), black_box(treatment), 0.05))
        });
    }
}

fn planning(criterion: &mut Criterion) {
    let design = Design::conversion(0.1, 0.05);
    criterion.bench_function("required_sample_size conversion", |bench| {
        bench.iter(|| required_sample_size(black_box(&design)))
    });
    let mean_design = Design {
        kind: MetricKind::Mean,
        baseline_mean: 50.0,
        baseline_std_dev: Some(20.0),
        minimum_detectable_effect: 0.01,
        treatments: 3,
        ..design
    };
    criterion.bench_function("required_sample_size mean", |bench| {
        bench.iter(|| required_sample_size(black_box(&mean_design)))
    });
    criterion.bench_function("achieved_power", |bench| {
        bench.iter(|| achieved_power(black_box(&design), black_box(40_000)))
    });
}

fn checks(criterion: &mut Criterion) {
    criterion.bench_function("sample_ratio_mismatch 3 variations", |bench| {
        bench.iter(|| {
            sample_ratio_mismatch(
                black_box(&[20_150, 19_870, 59_980]),
                black_box(&[1.0, 1.0, 3.0]),
            )
        })
    });
    let p_values: Vec<f64> = (1..=20).map(|i| f64::from(i) / 400.0).collect();
    criterion.bench_function("holm 20 p-values", |bench| {
        bench.iter(|| holm(black_box(&p_values)))
    });
}

criterion_group!(benches, comparisons, planning, checks);
criterion_main!(benches);
