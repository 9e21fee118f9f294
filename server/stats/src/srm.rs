//! Sample-ratio mismatch: are contexts split between variations as configured?

use crate::{StatsError, dist};

/// Result of [`sample_ratio_mismatch`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleRatio {
    /// Pearson's statistic Σ (Oᵢ − Eᵢ)² / Eᵢ.
    pub chi_square: f64,
    /// Number of variations − 1.
    pub degrees_of_freedom: u32,
    /// P(χ²_df > chi_square).
    pub p_value: f64,
    /// `p_value < SRM_ALPHA`.
    pub mismatch: bool,
}

/// A sample-ratio mismatch is reported when the chi-square p-value is below this level. It is
/// strict on purpose: the check runs on every read of every experiment, and a mismatch means the
/// results should not be trusted at all.
pub const SRM_ALPHA: f64 = 0.001;

/// Chi-square goodness of fit of the observed contexts per variation against the configured
/// weights (any positive scale: 50/50, 0.5/0.5 and 1/1 are the same). Eᵢ = N · wᵢ / Σw.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Result<SampleRatio, StatsError> {
    if observed.len() != weights.len() {
        return Err(StatsError::InvalidInput {
            field: "weights",
            reason: format!(
                "{} weights for {} observed counts; there must be one weight per variation",
                weights.len(),
                observed.len()
            ),
        });
    }
    if observed.len() < 2 {
        return Err(StatsError::InvalidInput {
            field: "observed",
            reason: "at least 2 variations are needed".into(),
        });
    }
    if observed.len() > u32::MAX as usize {
        return Err(StatsError::InvalidInput {
            field: "observed",
            reason: "too many variations".into(),
        });
    }
    for &weight in weights {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(StatsError::InvalidParameter {
                field: "weights",
                value: weight,
                expected: "finite weights greater than 0",
            });
        }
    }
    let total_weight: f64 = weights.iter().sum();
    if !total_weight.is_finite() {
        return Err(StatsError::InvalidInput {
            field: "weights",
            reason: "the weights' sum overflows".into(),
        });
    }
    let total: f64 = observed.iter().map(|&count| count as f64).sum();
    if total == 0.0 {
        return Err(StatsError::InvalidInput {
            field: "observed",
            reason: "no contexts observed".into(),
        });
    }
    let chi_square: f64 = observed
        .iter()
        .zip(weights)
        .map(|(&count, &weight)| {
            let expected = total * (weight / total_weight);
            let deviation = count as f64 - expected;
            deviation * deviation / expected
        })
        .sum();
    let degrees_of_freedom = (observed.len() - 1) as u32;
    let p_value = dist::chi_square_sf(chi_square, f64::from(degrees_of_freedom))?;
    if !(chi_square.is_finite() && p_value.is_finite()) {
        return Err(StatsError::InvalidInput {
            field: "weights",
            reason: "a weight is so small relative to the others that the statistic overflows"
                .into(),
        });
    }
    Ok(SampleRatio {
        chi_square,
        degrees_of_freedom,
        p_value,
        mismatch: p_value < SRM_ALPHA,
    })
}
