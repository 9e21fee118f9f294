//! Ratio metrics: Σx/Σy over the contexts of a variation (revenue per session, clicks per page
//! view), where both x and y vary by context and are correlated.

use crate::{Comparison, MetricKind, Settings, StatsError, Summary, compare};

/// Sufficient statistics of per-context pairs (x, y) for a ratio metric: n, both means, both
/// sums of squared deviations and the sum of co-deviations Σ(x − x̄)(y − ȳ), kept about the
/// means for the same reason as [`Summary`].
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct RatioSummary {
    /// Number of contexts.
    pub n: u64,
    /// Mean of the numerators x.
    pub mean_numerator: f64,
    /// Mean of the denominators y.
    pub mean_denominator: f64,
    /// Σ(x − x̄)².
    pub squared_deviations_numerator: f64,
    /// Σ(y − ȳ)².
    pub squared_deviations_denominator: f64,
    /// Σ(x − x̄)(y − ȳ).
    pub co_deviations: f64,
}

impl RatioSummary {
    /// The summary of a list of per-context pairs (numerator, denominator).
    pub fn from_pairs(pairs: &[(f64, f64)]) -> RatioSummary {
        let mut summary = RatioSummary::default();
        for &(x, y) in pairs {
            summary.add(x, y);
        }
        summary
    }

    /// The summary from sums shifted by constants near the means: n, Kx, Ky, Σ(x − Kx),
    /// Σ(y − Ky), Σ(x − Kx)², Σ(y − Ky)² and Σ(x − Kx)(y − Ky) (see
    /// [`Summary::from_shifted_sums`]).
    #[allow(clippy::too_many_arguments)]
    pub fn from_shifted_sums(
        n: u64,
        shift_numerator: f64,
        shift_denominator: f64,
        sum_numerator: f64,
        sum_denominator: f64,
        sum_squares_numerator: f64,
        sum_squares_denominator: f64,
        sum_products: f64,
    ) -> RatioSummary {
        if n == 0 {
            return RatioSummary::default();
        }
        let count = n as f64;
        let (offset_x, offset_y) = (sum_numerator / count, sum_denominator / count);
        RatioSummary {
            n,
            mean_numerator: shift_numerator + offset_x,
            mean_denominator: shift_denominator + offset_y,
            squared_deviations_numerator: (sum_squares_numerator - sum_numerator * offset_x)
                .max(0.0),
            squared_deviations_denominator: (sum_squares_denominator - sum_denominator * offset_y)
                .max(0.0),
            co_deviations: sum_products - sum_numerator * offset_y,
        }
    }

    /// Adds one context's pair (Welford's update, with the co-moment).
    pub fn add(&mut self, x: f64, y: f64) {
        self.n += 1;
        let count = self.n as f64;
        let delta_x = x - self.mean_numerator;
        let delta_y = y - self.mean_denominator;
        self.mean_numerator += delta_x / count;
        self.mean_denominator += delta_y / count;
        self.squared_deviations_numerator += delta_x * (x - self.mean_numerator);
        self.squared_deviations_denominator += delta_y * (y - self.mean_denominator);
        self.co_deviations += delta_x * (y - self.mean_denominator);
    }

    /// Merges the summary of a disjoint set of contexts (Chan, Golub and LeVeque's update,
    /// with the co-moment's cross term δx·δy·nₐnᵦ/n).
    pub fn merge(&mut self, other: &RatioSummary) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (count_a, count_b) = (self.n as f64, other.n as f64);
        let total = count_a + count_b;
        let weight = count_a * count_b / total;
        let delta_x = other.mean_numerator - self.mean_numerator;
        let delta_y = other.mean_denominator - self.mean_denominator;
        self.mean_numerator += delta_x * count_b / total;
        self.mean_denominator += delta_y * count_b / total;
        self.squared_deviations_numerator +=
            other.squared_deviations_numerator + delta_x * delta_x * weight;
        self.squared_deviations_denominator +=
            other.squared_deviations_denominator + delta_y * delta_y * weight;
        self.co_deviations += other.co_deviations + delta_x * delta_y * weight;
        self.n += other.n;
    }

    /// The ratio R = x̄/ȳ (= Σx/Σy); 0 when there is no denominator.
    pub fn ratio(&self) -> f64 {
        if self.mean_denominator == 0.0 {
            0.0
        } else {
            self.mean_numerator / self.mean_denominator
        }
    }

    /// The summary of the linearised values zᵢ = (xᵢ − R·yᵢ)/ȳ shifted to mean R: by the delta
    /// method the ratio has variance Var(z)/n, with
    /// Var(z) = (s²_x − 2R·s_xy + R²·s²_y)/ȳ². Comparing these summaries with Welch's test is
    /// comparing the ratios.
    pub fn linearized(&self, variation: &'static str) -> Result<Summary, StatsError> {
        if self.n < 2 {
            return Err(StatsError::TooFewContexts {
                variation,
                n: self.n,
            });
        }
        let field = |name: &'static str| match (variation, name) {
            ("control", "denominator") => "control.mean_denominator",
            ("control", _) => "control.squared_deviations",
            (_, "denominator") => "treatment.mean_denominator",
            _ => "treatment.squared_deviations",
        };
        let values = [
            self.mean_numerator,
            self.mean_denominator,
            self.squared_deviations_numerator,
            self.squared_deviations_denominator,
            self.co_deviations,
        ];
        if values.iter().any(|v| !v.is_finite())
            || self.squared_deviations_numerator < 0.0
            || self.squared_deviations_denominator < 0.0
        {
            return Err(StatsError::InvalidSummary {
                field: field("moments"),
                reason: "means and co-moments must be finite, squared deviations ≥ 0".into(),
            });
        }
        if self.mean_denominator <= 0.0 {
            return Err(StatsError::InvalidSummary {
                field: field("denominator"),
                reason: format!(
                    "no ratio without a positive denominator (mean {})",
                    self.mean_denominator
                ),
            });
        }
        // Cauchy–Schwarz bounds the co-moment; a little slack absorbs rounding.
        let bound =
            (self.squared_deviations_numerator * self.squared_deviations_denominator).sqrt();
        if self.co_deviations.abs() > bound * (1.0 + 1e-9) + 1e-300 {
            return Err(StatsError::InvalidSummary {
                field: field("moments"),
                reason: format!(
                    "the co-deviations {} exceed √(Σ(x − x̄)²·Σ(y − ȳ)²) = {bound}, which no pairs \
                     can produce",
                    self.co_deviations
                ),
            });
        }
        let ratio = self.ratio();
        let denominator = self.mean_denominator;
        let linearized = (self.squared_deviations_numerator - 2.0 * ratio * self.co_deviations
            + ratio * ratio * self.squared_deviations_denominator)
            / (denominator * denominator);
        Ok(Summary {
            n: self.n,
            mean: ratio,
            squared_deviations: linearized.max(0.0),
        })
    }
}

/// Compares the ratio Σx/Σy of `treatment` with control's: the delta method turns each arm's
/// pairs into linearised values with the ratio as mean and Var(z) as variance
/// ([`RatioSummary::linearized`]); those are compared as a mean metric (Welch's test and
/// interval, Fieller's relative interval, the mSPRT), so every field of the [`Comparison`]
/// reads as for a mean, about the ratios.
pub fn compare_ratio(
    control: &RatioSummary,
    treatment: &RatioSummary,
    settings: &Settings,
) -> Result<Comparison, StatsError> {
    compare(
        MetricKind::Mean,
        &control.linearized("control")?,
        &treatment.linearized("treatment")?,
        settings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_equals_adding_pairs_one_by_one() {
        let pairs: Vec<(f64, f64)> = (0..200)
            .map(|i| (f64::from(i % 7) * 3.5, f64::from(1 + i % 5)))
            .collect();
        let whole = RatioSummary::from_pairs(&pairs);
        let mut merged = RatioSummary::default();
        for chunk in pairs.chunks(33) {
            merged.merge(&RatioSummary::from_pairs(chunk));
        }
        assert_eq!(merged.n, whole.n);
        for (a, b) in [
            (merged.co_deviations, whole.co_deviations),
            (
                merged.squared_deviations_denominator,
                whole.squared_deviations_denominator,
            ),
            (merged.mean_numerator, whole.mean_numerator),
        ] {
            assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} {b}");
        }
        let sum_x: f64 = pairs.iter().map(|p| p.0).sum();
        let sum_y: f64 = pairs.iter().map(|p| p.1).sum();
        assert!((whole.ratio() - sum_x / sum_y).abs() < 1e-12);
    }
}
