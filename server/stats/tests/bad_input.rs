//! Bad input never panics and never leaks a NaN: property-style sweeps over awkward values,
//! and the specific errors each degenerate input gets.

mod common;

use common::SplitMix64;
use vexil_stats::{
    Alternative, Comparison, Design, Interval, MetricKind, QuantileSummary, RelativeUndefined,
    Settings, StatsError, Summary, achieved_power, compare, compare_quantiles, holm,
    required_sample_size, sample_ratio_mismatch,
};

const AWKWARD: [f64; 16] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    -1.0,
    1.0,
    0.5,
    2.0,
    1e-300,
    1e300,
    f64::MAX,
    f64::MIN_POSITIVE,
    -1e300,
    3.7,
    1e6,
];
const COUNTS: [u64; 9] = [0, 1, 2, 3, 10, 1_000, 1_000_000, u64::MAX / 2, u64::MAX];
const KINDS: [MetricKind; 3] = [MetricKind::Conversion, MetricKind::Mean, MetricKind::Count];

fn random_value(random: &mut SplitMix64) -> f64 {
    if random.next_u64().is_multiple_of(3) {
        (random.uniform() - 0.3) * 10f64.powi((random.next_u64() % 20) as i32 - 5)
    } else {
        random.pick(&AWKWARD)
    }
}

fn random_summary(random: &mut SplitMix64) -> Summary {
    let n = random.pick(&COUNTS);
    match random.next_u64() % 3 {
        // Consistent statistics of real values, possibly extreme.
        0 => {
            let values: Vec<f64> = (0..(n.min(50))).map(|_| random_value(random)).collect();
            Summary::from_values(&values)
        }
        // Consistent conversion counts.
        1 => {
            let conversions = (random.uniform() * n as f64).floor() as u64;
            Summary::conversions(n, conversions)
        }
        // Anything at all.
        _ => Summary {
            n,
            mean: random_value(random),
            squared_deviations: random_value(random),
        },
    }
}

/// A sane interval: no NaN, ordered, and at most one infinite end (a one-sided bound).
fn assert_interval_sane(interval: &Interval, context: &str) {
    assert!(
        !interval.lower.is_nan()
            && !interval.upper.is_nan()
            && interval.lower <= interval.upper
            && (interval.lower.is_finite() || interval.upper.is_finite()),
        "{context}: {interval:?}"
    );
}

fn assert_sane(comparison: &Comparison, context: &str) {
    let values = [
        ("control_mean", comparison.control_mean),
        ("treatment_mean", comparison.treatment_mean),
        ("absolute_lift", comparison.absolute_lift),
        ("p_value", comparison.p_value),
        ("sequential_p_value", comparison.sequential_p_value),
        ("standard_error", comparison.standard_error),
    ];
    for (name, value) in values {
        assert!(
            value.is_finite(),
            "non-finite {name} for {context}: {comparison:?}"
        );
    }
    assert!(
        (0.0..=1.0).contains(&comparison.p_value),
        "{context}: {comparison:?}"
    );
    assert!(
        (0.0..=1.0).contains(&comparison.sequential_p_value),
        "{context}: {comparison:?}"
    );
    assert_interval_sane(&comparison.absolute_interval, context);
    assert_interval_sane(&comparison.sequential_interval, context);
    if let Some(relative) = comparison.relative_lift {
        assert!(relative.is_finite(), "{context}");
    }
    match comparison.relative_interval {
        Some(interval) => {
            assert_interval_sane(&interval, context);
            assert_eq!(comparison.relative_undefined, None, "{context}");
        }
        None => assert!(comparison.relative_undefined.is_some(), "{context}"),
    }
    // Zero only for conversions with both arms at 0 % or 100 % (Wald's standard error).
    assert!(comparison.standard_error >= 0.0, "{context}");
}

#[test]
fn compare_never_panics_or_returns_non_finite_values() {
    let mut random = SplitMix64(0xBAD1);
    let mut successes = 0;
    for _ in 0..20_000 {
        let kind = random.pick(&KINDS);
        let control = random_summary(&mut random);
        let treatment = random_summary(&mut random);
        let alternative = random.pick(&[
            Alternative::TwoSided,
            Alternative::Greater,
            Alternative::Less,
        ]);
        let settings = if random.next_u64().is_multiple_of(4) {
            Settings {
                alpha: random_value(&mut random),
                mixture_std_dev: random_value(&mut random),
                alternative,
            }
        } else {
            Settings {
                alternative,
                ..Settings::default()
            }
        };
        let context = format!("{kind:?} {control:?} {treatment:?} {settings:?}");
        match compare(kind, &control, &treatment, &settings) {
            Ok(comparison) => {
                successes += 1;
                assert_sane(&comparison, &context);
            }
            Err(error) => assert!(!error.to_string().is_empty(), "{context}"),
        }
    }
    // The sweep must also exercise the success path, not only errors.
    assert!(successes > 1_000, "only {successes} successful comparisons");
}

fn mean_summary(values: &[f64]) -> Summary {
    Summary::from_values(values)
}

#[test]
fn degenerate_comparisons_get_errors_naming_the_problem() {
    let settings = Settings::default();
    let normal = mean_summary(&[1.0, 2.0, 3.0, 4.0]);

    let single = mean_summary(&[1.0]);
    let error = compare(MetricKind::Mean, &single, &normal, &settings).unwrap_err();
    assert_eq!(
        error,
        StatsError::TooFewContexts {
            variation: "control",
            n: 1
        }
    );
    assert!(error.to_string().contains("control.n"));
    let error = compare(MetricKind::Mean, &normal, &Summary::default(), &settings).unwrap_err();
    assert_eq!(
        error,
        StatsError::TooFewContexts {
            variation: "treatment",
            n: 0
        }
    );

    let constant = mean_summary(&[5.0, 5.0, 5.0]);
    assert_eq!(
        compare(MetricKind::Mean, &constant, &constant, &settings).unwrap_err(),
        StatsError::ZeroVariance
    );
    // One constant arm is fine: the other carries the variance.
    assert!(compare(MetricKind::Mean, &constant, &normal, &settings).is_ok());

    // A zero control mean: absolute lift and p-values, no relative lift.
    let zero_mean = mean_summary(&[-1.0, 1.0, -2.0, 2.0]);
    let result = compare(MetricKind::Mean, &zero_mean, &normal, &settings).unwrap();
    assert_eq!(result.relative_lift, None);
    assert_eq!(result.relative_interval, None);
    assert_eq!(
        result.relative_undefined,
        Some(RelativeUndefined::ControlMeanZero)
    );
    assert!(result.p_value < 1.0 && result.absolute_interval.lower < 2.5);

    // Conversions: none anywhere, all everywhere, none in one arm. Each gives a p-value and an
    // absolute interval with a width (score intervals); the relative one wherever it exists.
    let none = Summary::conversions(100, 0);
    let all = Summary::conversions(100, 100);
    let some = Summary::conversions(100, 10);
    for (control, treatment) in [(none, none), (all, all)] {
        let result = compare(MetricKind::Conversion, &control, &treatment, &settings).unwrap();
        assert_eq!(result.p_value, 1.0);
        assert!(result.sequential_p_value > 0.5, "{result:?}");
        // Not a point: Newcombe's interval keeps a width at 0 % and 100 %.
        assert!(result.absolute_interval.lower < -0.02, "{result:?}");
        assert!(result.absolute_interval.upper > 0.02, "{result:?}");
        assert!(result.sequential_interval.lower < result.absolute_interval.lower);
    }
    // At 100 % in both the ratio keeps a width too; at 0 % in the control it does not exist.
    let both_all = compare(MetricKind::Conversion, &all, &all, &settings).unwrap();
    let relative = both_all.relative_interval.unwrap();
    assert!(
        relative.lower < -0.02 && relative.upper > 0.02,
        "{relative:?}"
    );
    let both_none = compare(MetricKind::Conversion, &none, &none, &settings).unwrap();
    assert_eq!(
        both_none.relative_undefined,
        Some(RelativeUndefined::ControlMeanZero)
    );
    let result = compare(MetricKind::Conversion, &all, &none, &settings).unwrap();
    assert!(result.p_value < 1e-10 && result.absolute_interval.upper < -0.9);
    let result = compare(MetricKind::Conversion, &none, &some, &settings).unwrap();
    assert_eq!(
        result.relative_undefined,
        Some(RelativeUndefined::ControlMeanZero)
    );
    assert!(result.p_value < 0.01);
    // No conversions in the treatment yet: an interval from −100 %, not the point −100 %.
    let result = compare(MetricKind::Conversion, &some, &none, &settings).unwrap();
    let relative = result.relative_interval.unwrap();
    assert_eq!(result.relative_lift, Some(-1.0));
    assert!(
        relative.lower >= -1.0 && relative.upper > -0.9,
        "{relative:?}"
    );
    // A mean metric whose treatment values are all 0: undefined, not a false point.
    let zeros = mean_summary(&[0.0; 6]);
    let result = compare(MetricKind::Mean, &normal, &zeros, &settings).unwrap();
    assert_eq!(
        result.relative_undefined,
        Some(RelativeUndefined::TreatmentWithoutSpread)
    );
    // A control mean indistinguishable from 0: Fieller's set is unbounded.
    let around_zero = mean_summary(&[-3.0, 4.0, -2.0, 2.5]);
    let result = compare(MetricKind::Mean, &around_zero, &normal, &settings).unwrap();
    assert_eq!(
        result.relative_undefined,
        Some(RelativeUndefined::ControlMeanUnresolved)
    );

    // Impossible summaries, each named.
    let too_many = Summary::conversions(10, 11);
    let error = compare(MetricKind::Conversion, &some, &too_many, &settings).unwrap_err();
    assert!(error.to_string().starts_with("treatment.mean:"), "{error}");
    assert!(error.to_string().contains("within [0, 1]"), "{error}");
    let fractional = Summary::from_sums(10, 2.5, 2.5);
    let error = compare(MetricKind::Conversion, &fractional, &some, &settings).unwrap_err();
    assert!(error.to_string().starts_with("control.mean:"), "{error}");
    assert!(error.to_string().contains("must be whole"), "{error}");
    let fractional_count = Summary::from_values(&[1.0, 2.5, 3.0]);
    let error = compare(MetricKind::Count, &normal, &fractional_count, &settings).unwrap_err();
    assert!(error.to_string().starts_with("treatment.mean:"), "{error}");
    assert!(error.to_string().contains("must be whole"), "{error}");
    let not_binary = Summary::from_values(&[0.0, 2.0, 1.0, 1.0]);
    let error = compare(MetricKind::Conversion, &not_binary, &some, &settings).unwrap_err();
    assert!(
        error.to_string().starts_with("control.squared_deviations:"),
        "{error}"
    );
    let negative_count = Summary::from_values(&[-4.0, -2.0]);
    let error = compare(MetricKind::Count, &negative_count, &normal, &settings).unwrap_err();
    assert!(error.to_string().starts_with("control.mean:"), "{error}");
    let impossible = Summary {
        n: 4,
        mean: 10.0,
        squared_deviations: -1.0,
    };
    let error = compare(MetricKind::Mean, &normal, &impossible, &settings).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("treatment.squared_deviations:"),
        "{error}"
    );
    let nan = Summary {
        n: 4,
        mean: f64::NAN,
        squared_deviations: 1.0,
    };
    let error = compare(MetricKind::Mean, &nan, &normal, &settings).unwrap_err();
    assert!(error.to_string().starts_with("control.mean:"), "{error}");

    // Extreme but valid values compare (here squares overflow, squared deviations do not);
    // only an overflowing spread is refused, saying so.
    let huge = Summary::from_values(&[1e158, 1.00001e158, 0.99999e158, 1.000005e158]);
    let huger = Summary::from_values(&[1.00003e158, 1.00004e158, 1.00002e158, 1.00005e158]);
    let result = compare(MetricKind::Mean, &huge, &huger, &settings).unwrap();
    assert!(
        result.p_value < 0.05 && result.relative_interval.is_some(),
        "{result:?}"
    );
    let tiny = Summary::from_values(&[1e-200, 1.1e-200, 0.9e-200, 1.05e-200]);
    let tinier = Summary::from_values(&[1.2e-200, 1.3e-200, 1.1e-200, 1.25e-200]);
    // Spreads below ~1e-154 underflow when squared: refused as no variance, saying why.
    let error = compare(MetricKind::Mean, &tiny, &tinier, &settings).unwrap_err();
    assert_eq!(error, StatsError::ZeroVariance);
    assert!(error.to_string().contains("below"), "{error}");
    let spread = Summary::from_values(&[-1e300, 1e300, -1e300, 1e300]);
    let error = compare(MetricKind::Mean, &spread, &normal, &settings).unwrap_err();
    assert!(
        error.to_string().contains("overflows double precision"),
        "{error}"
    );

    for alpha in [0.0, 1.0, -0.1, f64::NAN, f64::INFINITY] {
        let error = compare(
            MetricKind::Mean,
            &normal,
            &normal,
            &Settings { alpha, ..settings },
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("settings.alpha:"), "{error}");
    }
    for mixture_std_dev in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let error = compare(
            MetricKind::Mean,
            &normal,
            &normal,
            &Settings {
                mixture_std_dev,
                ..settings
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("settings.mixture_std_dev:"),
            "{error}"
        );
    }
    assert!(Settings::tuned_for(0.05, 0).is_err());
    assert!(Settings::tuned_for(1.5, 100).is_err());
}

#[test]
fn comparison_is_antisymmetric_and_summaries_add_up() {
    let control = Summary::from_values(&[3.0, 4.5, 2.0, 8.0, 5.5]);
    let treatment = Summary::from_values(&[6.0, 4.0, 7.5, 9.0, 5.0, 6.5]);
    let forward = compare(MetricKind::Mean, &control, &treatment, &Settings::default()).unwrap();
    let backward = compare(MetricKind::Mean, &treatment, &control, &Settings::default()).unwrap();
    assert!((forward.absolute_lift + backward.absolute_lift).abs() < 1e-12);
    assert!((forward.p_value - backward.p_value).abs() < 1e-12);
    assert!((forward.sequential_p_value - backward.sequential_p_value).abs() < 1e-12);
    assert!(forward.absolute_interval.contains(forward.absolute_lift));
    // The confidence sequence is wider than the fixed-horizon interval: it holds at all times.
    assert!(forward.sequential_interval.lower < forward.absolute_interval.lower);

    let mut joined = Summary::from_values(&[3.0, 4.5, 2.0]);
    joined.merge(&Summary::from_values(&[8.0, 5.5]));
    assert_eq!(joined.n, control.n);
    assert!((joined.mean - control.mean).abs() < 1e-12);
    assert!((joined.squared_deviations - control.squared_deviations).abs() < 1e-12);
    assert_eq!(Summary::default().mean(), 0.0);
    assert_eq!(Summary::from_values(&[4.0]).variance(), 0.0);
}

#[test]
fn sample_ratio_rejects_malformed_input() {
    let cases: Vec<(Vec<u64>, Vec<f64>, &str)> = vec![
        (vec![10, 10], vec![1.0], "weights:"),
        (vec![10], vec![1.0], "observed:"),
        (vec![], vec![], "observed:"),
        (vec![0, 0], vec![1.0, 1.0], "observed:"),
        (vec![10, 10], vec![1.0, 0.0], "weights:"),
        (vec![10, 10], vec![1.0, -1.0], "weights:"),
        (vec![10, 10], vec![1.0, f64::NAN], "weights:"),
        (vec![10, 10], vec![f64::INFINITY, 1.0], "weights:"),
        (vec![10, 10], vec![f64::MAX, f64::MAX], "weights:"),
        (vec![10, 10], vec![1e-320, 1e300], "weights:"),
    ];
    for (observed, weights, prefix) in cases {
        let error = sample_ratio_mismatch(&observed, &weights).unwrap_err();
        assert!(
            error.to_string().starts_with(prefix),
            "{observed:?} {weights:?}: {error}"
        );
    }
    let mut random = SplitMix64(0xBAD2);
    for _ in 0..5_000 {
        let groups = 1 + (random.next_u64() % 5) as usize;
        let observed: Vec<u64> = (0..groups).map(|_| random.pick(&COUNTS)).collect();
        let weights: Vec<f64> = (0..groups).map(|_| random_value(&mut random)).collect();
        if let Ok(result) = sample_ratio_mismatch(&observed, &weights) {
            assert!(
                result.chi_square.is_finite() && result.chi_square >= 0.0,
                "{observed:?} {weights:?}"
            );
            assert!(
                (0.0..=1.0).contains(&result.p_value),
                "{observed:?} {weights:?} {result:?}"
            );
        }
    }
}

#[test]
fn holm_never_returns_nan_and_never_lowers_a_p_value() {
    assert!(holm(&[]).is_empty());
    assert_eq!(holm(&[f64::NAN, 0.01]), vec![1.0, 0.02]);
    assert_eq!(holm(&[-0.5, 2.0]), vec![0.0, 1.0]);
    let mut random = SplitMix64(0xBAD3);
    for _ in 0..2_000 {
        let length = (random.next_u64() % 12) as usize;
        let p_values: Vec<f64> = (0..length)
            .map(|_| {
                if random.next_u64().is_multiple_of(5) {
                    random_value(&mut random)
                } else {
                    random.uniform()
                }
            })
            .collect();
        let adjusted = holm(&p_values);
        assert_eq!(adjusted.len(), p_values.len());
        for (raw, adjusted) in p_values.iter().zip(&adjusted) {
            assert!((0.0..=1.0).contains(adjusted), "{p_values:?} -> {adjusted}");
            if (0.0..=1.0).contains(raw) {
                assert!(adjusted >= raw, "{p_values:?}");
            }
        }
    }
}

#[test]
fn power_functions_validate_designs() {
    let valid = Design::conversion(0.1, 0.05);
    let invalid = [
        (
            Design {
                baseline_mean: 0.0,
                ..valid
            },
            "design.baseline_mean:",
        ),
        (
            Design {
                baseline_mean: 1.2,
                ..valid
            },
            "design.baseline_mean:",
        ),
        (
            Design {
                minimum_detectable_effect: 0.0,
                ..valid
            },
            "design.minimum_detectable_effect:",
        ),
        (
            Design {
                minimum_detectable_effect: 10.0,
                ..valid
            },
            "design.minimum_detectable_effect:",
        ),
        (
            Design {
                minimum_detectable_effect: f64::NAN,
                ..valid
            },
            "design.minimum_detectable_effect:",
        ),
        (
            Design {
                alpha: 0.0,
                ..valid
            },
            "design.alpha:",
        ),
        (
            Design {
                power: 1.0,
                ..valid
            },
            "design.power:",
        ),
        (
            Design {
                power: 0.01,
                ..valid
            },
            "design.power:",
        ),
        (
            Design {
                treatments: 0,
                ..valid
            },
            "design.treatments:",
        ),
        (
            Design {
                kind: MetricKind::Mean,
                ..valid
            },
            "design.baseline_std_dev:",
        ),
        (
            Design {
                kind: MetricKind::Count,
                baseline_std_dev: Some(0.0),
                ..valid
            },
            "design.baseline_std_dev:",
        ),
        (
            Design {
                minimum_detectable_effect: 1e-12,
                ..valid
            },
            "design.minimum_detectable_effect:",
        ),
    ];
    for (design, prefix) in invalid {
        let error = required_sample_size(&design).unwrap_err();
        assert!(error.to_string().starts_with(prefix), "{design:?}: {error}");
    }
    assert!(
        achieved_power(
            &Design {
                treatments: 0,
                ..valid
            },
            100
        )
        .is_err()
    );

    // Bonferroni: more treatments need more contexts per variation.
    let one = required_sample_size(&valid).unwrap();
    let three = required_sample_size(&Design {
        treatments: 3,
        ..valid
    })
    .unwrap();
    assert!(three > one);
    // With no data the power is the test's level.
    let power_without_data = achieved_power(&valid, 0).unwrap();
    assert!(
        (power_without_data - 0.05).abs() < 1e-9,
        "{power_without_data}"
    );

    let mut random = SplitMix64(0xBAD4);
    for _ in 0..5_000 {
        let design = Design {
            kind: random.pick(&KINDS),
            baseline_mean: random_value(&mut random),
            baseline_std_dev: if random.next_u64().is_multiple_of(4) {
                None
            } else {
                Some(random_value(&mut random))
            },
            minimum_detectable_effect: random_value(&mut random),
            alpha: if random.next_u64().is_multiple_of(2) {
                random.uniform()
            } else {
                random_value(&mut random)
            },
            power: if random.next_u64().is_multiple_of(2) {
                random.uniform()
            } else {
                random_value(&mut random)
            },
            treatments: random.pick(&[0, 1, 2, 7, u32::MAX]),
            one_sided: random.next_u64().is_multiple_of(2),
        };
        if let Ok(size) = required_sample_size(&design) {
            assert!(size >= 2, "{design:?}");
        }
        if let Ok(power) = achieved_power(&design, random.pick(&COUNTS)) {
            assert!((0.0..=1.0).contains(&power), "{design:?} -> {power}");
        }
    }
}

/// Quantile summaries with awkward order statistics, counts and levels: an error naming the
/// problem or a sane comparison, never a panic or a NaN.
#[test]
fn quantile_comparisons_never_panic_or_return_non_finite_values() {
    let mut random = SplitMix64(0xBAD9);
    let mut successes = 0;
    for _ in 0..5_000 {
        let arm = |random: &mut SplitMix64| {
            let mut ends = [
                random_value(random),
                random_value(random),
                random_value(random),
            ];
            if random.next_u64().is_multiple_of(2) {
                ends.sort_by(f64::total_cmp);
            }
            // Half the arms with a valid shape, so that the success path is swept too.
            let plausible = random.next_u64().is_multiple_of(2);
            QuantileSummary {
                n: if plausible {
                    1_000
                } else {
                    random.pick(&COUNTS)
                },
                level: if plausible {
                    0.9
                } else {
                    random.pick(&[0.5, 0.9, 0.99, 0.0, 1.0, f64::NAN, 1e-12])
                },
                alpha: if plausible {
                    0.05
                } else {
                    random.pick(&[0.05, 0.1, 0.0, 2.0])
                },
                estimate: ends[1],
                lower: ends[0],
                upper: ends[2],
            }
        };
        let control = arm(&mut random);
        let mut treatment = arm(&mut random);
        if random.next_u64().is_multiple_of(2) {
            treatment.level = control.level;
            treatment.alpha = control.alpha;
        }
        let context = format!("{control:?} {treatment:?}");
        match compare_quantiles(&control, &treatment, &Settings::default()) {
            Ok(comparison) => {
                successes += 1;
                assert_sane(&comparison, &context);
            }
            Err(error) => assert!(!error.to_string().is_empty(), "{context}"),
        }
    }
    assert!(successes > 50, "only {successes} successful comparisons");

    let summary = |n, lower, estimate, upper| QuantileSummary {
        n,
        level: 0.9,
        alpha: 0.05,
        estimate,
        lower,
        upper,
    };
    let message = |c: &QuantileSummary, t: &QuantileSummary| {
        compare_quantiles(c, t, &Settings::default())
            .unwrap_err()
            .to_string()
    };
    let good = summary(1_000, 9.0, 10.0, 11.0);
    assert!(message(&summary(20, 9.0, 10.0, 11.0), &good).contains("at least 36 are needed"));
    assert!(message(&good, &summary(1_000, 12.0, 10.0, 11.0)).starts_with("treatment.quantile:"));
    let other_level = QuantileSummary { level: 0.5, ..good };
    assert!(message(&good, &other_level).contains("same quantile"));
    let flat = summary(1_000, 10.0, 10.0, 10.0);
    assert_eq!(
        compare_quantiles(&flat, &flat, &Settings::default()),
        Err(StatsError::ZeroVariance)
    );
}
