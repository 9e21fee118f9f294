//! Tail probabilities and quantiles of the distributions the tests use, on top of statrs.
//!
//! Every function takes already-validated arguments; should statrs still refuse them, the
//! failure surfaces as a [`StatsError`] rather than a panic.

use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

use crate::StatsError;

fn standard_normal() -> Result<Normal, StatsError> {
    Normal::new(0.0, 1.0).map_err(|_| StatsError::InvalidInput {
        field: "normal",
        reason: "the standard normal distribution could not be built".into(),
    })
}

fn students_t(degrees_of_freedom: f64) -> Result<StudentsT, StatsError> {
    StudentsT::new(0.0, 1.0, degrees_of_freedom).map_err(|_| StatsError::InvalidParameter {
        field: "degrees_of_freedom",
        value: degrees_of_freedom,
        expected: "a finite number greater than 0",
    })
}

/// P(Z > z) for a standard normal Z.
pub(crate) fn normal_sf(z: f64) -> Result<f64, StatsError> {
    Ok(standard_normal()?.sf(z))
}

/// Φ(z) = P(Z ≤ z) for a standard normal Z.
pub(crate) fn normal_cdf(z: f64) -> Result<f64, StatsError> {
    Ok(standard_normal()?.cdf(z))
}

/// The z with P(Z > z) = `upper_tail`, for `upper_tail` in (0, 1).
pub(crate) fn normal_upper_quantile(upper_tail: f64) -> Result<f64, StatsError> {
    // inverse_cdf(1 − q) would lose digits for small q; −inverse_cdf(q) does not.
    Ok(-standard_normal()?.inverse_cdf(upper_tail))
}

/// Beyond this many degrees of freedom the incomplete beta function behind statrs' t loses
/// accuracy (3.6e-7 at ν = 1e8) and its inverse may not terminate, so Student's t is taken from
/// its expansion around the normal in powers of 1/ν instead (Abramowitz and Stegun 26.7.5 and
/// 26.7.8). Its omitted terms grow like t⁸/ν²: measured against scipy, p-values ≥ 1e-15 stay
/// within 1e-8 relative, while far beyond (p near 1e-197, t = 30 at ν = 2·10⁶) the error
/// reaches 5e-3 relative — irrelevant to any decision, but not "exact".
const EXPANSION_DEGREES_OF_FREEDOM: f64 = 1e6;

fn standard_normal_density(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Two-sided p-value of a Student t statistic: 2 · P(T_ν > |t|).
pub(crate) fn t_two_sided_p(t: f64, degrees_of_freedom: f64) -> Result<f64, StatsError> {
    if t.is_nan() {
        return Err(StatsError::InvalidInput {
            field: "t",
            reason: "the test statistic is not a number".into(),
        });
    }
    if degrees_of_freedom > EXPANSION_DEGREES_OF_FREEDOM {
        // P(T > t) ≈ P(Z > t) + φ(t) t (t² + 1) / (4ν) + O(1/ν²).
        let t = t.abs();
        let correction =
            standard_normal_density(t) * t * (t * t + 1.0) / (4.0 * degrees_of_freedom);
        return Ok((2.0 * (normal_sf(t)? + correction)).min(1.0));
    }
    let distribution = students_t(degrees_of_freedom)?;
    Ok((2.0 * distribution.sf(t.abs())).min(1.0))
}

/// The t with P(T_ν > t) = `upper_tail`, for `upper_tail` in (0, 0.5].
///
/// statrs' inverse goes through an inverse incomplete beta that is a few digits short of what
/// the reference tests demand (and refuses extreme tails), so its answer only seeds a
/// safeguarded Newton iteration on the survival function (derivative −pdf) inside a bracket
/// that falls back on bisection.
pub(crate) fn t_upper_quantile(
    upper_tail: f64,
    degrees_of_freedom: f64,
) -> Result<f64, StatsError> {
    if degrees_of_freedom > EXPANSION_DEGREES_OF_FREEDOM {
        // Cornish–Fisher: t = z + (z³ + z)/(4ν) + (5z⁵ + 16z³ + 3z)/(96ν²) + O(1/ν³).
        let z = normal_upper_quantile(upper_tail)?;
        let z2 = z * z;
        let nu = degrees_of_freedom;
        return Ok(z
            + z * (z2 + 1.0) / (4.0 * nu)
            + z * ((5.0 * z2 + 16.0) * z2 + 3.0) / (96.0 * nu * nu));
    }
    let distribution = students_t(degrees_of_freedom)?;
    let unreachable = || StatsError::InvalidParameter {
        field: "settings.alpha",
        value: 2.0 * upper_tail,
        expected: "a level whose critical value is representable",
    };
    // Bracket: sf(low) ≥ q ≥ sf(high).
    let mut low = 0.0;
    let mut high = normal_upper_quantile(upper_tail)?.max(1.0);
    while distribution.sf(high) > upper_tail {
        low = high;
        high *= 2.0;
        if !high.is_finite() {
            return Err(unreachable());
        }
    }
    // statrs' inverse incomplete beta loops without bound for very large ν, so it only seeds
    // moderate cases; otherwise the Cornish–Fisher term t ≈ z + (z³ + z)/(4ν) does.
    let mut t = if upper_tail >= 1e-12 && degrees_of_freedom <= 1e5 {
        -distribution.inverse_cdf(upper_tail)
    } else {
        let z = normal_upper_quantile(upper_tail)?;
        z + (z * z * z + z) / (4.0 * degrees_of_freedom)
    };
    if !(t > low && t < high) {
        t = 0.5 * (low + high);
    }
    for _ in 0..200 {
        let excess = distribution.sf(t) - upper_tail;
        if excess == 0.0 {
            break;
        }
        if excess > 0.0 {
            low = t;
        } else {
            high = t;
        }
        let density = distribution.pdf(t);
        let newton = t + excess / density;
        let next = if density > 0.0 && newton > low && newton < high {
            newton
        } else {
            0.5 * (low + high)
        };
        let converged = (next - t).abs() <= 1e-15 * t.abs().max(1.0);
        t = next;
        if converged {
            break;
        }
    }
    Ok(t)
}

/// P(X > x) for a chi-square X with `degrees_of_freedom`.
pub(crate) fn chi_square_sf(x: f64, degrees_of_freedom: f64) -> Result<f64, StatsError> {
    let distribution =
        ChiSquared::new(degrees_of_freedom).map_err(|_| StatsError::InvalidParameter {
            field: "degrees_of_freedom",
            value: degrees_of_freedom,
            expected: "a finite number greater than 0",
        })?;
    Ok(distribution.sf(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_relative(actual: f64, expected: f64, tolerance: f64) {
        let relative = ((actual - expected) / expected).abs();
        assert!(
            relative <= tolerance,
            "{actual:e} vs {expected:e} ({relative:e})"
        );
    }

    #[test]
    fn t_quantile_matches_closed_forms_even_in_extreme_tails() {
        for q in [0.25, 0.025, 0.005, 1e-6, 1e-12, 1e-30] {
            // ν = 1 is the Cauchy distribution: t = tan(π (1/2 − q)) = 1 / tan(π q).
            assert_relative(
                t_upper_quantile(q, 1.0).unwrap(),
                1.0 / (std::f64::consts::PI * q).tan(),
                1e-9,
            );
            // ν = 2: t = (1 − 2q) / √(2 q (1 − q)).
            assert_relative(
                t_upper_quantile(q, 2.0).unwrap(),
                (1.0 - 2.0 * q) / (2.0 * q * (1.0 - q)).sqrt(),
                1e-9,
            );
        }
    }

    #[test]
    fn t_agrees_with_its_large_sample_expansion_on_both_sides_of_the_switch() {
        let z = normal_upper_quantile(0.025).unwrap();
        for degrees_of_freedom in [1e5, 1e6, 1.000_001e6, 1e8, 1e12] {
            let t = t_upper_quantile(0.025, degrees_of_freedom).unwrap();
            let expected = z * (1.0 + (z * z + 1.0) / (4.0 * degrees_of_freedom));
            assert_relative(t, expected, 1e-8);
            // P(T > z) − P(Z > z) ≈ φ(z) z (z² + 1) / (4ν).
            let excess =
                standard_normal_density(z) * z * (z * z + 1.0) / (4.0 * degrees_of_freedom);
            assert_relative(
                t_two_sided_p(z, degrees_of_freedom).unwrap(),
                0.05 + 2.0 * excess,
                1e-8,
            );
            assert_relative(t_two_sided_p(t, degrees_of_freedom).unwrap(), 0.05, 1e-8);
        }
    }

    /// The largest relative error of `actual` over the reference cases of `section`, printed
    /// (STATISTICS.md quotes these figures) and returned.
    fn worst_relative_error(
        section: &str,
        actual: impl Fn(&serde_json::Value) -> f64,
        expected: &str,
        smallest: f64,
    ) -> f64 {
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("../tests/reference/reference.json")).unwrap();
        let mut worst = 0.0f64;
        for case in reference["tails"][section].as_array().unwrap() {
            let want = case[expected].as_f64().unwrap();
            if want < smallest {
                continue;
            }
            let got = actual(case);
            let relative = ((got - want) / want).abs();
            assert!(
                relative.is_finite(),
                "{section} {case}: {got:e} vs {want:e}"
            );
            worst = worst.max(relative);
        }
        println!("{section} (values ≥ {smallest:e}): worst relative error {worst:.1e}");
        worst
    }

    /// The precision STATISTICS.md states, measured against scipy far into the tails.
    #[test]
    fn tails_match_scipy_to_the_documented_precision() {
        let degrees = |case: &serde_json::Value| case["degrees_of_freedom"].as_f64().unwrap();
        let t_p = |case: &serde_json::Value| {
            t_two_sided_p(case["t"].as_f64().unwrap(), degrees(case)).unwrap()
        };
        // Every p-value a decision can turn on, then far beyond: above ν = 10⁶ the expansion
        // in 1/ν loses relative precision once t⁴/ν is no longer small.
        assert!(worst_relative_error("t_p_value", t_p, "p_value", 1e-15) < 1e-8);
        assert!(worst_relative_error("t_p_value", t_p, "p_value", 0.0) < 1e-2);
        let quantile = |case: &serde_json::Value| {
            t_upper_quantile(case["upper_tail"].as_f64().unwrap(), degrees(case)).unwrap()
        };
        assert!(worst_relative_error("t_quantile", quantile, "t", 0.0) < 1e-9);
        let normal = |case: &serde_json::Value| normal_sf(case["z"].as_f64().unwrap()).unwrap();
        assert!(worst_relative_error("normal_sf", normal, "sf", 0.0) < 1e-9);
        let chi_square = |case: &serde_json::Value| {
            chi_square_sf(case["x"].as_f64().unwrap(), degrees(case)).unwrap()
        };
        assert!(worst_relative_error("chi_square_sf", chi_square, "sf", 0.0) < 1e-12);
    }

    #[test]
    fn chi_square_and_normal_tails_are_accurate() {
        // χ²₂ is exponential with mean 2: P(X > x) = e^{−x/2}.
        for x in [0.1, 1.0, 20.0, 200.0] {
            assert_relative(chi_square_sf(x, 2.0).unwrap(), (-x / 2.0).exp(), 1e-12);
        }
        // statrs' erfc is good to about 1e-10 relative, far inside the 1e-6 promised.
        assert_relative(normal_sf(1.959_963_984_540_054).unwrap(), 0.025, 1e-9);
        assert_relative(
            normal_upper_quantile(1e-10).unwrap(),
            6.361_340_902_404_056,
            1e-9,
        );
    }
}
