//! Fixed-seed simulations of the guarantees the engine promises: reading the sequential
//! p-value at every look keeps false positives at α, the naive fixed-horizon p-value does not,
//! and the sample-ratio check catches a 50.5/49.5 split over 200,000 contexts.

mod common;

use common::SplitMix64;
use vexil_stats::{
    Alternative, MetricKind, SRM_ALPHA, Settings, Summary, compare, sample_ratio_mismatch,
};

const EXPERIMENTS: usize = 1_000;
const LOOKS: usize = 20;
const ALPHA: f64 = 0.05;

/// α plus three Monte Carlo standard errors of a rate estimated from 1,000 experiments:
/// 0.05 + 3·√(0.05·0.95/1000) ≈ 0.0707.
fn margin_above_alpha() -> f64 {
    ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / EXPERIMENTS as f64).sqrt()
}

struct FalsePositives {
    sequential: usize,
    naive: usize,
}

/// Runs A/A experiments (both arms draw from the same distribution) read at every look, and
/// counts experiments declared significant at any look by each method.
fn run_a_a(
    kind: MetricKind,
    contexts_per_look: usize,
    settings: &Settings,
    seed: u64,
    mut draw: impl FnMut(&mut SplitMix64) -> f64,
) -> FalsePositives {
    let mut random = SplitMix64(seed);
    let mut counts = FalsePositives {
        sequential: 0,
        naive: 0,
    };
    for _ in 0..EXPERIMENTS {
        let mut control = Summary::default();
        let mut treatment = Summary::default();
        let (mut sequential_rejected, mut naive_rejected) = (false, false);
        for _ in 0..LOOKS {
            for _ in 0..contexts_per_look {
                control.add(draw(&mut random));
                treatment.add(draw(&mut random));
            }
            let result = compare(kind, &control, &treatment, settings).expect("A/A comparison");
            // The confidence sequence excludes the true lift 0 exactly when the always-valid
            // p-value is at or under α: both readings must agree.
            assert_eq!(
                !result.sequential_interval.contains(0.0),
                result.sequential_p_value <= settings.alpha,
                "confidence sequence and sequential p-value disagree: {result:?}"
            );
            sequential_rejected |= result.sequential_p_value <= settings.alpha;
            naive_rejected |= result.p_value <= settings.alpha;
        }
        counts.sequential += usize::from(sequential_rejected);
        counts.naive += usize::from(naive_rejected);
    }
    counts
}

/// Normal values with the given mean and standard deviation, both halves of each Box–Muller
/// pair used in turn.
fn normal(mean: f64, std_dev: f64) -> impl FnMut(&mut SplitMix64) -> f64 {
    let mut spare: Option<f64> = None;
    move |random| {
        let z = spare.take().unwrap_or_else(|| {
            let (first, second) = random.normal_pair();
            spare = Some(second);
            first
        });
        mean + std_dev * z
    }
}

fn check_rates(label: &str, counts: &FalsePositives) {
    let sequential = counts.sequential as f64 / EXPERIMENTS as f64;
    let naive = counts.naive as f64 / EXPERIMENTS as f64;
    let bound = margin_above_alpha();
    println!(
        "{label}: sequential false-positive rate {sequential}, naive {naive}, bound {bound:.4}"
    );
    assert!(
        sequential <= bound,
        "{label}: sequential false-positive rate {sequential} exceeds {bound}"
    );
    assert!(
        naive > bound,
        "{label}: the naive test read {LOOKS} times should clearly exceed alpha, got {naive}"
    );
}

#[test]
fn sequential_p_values_keep_false_positives_at_alpha_over_20_looks_for_means() {
    // Normal values with mean 10 and sd 2; 100 contexts per arm per look, 2,000 at the end;
    // mixture tuned for the final size, as the server does with the planned sample size.
    let settings = Settings::tuned_for(ALPHA, 2_000).unwrap();
    let counts = run_a_a(
        MetricKind::Mean,
        100,
        &settings,
        0x5EED_0001,
        normal(10.0, 2.0),
    );
    check_rates("mean", &counts);
}

#[test]
fn one_sided_sequential_p_values_keep_false_positives_at_alpha_over_20_looks() {
    // The same A/A mean experiments, tested one way only (treatment above control): the
    // half-normal mixture keeps the guarantee; the naive one-sided p-value does not.
    let settings = Settings {
        alternative: Alternative::Greater,
        ..Settings::tuned_for(ALPHA, 2_000).unwrap()
    };
    let counts = run_a_a(
        MetricKind::Mean,
        100,
        &settings,
        0x5EED_0004,
        normal(10.0, 2.0),
    );
    check_rates("mean, one-sided", &counts);
}

#[test]
fn sequential_p_values_keep_false_positives_at_alpha_over_20_looks_for_conversions() {
    // 10% conversion, 250 contexts per arm per look, default mixture.
    let counts = run_a_a(
        MetricKind::Conversion,
        250,
        &Settings::default(),
        0x5EED_0002,
        |random| f64::from(u8::from(random.uniform() < 0.1)),
    );
    check_rates("conversion", &counts);
}

#[test]
fn sample_ratio_mismatch_of_half_a_percent_over_200000_contexts_is_flagged() {
    let weights = [50.0, 50.0];
    let skewed = sample_ratio_mismatch(&[101_000, 99_000], &weights).unwrap();
    assert!(skewed.mismatch, "{skewed:?}");
    assert!(skewed.p_value < SRM_ALPHA);
    let even = sample_ratio_mismatch(&[100_000, 100_000], &weights).unwrap();
    assert!(!even.mismatch, "{even:?}");

    // The same with random assignment: each context goes to control with probability 0.505 (or
    // 0.5). The expected chi-square under 50.5/49.5 is 21, far above the 10.83 threshold.
    let mut random = SplitMix64(0x5EED_0003);
    let mut assign = |share: f64| {
        let in_control = (0..200_000).filter(|_| random.uniform() < share).count() as u64;
        sample_ratio_mismatch(&[in_control, 200_000 - in_control], &weights).unwrap()
    };
    const REPLICATES: usize = 20;
    let flagged_skewed = (0..REPLICATES).filter(|_| assign(0.505).mismatch).count();
    let flagged_even = (0..REPLICATES).filter(|_| assign(0.5).mismatch).count();
    println!(
        "random 50.5/49.5 flagged {flagged_skewed}/{REPLICATES}; 50/50 flagged {flagged_even}/{REPLICATES}"
    );
    // Power ≈ 0.88 per replicate; 0.001 false-alarm rate per replicate.
    assert!(flagged_skewed >= REPLICATES * 3 / 4, "{flagged_skewed}");
    assert_eq!(flagged_even, 0);
}
