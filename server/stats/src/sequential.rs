//! The mixture sequential probability ratio test (mSPRT) with a normal mixture.

/// Always-valid p-value and confidence-sequence half-width at one look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sequential {
    pub p_value: f64,
    pub half_width: f64,
}

/// mSPRT for a lift estimate `lift` with variance `variance` (V) and a N(0, τ²) mixture with
/// τ² = `mixture_variance`:
///
/// Λ = √(V / (V + τ²)) · exp(τ² d² / (2 V (V + τ²))), p = min(1, 1/Λ),
/// and the confidence sequence {θ : Λ(θ) < 1/α} = d ± √(V (V + τ²)/τ² · (2 ln(1/α) + ln((V + τ²)/V))).
///
/// Both variances must be > 0 (the caller checks).
pub(crate) fn msprt(lift: f64, variance: f64, mixture_variance: f64, alpha: f64) -> Sequential {
    let ratio = mixture_variance / variance;
    // ln p = ½ ln(1 + τ²/V) − τ² d² / (2 V (V + τ²)), computed in logs so huge Λ cannot overflow.
    let log_p = 0.5 * ratio.ln_1p()
        - mixture_variance * lift * lift / (2.0 * variance * (variance + mixture_variance));
    let half_width = (variance * (variance + mixture_variance) / mixture_variance
        * (2.0 * (1.0 / alpha).ln() + ratio.ln_1p()))
    .sqrt();
    Sequential {
        p_value: log_p.min(0.0).exp(),
        half_width,
    }
}

/// The one-sided mSPRT for H₁: θ > 0, with the lift in units of its standard error
/// (`standardised` = d/SE, V = 1) and the mixture a half-normal over θ > 0 with τ²/V =
/// `mixture_ratio` = r. Integrating the likelihood ratio exp(θd − θ²/2) against the density
/// 2·φ(θ/τ)/τ on θ > 0 gives the two-sided Λ times 2Φ(d·√(r/(1 + r))):
///
/// Λ⁺(d) = √(1/(1 + r)) · exp(r·d²/(2(1 + r))) · 2Φ(d·√(r/(1 + r))).
///
/// Λ⁺ is a nonnegative martingale under θ = 0, so p = min(1, 1/Λ⁺) is always valid (Ville).
/// Returns that p-value and the margin m of the lower confidence bound d − m (in standard
/// errors): the smallest θ₀ with Λ⁺(d − θ₀) < 1/α, found by bisection because Λ⁺ increases
/// with its argument.
pub(crate) fn one_sided(
    standardised: f64,
    mixture_ratio: f64,
    alpha: f64,
) -> Result<(f64, f64), crate::StatsError> {
    let log_likelihood_ratio = |x: f64| -> Result<f64, crate::StatsError> {
        let shrink = (mixture_ratio / (1.0 + mixture_ratio)).sqrt();
        let tail = crate::dist::normal_cdf(x * shrink)?;
        Ok(-0.5 * mixture_ratio.ln_1p()
            + mixture_ratio * x * x / (2.0 * (1.0 + mixture_ratio))
            + (2.0 * tail).ln())
    };
    let log_p = -log_likelihood_ratio(standardised)?;
    let p_value = if log_p.is_nan() {
        1.0
    } else {
        log_p.min(0.0).exp()
    };
    // Λ⁺(0) = √(1/(1 + r)) < 1 < 1/α, so the root lies above 0; double until bracketed.
    let target = (1.0 / alpha).ln();
    let (mut low, mut high) = (0.0, 1.0);
    while log_likelihood_ratio(high)? < target {
        low = high;
        high *= 2.0;
        if !high.is_finite() {
            return Err(crate::StatsError::InvalidParameter {
                field: "settings.mixture_std_dev",
                value: mixture_ratio,
                expected: "a mixture wide enough for a bounded confidence sequence",
            });
        }
    }
    for _ in 0..200 {
        let middle = 0.5 * (low + high);
        if middle <= low || middle >= high {
            break;
        }
        if log_likelihood_ratio(middle)? < target {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok((p_value, high))
}
