//! Two values per context: the numerator and denominator of a ratio metric (revenue per
//! session: Σx/Σy), or a metric and its pre-exposure covariate (CUPED).

use crate::{Comparison, MetricKind, Settings, StatsError, Summary, compare};

/// Sufficient statistics of per-context pairs (x, y): n, both means, both sums of squared
/// deviations and the sum of co-deviations Σ(x − x̄)(y − ȳ), kept about the means for the same
/// reason as [`Summary`]. For a ratio metric x is the numerator and y the denominator; for
/// CUPED x is the metric and y its pre-exposure covariate.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct PairSummary {
    /// Number of contexts.
    pub n: u64,
    /// Mean of the x.
    pub mean_x: f64,
    /// Mean of the y.
    pub mean_y: f64,
    /// Σ(x − x̄)².
    pub squared_deviations_x: f64,
    /// Σ(y − ȳ)².
    pub squared_deviations_y: f64,
    /// Σ(x − x̄)(y − ȳ).
    pub co_deviations: f64,
}

impl PairSummary {
    /// The summary of a list of per-context pairs (x, y).
    pub fn from_pairs(pairs: &[(f64, f64)]) -> PairSummary {
        let mut summary = PairSummary::default();
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
        shift_x: f64,
        shift_y: f64,
        sum_x: f64,
        sum_y: f64,
        sum_squares_x: f64,
        sum_squares_y: f64,
        sum_products: f64,
    ) -> PairSummary {
        if n == 0 {
            return PairSummary::default();
        }
        let count = n as f64;
        let (offset_x, offset_y) = (sum_x / count, sum_y / count);
        PairSummary {
            n,
            mean_x: shift_x + offset_x,
            mean_y: shift_y + offset_y,
            squared_deviations_x: (sum_squares_x - sum_x * offset_x).max(0.0),
            squared_deviations_y: (sum_squares_y - sum_y * offset_y).max(0.0),
            co_deviations: sum_products - sum_x * offset_y,
        }
    }

    /// Adds one context's pair (Welford's update, with the co-moment).
    pub fn add(&mut self, x: f64, y: f64) {
        self.n += 1;
        let count = self.n as f64;
        let delta_x = x - self.mean_x;
        let delta_y = y - self.mean_y;
        self.mean_x += delta_x / count;
        self.mean_y += delta_y / count;
        self.squared_deviations_x += delta_x * (x - self.mean_x);
        self.squared_deviations_y += delta_y * (y - self.mean_y);
        self.co_deviations += delta_x * (y - self.mean_y);
    }

    /// Merges the summary of a disjoint set of contexts (Chan, Golub and LeVeque's update,
    /// with the co-moment's cross term δx·δy·nₐnᵦ/n).
    pub fn merge(&mut self, other: &PairSummary) {
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
        let delta_x = other.mean_x - self.mean_x;
        let delta_y = other.mean_y - self.mean_y;
        self.mean_x += delta_x * count_b / total;
        self.mean_y += delta_y * count_b / total;
        self.squared_deviations_x += other.squared_deviations_x + delta_x * delta_x * weight;
        self.squared_deviations_y += other.squared_deviations_y + delta_y * delta_y * weight;
        self.co_deviations += other.co_deviations + delta_x * delta_y * weight;
        self.n += other.n;
    }

    /// The ratio R = x̄/ȳ (= Σx/Σy); 0 when there is no denominator.
    pub fn ratio(&self) -> f64 {
        if self.mean_y == 0.0 {
            0.0
        } else {
            self.mean_x / self.mean_y
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
            ("control", "denominator") => "control.mean_y",
            ("control", _) => "control.co_deviations",
            (_, "denominator") => "treatment.mean_y",
            _ => "treatment.co_deviations",
        };
        self.check_moments(field("moments"))?;
        if self.mean_y <= 0.0 {
            return Err(StatsError::InvalidSummary {
                field: field("denominator"),
                reason: format!(
                    "no ratio without a positive denominator (mean {})",
                    self.mean_y
                ),
            });
        }
        let ratio = self.ratio();
        let denominator = self.mean_y;
        let linearized = (self.squared_deviations_x - 2.0 * ratio * self.co_deviations
            + ratio * ratio * self.squared_deviations_y)
            / (denominator * denominator);
        Ok(Summary {
            n: self.n,
            mean: ratio,
            squared_deviations: linearized.max(0.0),
        })
    }
}

impl PairSummary {
    /// Finite moments, nonnegative squared deviations, and co-deviations within the
    /// Cauchy–Schwarz bound √(Σ(x − x̄)²·Σ(y − ȳ)²) (with a little slack for rounding).
    fn check_moments(&self, field: &'static str) -> Result<(), StatsError> {
        let values = [
            self.mean_x,
            self.mean_y,
            self.squared_deviations_x,
            self.squared_deviations_y,
            self.co_deviations,
        ];
        if values.iter().any(|v| !v.is_finite())
            || self.squared_deviations_x < 0.0
            || self.squared_deviations_y < 0.0
        {
            return Err(StatsError::InvalidSummary {
                field,
                reason: "means and co-moments must be finite, squared deviations ≥ 0".into(),
            });
        }
        let bound = (self.squared_deviations_x * self.squared_deviations_y).sqrt();
        if self.co_deviations.abs() > bound * (1.0 + 1e-9) + 1e-300 {
            return Err(StatsError::InvalidSummary {
                field,
                reason: format!(
                    "the co-deviations {} exceed √(Σ(x − x̄)²·Σ(y − ȳ)²) = {bound}, which no pairs \
                     can produce",
                    self.co_deviations
                ),
            });
        }
        Ok(())
    }
}

/// Compares the ratio Σx/Σy of `treatment` with control's: the delta method turns each arm's
/// pairs into linearised values with the ratio as mean and Var(z) as variance
/// ([`PairSummary::linearized`]); those are compared as a mean metric (Welch's test and
/// interval, Fieller's relative interval, the mSPRT), so every field of the [`Comparison`]
/// reads as for a mean, about the ratios.
pub fn compare_ratio(
    control: &PairSummary,
    treatment: &PairSummary,
    settings: &Settings,
) -> Result<Comparison, StatsError> {
    compare(
        MetricKind::Mean,
        &control.linearized("control")?,
        &treatment.linearized("treatment")?,
        settings,
    )
}

/// The CUPED adjustment of a metric x by its pre-exposure covariate y (Deng, Xu, Kohavi and
/// Walker, "Improving the sensitivity of online controlled experiments by utilizing
/// pre-experiment data", WSDM 2013): with θ = Σ co-deviations / Σ squared deviations of y,
/// pooled over both arms, each context's value becomes xᵢ − θ·(yᵢ − ȳ), ȳ the pooled mean.
/// The adjusted means keep their expectation (randomisation makes ȳ the same in both arms on
/// average) and each arm's variance shrinks by the squared correlation. Returns the adjusted
/// summaries of control and treatment and the share of variance removed,
/// 1 − Var(adjusted)/Var(x) over both arms. With no variance in the covariate nothing changes.
pub fn cuped(
    control: &PairSummary,
    treatment: &PairSummary,
) -> Result<(Summary, Summary, f64), StatsError> {
    control.check_moments("control.co_deviations")?;
    treatment.check_moments("treatment.co_deviations")?;
    for (arm, name) in [(control, "control"), (treatment, "treatment")] {
        if arm.n < 2 {
            return Err(StatsError::TooFewContexts {
                variation: name,
                n: arm.n,
            });
        }
    }
    let covariate_spread = control.squared_deviations_y + treatment.squared_deviations_y;
    let theta = if covariate_spread > 0.0 {
        (control.co_deviations + treatment.co_deviations) / covariate_spread
    } else {
        0.0
    };
    let (n_c, n_t) = (control.n as f64, treatment.n as f64);
    let pooled_covariate = (n_c * control.mean_y + n_t * treatment.mean_y) / (n_c + n_t);
    let adjust = |arm: &PairSummary| Summary {
        n: arm.n,
        mean: arm.mean_x - theta * (arm.mean_y - pooled_covariate),
        squared_deviations: (arm.squared_deviations_x - 2.0 * theta * arm.co_deviations
            + theta * theta * arm.squared_deviations_y)
            .max(0.0),
    };
    let (adjusted_c, adjusted_t) = (adjust(control), adjust(treatment));
    let before = control.squared_deviations_x + treatment.squared_deviations_x;
    let after = adjusted_c.squared_deviations + adjusted_t.squared_deviations;
    let reduction = if before > 0.0 {
        (1.0 - after / before).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Ok((adjusted_c, adjusted_t, reduction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_equals_adding_pairs_one_by_one() {
        let pairs: Vec<(f64, f64)> = (0..200)
            .map(|i| (f64::from(i % 7) * 3.5, f64::from(1 + i % 5)))
            .collect();
        let whole = PairSummary::from_pairs(&pairs);
        let mut merged = PairSummary::default();
        for chunk in pairs.chunks(33) {
            merged.merge(&PairSummary::from_pairs(chunk));
        }
        assert_eq!(merged.n, whole.n);
        for (a, b) in [
            (merged.co_deviations, whole.co_deviations),
            (merged.squared_deviations_y, whole.squared_deviations_y),
            (merged.mean_x, whole.mean_x),
        ] {
            assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} {b}");
        }
        let sum_x: f64 = pairs.iter().map(|p| p.0).sum();
        let sum_y: f64 = pairs.iter().map(|p| p.1).sum();
        assert!((whole.ratio() - sum_x / sum_y).abs() < 1e-12);
    }
}
