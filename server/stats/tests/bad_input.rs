//! Bad input never panics and never leaks a NaN: property-style sweeps over awkward values,
//! and the specific errors each degenerate input gets.

use vexil_stats::{
    Comparison, Design, MetricKind, Settings, StatsError, Summary, achieved_power, compare, holm,
    required_sample_size, sample_ratio_mismatch,
};

/// SplitMix64, to pick combinations of awkward values reproducibly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[(self.next_u64() % values.len() as u64) as usize]
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
            let conversions = (random.uniform() * n as f64).floor();
            Summary {
                n,
                sum: conversions,
                sum_squares: conversions,
            }
        }
        // Anything at all.
        _ => Summary {
            n,
            sum: random_value(random),
            sum_squares: random_value(random),
        },
    }
}

fn assert_sane(comparison: &Comparison, context: &str) {
    let values = [
        comparison.control_mean,
        comparison.treatment_mean,
        comparison.absolute_lift,
        comparison.absolute_interval.lower,
        comparison.absolute_interval.upper,
        comparison.relative_lift,
        comparison.relative_interval.lower,
        comparison.relative_interval.upper,
        comparison.p_value,
        comparison.sequential_p_value,
        comparison.sequential_interval.lower,
        comparison.sequential_interval.upper,
        comparison.standard_error,
    ];
    assert!(
        values.iter().all(|v| v.is_finite()),
        "non-finite output for {context}: {comparison:?}"
    );
    assert!(
        (0.0..=1.0).contains(&comparison.p_value),
        "{context}: {comparison:?}"
    );
    assert!(
        (0.0..=1.0).contains(&comparison.sequential_p_value),
        "{context}: {comparison:?}"
    );
    assert!(
        comparison.absolute_interval.lower <= comparison.absolute_interval.upper,
        "{context}"
    );
    assert!(
        comparison.relative_interval.lower <= comparison.relative_interval.upper,
        "{context}"
    );
    assert!(
        comparison.sequential_interval.lower <= comparison.sequential_interval.upper,
        "{context}"
    );
    assert!(comparison.standard_error > 0.0, "{context}");
}

#[test]
fn compare_never_panics_or_returns_non_finite_values() {
    let mut random = SplitMix64(0xBAD1);
    let mut successes = 0;
    for _ in 0..20_000 {
        let kind = random.pick(&KINDS);
        let control = random_summary(&mut random);
        let treatment = random_summary(&mut random);
        let settings = if random.next_u64().is_multiple_of(4) {
            Settings {
                alpha: random_value(&mut random),
                mixture_std_dev: random_value(&mut random),
            }
        } else {
            Settings::default()
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

    let zero_mean = mean_summary(&[-1.0, 1.0, -2.0, 2.0]);
    assert_eq!(
        compare(MetricKind::Mean, &zero_mean, &normal, &settings).unwrap_err(),
        StatsError::ZeroControlMean
    );

    // Conversions: none anywhere, all everywhere, none in control.
    let none = Summary {
        n: 100,
        sum: 0.0,
        sum_squares: 0.0,
    };
    let all = Summary {
        n: 100,
        sum: 100.0,
        sum_squares: 100.0,
    };
    let some = Summary {
        n: 100,
        sum: 10.0,
        sum_squares: 10.0,
    };
    assert_eq!(
        compare(MetricKind::Conversion, &none, &none, &settings).unwrap_err(),
        StatsError::ZeroVariance
    );
    assert_eq!(
        compare(MetricKind::Conversion, &all, &all, &settings).unwrap_err(),
        StatsError::ZeroVariance
    );
    assert_eq!(
        compare(MetricKind::Conversion, &all, &none, &settings).unwrap_err(),
        StatsError::ZeroVariance
    );
    assert_eq!(
        compare(MetricKind::Conversion, &none, &some, &settings).unwrap_err(),
        StatsError::ZeroControlMean
    );
    assert!(compare(MetricKind::Conversion, &some, &none, &settings).is_ok());

    let too_many = Summary {
        n: 10,
        sum: 11.0,
        sum_squares: 11.0,
    };
    let error = compare(MetricKind::Conversion, &some, &too_many, &settings).unwrap_err();
    assert!(error.to_string().starts_with("treatment.sum:"), "{error}");
    let not_binary = Summary {
        n: 10,
        sum: 4.0,
        sum_squares: 9.0,
    };
    let error = compare(MetricKind::Conversion, &not_binary, &some, &settings).unwrap_err();
    assert!(
        error.to_string().starts_with("control.sum_squares:"),
        "{error}"
    );
    let negative_count = Summary {
        n: 10,
        sum: -4.0,
        sum_squares: 9.0,
    };
    let error = compare(MetricKind::Count, &negative_count, &normal, &settings).unwrap_err();
    assert!(error.to_string().starts_with("control.sum:"), "{error}");
    let impossible = Summary {
        n: 4,
        sum: 10.0,
        sum_squares: 1.0,
    };
    let error = compare(MetricKind::Mean, &normal, &impossible, &settings).unwrap_err();
    assert!(
        error.to_string().starts_with("treatment.sum_squares:"),
        "{error}"
    );
    let nan = Summary {
        n: 4,
        sum: f64::NAN,
        sum_squares: 1.0,
    };
    let error = compare(MetricKind::Mean, &nan, &normal, &settings).unwrap_err();
    assert!(error.to_string().starts_with("control.sum:"), "{error}");

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
    let rest = Summary::from_values(&[8.0, 5.5]);
    joined.n += rest.n;
    joined.sum += rest.sum;
    joined.sum_squares += rest.sum_squares;
    assert_eq!(joined, control);
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
    let valid = Design {
        kind: MetricKind::Conversion,
        baseline_mean: 0.1,
        baseline_std_dev: None,
        minimum_detectable_effect: 0.05,
        alpha: 0.05,
        power: 0.8,
        treatments: 1,
    };
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
        };
        if let Ok(size) = required_sample_size(&design) {
            assert!(size >= 2, "{design:?}");
        }
        if let Ok(power) = achieved_power(&design, random.pick(&COUNTS)) {
            assert!((0.0..=1.0).contains(&power), "{design:?} -> {power}");
        }
    }
}
