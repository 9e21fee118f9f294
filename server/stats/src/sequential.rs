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
