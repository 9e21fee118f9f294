//! The one error type of the statistics engine.

use std::fmt;

/// Why a statistic could not be computed. Every message names the offending input.
#[derive(Clone, Debug, PartialEq)]
pub enum StatsError {
    /// A variation has fewer than two contexts, so its variance is undefined.
    TooFewContexts {
        /// `"control"` or `"treatment"`.
        variation: &'static str,
        /// The number of contexts it has.
        n: u64,
    },
    /// The standard error of the difference is zero (every context has the same value), so no
    /// test statistic exists.
    ZeroVariance,
    /// A number outside its allowed range (or not finite).
    InvalidParameter {
        /// The field, e.g. `"settings.alpha"` or `"design.power"`.
        field: &'static str,
        /// The value given.
        value: f64,
        /// What was expected, e.g. `"a number in (0, 1)"`.
        expected: &'static str,
    },
    /// Sufficient statistics that no set of values of the metric's kind could produce (a
    /// non-finite mean, negative squared deviations, a rate outside [0, 1], a fractional number
    /// of conversions or events, ...).
    InvalidSummary {
        /// The field, e.g. `"treatment.mean"`.
        field: &'static str,
        /// What is wrong with it, with the values involved.
        reason: String,
    },
    /// Input lists of the wrong shape (lengths that differ, too few groups, no observations).
    InvalidInput {
        /// The argument, e.g. `"weights"`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The required sample size does not fit in a `u64` (the effect is vanishingly small).
    SampleSizeTooLarge,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewContexts { variation, n } => write!(
                f,
                "{variation}.n: at least 2 contexts are needed, got {n}"
            ),
            Self::ZeroVariance => f.write_str(
                "variance: every context has the same value in both variations (or values differ \
                 by less than about 1e-154, below what squares in double precision hold), so there \
                 is no standard error",
            ),
            Self::InvalidParameter {
                field,
                value,
                expected,
            } => write!(f, "{field}: expected {expected}, got {value}"),
            Self::InvalidSummary { field, reason } => write!(f, "{field}: {reason}"),
            Self::InvalidInput { field, reason } => write!(f, "{field}: {reason}"),
            Self::SampleSizeTooLarge => f.write_str(
                "design.minimum_detectable_effect: the effect is so small that the required sample size overflows",
            ),
        }
    }
}

impl std::error::Error for StatsError {}

/// Checks that `value` is finite and strictly inside `(0, 1)`.
pub(crate) fn check_unit_open(field: &'static str, value: f64) -> Result<f64, StatsError> {
    if value.is_finite() && value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(StatsError::InvalidParameter {
            field,
            value,
            expected: "a number strictly between 0 and 1",
        })
    }
}

/// Checks that `value` is finite and strictly positive.
pub(crate) fn check_positive(field: &'static str, value: f64) -> Result<f64, StatsError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(StatsError::InvalidParameter {
            field,
            value,
            expected: "a finite number greater than 0",
        })
    }
}
