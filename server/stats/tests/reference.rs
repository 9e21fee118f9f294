//! Checks every statistic against values computed by scipy and statsmodels
//! (tests/reference/generate.py, whose output reference.json is committed beside it).

use serde_json::Value;
use vexil_stats::{
    Alternative, Design, Interval, MetricKind, PairSummary, QuantileSummary, RelativeUndefined,
    Settings, Summary, achieved_power, bayesian, compare, compare_quantiles, compare_ratio, cuped,
    holm, quantile_ranks, required_sample_size, sample_ratio_mismatch,
};

const RELATIVE_TOLERANCE: f64 = 1e-6;
/// Only for reference values that are zero up to rounding (e.g. a chi-square of exactly 0).
const ABSOLUTE_TOLERANCE_NEAR_ZERO: f64 = 1e-12;

/// The cases of one section of reference.json.
fn cases(section: &str) -> Vec<Value> {
    let text = include_str!("reference/reference.json");
    let mut reference: Value = serde_json::from_str(text).expect("reference.json parses");
    match reference[section].take() {
        Value::Array(cases) => cases,
        other => panic!("section {section} is an array: {other}"),
    }
}

/// A number, or a decimal string (parsed exactly, unlike a JSON number).
fn number(value: &Value, key: &str) -> f64 {
    match &value[key] {
        Value::String(text) => text.parse().ok(),
        number => number.as_f64(),
    }
    .unwrap_or_else(|| panic!("reference field {key} is a number: {value}"))
}

/// An interval; an end written as "inf" or "-inf" is unbounded (a one-sided interval).
fn pair(value: &Value, key: &str) -> (f64, f64) {
    let items = value[key].as_array().expect("an interval is a pair");
    let end = |item: &Value| match item {
        Value::String(text) => text.parse().expect("a number"),
        number => number.as_f64().unwrap(),
    };
    (end(&items[0]), end(&items[1]))
}

/// The array `key` of `value`, each item read by `item`.
fn list<T>(value: &Value, key: &str, item: fn(&Value) -> Option<T>) -> Vec<T> {
    let items = value[key]
        .as_array()
        .unwrap_or_else(|| panic!("reference field {key} is an array: {value}"));
    let read = |v| item(v).unwrap_or_else(|| panic!("an item of {key}: {v}"));
    items.iter().map(read).collect()
}

fn assert_close(case: &str, what: &str, actual: f64, expected: f64) {
    if expected.is_infinite() {
        assert_eq!(actual, expected, "{case}: {what}");
        return;
    }
    let difference = (actual - expected).abs();
    let relative = difference / expected.abs();
    assert!(
        relative <= RELATIVE_TOLERANCE || difference <= ABSOLUTE_TOLERANCE_NEAR_ZERO,
        "{case}: {what} = {actual:e}, reference {expected:e} (relative error {relative:e})"
    );
}

/// Asserts that `actual` is close to the number `key` of `expected`.
fn assert_expected(case: &str, expected: &Value, key: &str, actual: f64) {
    assert_close(case, key, actual, number(expected, key));
}

fn assert_interval(case: &str, what: &str, actual: Interval, expected: (f64, f64)) {
    assert_close(case, &format!("{what}.lower"), actual.lower, expected.0);
    assert_close(case, &format!("{what}.upper"), actual.upper, expected.1);
}

fn summary_of(case: &str, value: &Value) -> Summary {
    let n = value["n"].as_u64().expect("n");
    let summary = match value.get("converted").and_then(Value::as_u64) {
        Some(converted) => Summary::conversions(n, converted),
        None => Summary {
            n,
            mean: number(value, "mean"),
            squared_deviations: number(value, "squared_deviations"),
        },
    };
    if let Some(values) = value.get("values").and_then(Value::as_array) {
        // Welford's updates over the values against the exactly rounded sums of the script.
        let values: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
        let from_values = Summary::from_values(&values);
        assert_eq!(from_values.n, summary.n, "{case}: from_values n");
        assert_close(case, "from_values mean", from_values.mean, summary.mean);
        assert_close(
            case,
            "from_values squared_deviations",
            from_values.squared_deviations,
            summary.squared_deviations,
        );
        // Merging two halves gives the same moments.
        let (left, right) = values.split_at(values.len() / 2);
        let mut merged = Summary::from_values(left);
        merged.merge(&Summary::from_values(right));
        assert_close(case, "merged mean", merged.mean, summary.mean);
        assert_close(
            case,
            "merged squared_deviations",
            merged.squared_deviations,
            summary.squared_deviations,
        );
    }
    summary
}

/// The two arms of a reference comparison.
enum Arms {
    Values(MetricKind, Summary, Summary),
    Ratios(PairSummary, PairSummary),
    /// A metric and its pre-exposure covariate, adjusted by CUPED.
    Cuped(PairSummary, PairSummary),
    Quantiles(QuantileSummary, QuantileSummary),
}

fn arms_of(name: &str, case: &Value) -> Arms {
    let kind = match case["kind"].as_str().unwrap() {
        "conversion" => MetricKind::Conversion,
        "mean" => MetricKind::Mean,
        "count" => MetricKind::Count,
        "ratio" => return arms(name, case, ratio_summary_of, Arms::Ratios),
        "cuped" => return arms(name, case, ratio_summary_of, Arms::Cuped),
        "quantile" => return arms(name, case, quantile_summary_of, Arms::Quantiles),
        other => panic!("unknown kind {other}"),
    };
    arms(name, case, summary_of, |control, treatment| {
        Arms::Values(kind, control, treatment)
    })
}

/// The control and treatment of `case`, each read by `read`, as `Arms` by `make`.
fn arms<T>(
    name: &str,
    case: &Value,
    read: fn(&str, &Value) -> T,
    make: impl FnOnce(T, T) -> Arms,
) -> Arms {
    make(read(name, &case["control"]), read(name, &case["treatment"]))
}

/// A quantile summary; where the values are committed, the order statistics read from them
/// must be scipy's (the same ranks).
fn quantile_summary_of(case: &str, value: &Value) -> QuantileSummary {
    let summary = QuantileSummary {
        n: value["n"].as_u64().expect("n"),
        level: number(value, "level"),
        alpha: number(value, "alpha"),
        estimate: number(value, "estimate"),
        lower: number(value, "lower"),
        upper: number(value, "upper"),
    };
    if let Some(values) = value.get("values").and_then(Value::as_array) {
        let values: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
        let read = QuantileSummary::from_values(&values, summary.level, summary.alpha).unwrap();
        assert_eq!(read, summary, "{case}: order statistics");
    }
    summary
}

fn ratio_summary_of(case: &str, value: &Value) -> PairSummary {
    let summary = PairSummary {
        n: value["n"].as_u64().expect("n"),
        mean_x: number(value, "mean_x"),
        mean_y: number(value, "mean_y"),
        squared_deviations_x: number(value, "squared_deviations_x"),
        squared_deviations_y: number(value, "squared_deviations_y"),
        co_deviations: number(value, "co_deviations"),
    };
    if let Some(pairs) = value.get("pairs").and_then(Value::as_array) {
        let pairs: Vec<(f64, f64)> = pairs
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let (left, right) = pairs.split_at(pairs.len() / 3);
        let mut merged = PairSummary::from_pairs(left);
        merged.merge(&PairSummary::from_pairs(right));
        for (what, got, want) in [
            ("mean_x", merged.mean_x, summary.mean_x),
            ("co_deviations", merged.co_deviations, summary.co_deviations),
            (
                "squared_deviations_y",
                merged.squared_deviations_y,
                summary.squared_deviations_y,
            ),
        ] {
            assert_close(case, what, got, want);
        }
    }
    summary
}

fn undefined_key(reason: RelativeUndefined) -> &'static str {
    match reason {
        RelativeUndefined::ControlMeanZero => "control_mean_zero",
        RelativeUndefined::ControlMeanUnresolved => "control_mean_unresolved",
        RelativeUndefined::TreatmentWithoutSpread => "treatment_without_spread",
        RelativeUndefined::OutOfRange => "out_of_range",
    }
}

#[test]
fn comparisons_match_scipy_and_statsmodels() {
    let cases = cases("comparisons");
    assert!(cases.len() >= 25);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let settings = Settings {
            alpha: number(case, "alpha"),
            mixture_std_dev: number(case, "mixture_std_dev"),
            alternative: match case["alternative"].as_str() {
                None | Some("two-sided") => Alternative::TwoSided,
                Some("greater") => Alternative::Greater,
                Some("less") => Alternative::Less,
                Some(other) => panic!("unknown alternative {other}"),
            },
        };
        let result = match arms_of(name, case) {
            Arms::Values(kind, control, treatment) => {
                compare(kind, &control, &treatment, &settings)
            }
            Arms::Ratios(control, treatment) => compare_ratio(&control, &treatment, &settings),
            Arms::Cuped(control, treatment) => {
                let (control, treatment, reduction) = cuped(&control, &treatment).unwrap();
                assert_expected(name, &case["expected"], "variance_reduction", reduction);
                compare(MetricKind::Mean, &control, &treatment, &settings)
            }
            Arms::Quantiles(control, treatment) => {
                compare_quantiles(&control, &treatment, &settings)
            }
        }
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        let expected = &case["expected"];
        assert_expected(name, expected, "control_mean", result.control_mean);
        assert_expected(name, expected, "treatment_mean", result.treatment_mean);
        assert_expected(name, expected, "absolute_lift", result.absolute_lift);
        assert_interval(
            name,
            "absolute_interval",
            result.absolute_interval,
            pair(expected, "absolute_interval"),
        );
        match expected["relative_lift"].as_f64() {
            Some(relative) => assert_close(
                name,
                "relative_lift",
                result.relative_lift.expect("a relative lift"),
                relative,
            ),
            None => assert_eq!(result.relative_lift, None, "{name}: relative_lift"),
        }
        match expected["relative_undefined"].as_str() {
            None => assert_interval(
                name,
                "relative_interval",
                result.relative_interval.expect("a relative interval"),
                pair(expected, "relative_interval"),
            ),
            Some(reason) => {
                assert_eq!(result.relative_interval, None, "{name}: relative_interval");
                assert_eq!(
                    result.relative_undefined.map(undefined_key),
                    Some(reason),
                    "{name}: why the relative interval is undefined"
                );
            }
        }
        assert_expected(name, expected, "p_value", result.p_value);
        assert_expected(
            name,
            expected,
            "sequential_p_value",
            result.sequential_p_value,
        );
        assert_interval(
            name,
            "sequential_interval",
            result.sequential_interval,
            pair(expected, "sequential_interval"),
        );
        assert_expected(name, expected, "standard_error", result.standard_error);
    }
}

/// The Bayesian summaries against scipy: conversions integrated numerically over the Beta
/// posteriors, means from the normal closed forms. The normal credible interval of a
/// conversion lift is also compared with the exact one, and its worst deviation printed (in
/// units of the interval's width) for STATISTICS.md.
#[test]
fn bayesian_summaries_match_scipy() {
    let mut worst_interval_deviation = 0.0f64;
    for case in &cases("comparisons") {
        let name = case["name"].as_str().unwrap();
        let alpha = number(case, "alpha");
        // A ratio's posterior is that of its linearised values, a mean.
        let (kind, control, treatment) = match arms_of(name, case) {
            Arms::Values(kind, control, treatment) => (kind, control, treatment),
            Arms::Ratios(control, treatment) => (
                MetricKind::Mean,
                control.linearized("control").unwrap(),
                treatment.linearized("treatment").unwrap(),
            ),
            Arms::Cuped(control, treatment) => {
                let (control, treatment, _) = cuped(&control, &treatment).unwrap();
                (MetricKind::Mean, control, treatment)
            }
            Arms::Quantiles(control, treatment) => (
                MetricKind::Mean,
                control.as_mean("control").unwrap(),
                treatment.as_mean("treatment").unwrap(),
            ),
        };
        let result = bayesian(kind, &control, &treatment, alpha)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let expected = &case["expected"]["bayesian"];
        assert_expected(name, expected, "chance_above", result.chance_above);
        // With tens of thousands of conversions an expected loss is the difference of two
        // nearly equal terms (E[Y]·P(Y⁺ > X) − E[X]·P(Y > X⁺)), and the rounding of their
        // log-Beta factors shows: checked at 1e-5 there (1.6e-6 measured), 1e-6 elsewhere.
        let counts_large = kind == MetricKind::Conversion
            && [control, treatment].iter().all(|s| {
                let converted = s.sum().round();
                converted.min(s.n as f64 - converted) > 10_000.0
            });
        let tolerance = if counts_large { 1e-5 } else { 1e-6 };
        for (what, got) in [
            ("expected_loss_above", result.expected_loss_above),
            ("expected_loss_below", result.expected_loss_below),
        ] {
            let want = number(expected, what);
            // Losses of a few 1e-12 are zero up to the integration's rounding.
            assert!(
                (got - want).abs() <= tolerance * want.abs() + 1e-12,
                "{name}: {what} = {got:e}, reference {want:e}"
            );
        }
        assert_interval(
            name,
            "credible_interval",
            result.credible_interval,
            pair(expected, "credible_interval"),
        );
        if expected.get("exact_credible_interval").is_some() {
            let exact = pair(expected, "exact_credible_interval");
            let width = exact.1 - exact.0;
            let deviation = (result.credible_interval.lower - exact.0)
                .abs()
                .max((result.credible_interval.upper - exact.1).abs())
                / width;
            println!(
                "{name}: normal credible interval off the exact one by {deviation:.4} of its width"
            );
            worst_interval_deviation = worst_interval_deviation.max(deviation);
        }
    }
    println!("worst: {worst_interval_deviation:.4}");
    assert!(
        worst_interval_deviation < 0.08,
        "{worst_interval_deviation}"
    );
}

/// The ranks of a quantile's interval ends are scipy's, from 5 values to a million; where scipy
/// has no interval (too few values) the engine refuses.
#[test]
fn quantile_ranks_match_scipy() {
    let cases = cases("quantile_ranks");
    assert!(cases.len() >= 100);
    for case in &cases {
        let (n, level, alpha) = (
            case["n"].as_u64().unwrap(),
            number(case, "level"),
            number(case, "alpha"),
        );
        let what = format!("n = {n}, quantile {level}, alpha {alpha}");
        match (case["lower"].as_u64(), case["upper"].as_u64()) {
            (Some(lower), Some(upper)) => {
                let ranks =
                    quantile_ranks(n, level, alpha).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!((ranks.lower, ranks.upper), (lower, upper), "{what}");
                assert_eq!(ranks.estimate, case["estimate"].as_u64().unwrap(), "{what}");
            }
            _ => assert!(quantile_ranks(n, level, alpha).is_err(), "{what}"),
        }
    }
}

#[test]
fn sample_ratio_matches_scipy_chisquare() {
    for case in &cases("sample_ratio") {
        let name = case["name"].as_str().unwrap();
        let observed = list(case, "observed", Value::as_u64);
        let weights = list(case, "weights", Value::as_f64);
        let result = sample_ratio_mismatch(&observed, &weights)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let expected = &case["expected"];
        assert_expected(name, expected, "chi_square", result.chi_square);
        assert_eq!(
            u64::from(result.degrees_of_freedom),
            expected["degrees_of_freedom"].as_u64().unwrap(),
            "{name}"
        );
        assert_expected(name, expected, "p_value", result.p_value);
        assert_eq!(
            result.mismatch,
            expected["mismatch"].as_bool().unwrap(),
            "{name}: mismatch"
        );
    }
}

#[test]
fn holm_matches_statsmodels_multipletests() {
    for (index, case) in cases("holm").iter().enumerate() {
        let name = format!("holm case {index}");
        let p_values = list(case, "p_values", Value::as_f64);
        let expected = list(case, "expected", Value::as_f64);
        let adjusted = holm(&p_values);
        assert_eq!(adjusted.len(), expected.len(), "{name}");
        for (position, (actual, expected)) in adjusted.iter().zip(&expected).enumerate() {
            assert_close(&name, &format!("adjusted[{position}]"), *actual, *expected);
        }
    }
}

#[test]
fn power_and_sample_size_match_statsmodels_normal_ind_power() {
    for (index, case) in cases("power").iter().enumerate() {
        let name = format!("power case {index}");
        let raw = &case["design"];
        let design = Design {
            kind: match raw["kind"].as_str().unwrap() {
                "conversion" => MetricKind::Conversion,
                "mean" => MetricKind::Mean,
                _ => MetricKind::Count,
            },
            baseline_mean: number(raw, "baseline_mean"),
            baseline_std_dev: raw["baseline_std_dev"].as_f64(),
            minimum_detectable_effect: number(raw, "minimum_detectable_effect"),
            alpha: number(raw, "alpha"),
            power: number(raw, "power"),
            treatments: raw["treatments"].as_u64().unwrap() as u32,
            one_sided: raw["one_sided"].as_bool().unwrap_or(false),
        };
        let expected = &case["expected"];
        let required =
            required_sample_size(&design).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(
            required,
            expected["required_sample_size"].as_u64().unwrap(),
            "{name}: required sample size"
        );
        assert_close(
            &name,
            "power at the required size",
            achieved_power(&design, required).unwrap(),
            number(expected, "power_at_required"),
        );
        let contexts = expected["contexts"].as_u64().unwrap();
        assert_close(
            &name,
            "power at other size",
            achieved_power(&design, contexts).unwrap(),
            number(expected, "power_at_contexts"),
        );
        // One context fewer than required must fall short of the requested power.
        if required > 2 {
            assert!(
                achieved_power(&design, required - 1).unwrap() < design.power,
                "{name}"
            );
        }
    }
}
