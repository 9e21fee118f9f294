//! Quantile metrics: the p-quantile of the per-context values (p50, p90 latency), compared
//! between variations from a handful of order statistics.

use statrs::function::factorial::ln_binomial;

use crate::compare::{Comparison, MetricKind, Settings, compare};
use crate::error::check_unit_open;
use crate::{StatsError, Summary, dist};

/// The 1-based ranks, among a variation's n sorted values, of the order statistics a quantile
/// comparison reads: the sample quantile and the two ends of its distribution-free interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantileRanks {
    /// Rank of the sample p-quantile, ⌈n·p⌉ (the inverse of the empirical distribution
    /// function: numpy's `inverted_cdf`, SQL's `percentile_disc`).
    pub estimate: u64,
    /// Rank of the interval's lower end.
    pub lower: u64,
    /// Rank of the interval's upper end.
    pub upper: u64,
}

/// The ranks of [`QuantileRanks`] for the `level`-quantile of `n` values and an interval at
/// confidence 1 − `alpha`.
///
/// The number B of values below the true p-quantile is Binomial(n, p) whatever the
/// distribution (if continuous), so [x₍ₗ₎, x₍ᵤ₎] covers it with probability
/// P(l ≤ B < u). With F the binomial distribution function, l is the smallest k with
/// F(k) ≥ α/2 and u − 1 the smallest k with 1 − F(k) ≤ α/2, which leaves at most α/2 in each
/// tail: scipy's `quantile_test(...).confidence_interval()`, whose coverage is at least 1 − α.
/// Errors when n is too small for both ends to exist (l = 0 or u > n); the message says how
/// many contexts are needed.
pub fn quantile_ranks(n: u64, level: f64, alpha: f64) -> Result<QuantileRanks, StatsError> {
    check_unit_open("quantile", level)?;
    check_unit_open("alpha", alpha)?;
    match ranks(n, level, alpha / 2.0)? {
        Some(ranks) => Ok(ranks),
        None => Err(StatsError::InvalidInput {
            field: "n",
            reason: format!(
                "{n} contexts are too few for a {:.0} % interval of the {level}-quantile: its \
                 ends would fall outside the values (at least {} are needed)",
                (1.0 - alpha) * 100.0,
                fewest_contexts(level, alpha / 2.0)?
            ),
        }),
    }
}

/// The ranks, or `None` when an end of the interval falls outside the n values.
fn ranks(n: u64, level: f64, tail: f64) -> Result<Option<QuantileRanks>, StatsError> {
    if n == 0 {
        return Ok(None);
    }
    let (lower_quantile, upper_quantile) = binomial_tail_quantiles(n, level, tail)?;
    // l = the smallest k with F(k) ≥ α/2, a rank as it stands; u = one past the smallest k
    // with 1 − F(k) ≤ α/2.
    let lower = lower_quantile;
    let upper = upper_quantile + 1;
    if lower == 0 || upper > n {
        return Ok(None);
    }
    let estimate = ((n as f64 * level).ceil() as u64).clamp(1, n);
    Ok(Some(QuantileRanks {
        estimate,
        lower,
        upper,
    }))
}

/// The fewest values for which both ends of the interval exist.
fn fewest_contexts(level: f64, tail: f64) -> Result<u64, StatsError> {
    let mut high = 2_u64;
    while ranks(high, level, tail)?.is_none() {
        if high > 1 << 60 {
            return Ok(high);
        }
        high *= 2;
    }
    // Existence is monotone in n: bisect between the last failure and the first success.
    let mut low = high / 2;
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if ranks(middle, level, tail)?.is_some() {
            high = middle;
        } else {
            low = middle;
        }
    }
    Ok(high)
}

/// Beyond this binomial standard deviation (n·p·(1 − p) above 10¹⁰) the ranks come from the
/// normal approximation with a continuity correction, whose error is a rank or two among
/// hundreds of thousands; below it, from the exact distribution.
const NORMAL_APPROXIMATION_SPREAD: f64 = 1e5;

/// For B ~ Binomial(n, p): the smallest k with P(B ≤ k) ≥ `tail`, and the smallest k with
/// P(B > k) ≤ `tail`. Each probability mass is exp(ln C(n, k) + k ln p + (n − k) ln(1 − p)),
/// computed directly (no recurrence to accumulate error); both tails are summed from their own
/// end so that neither is a difference of numbers near 1. Masses further than z + 8 standard
/// deviations from the mean (z the tail's normal quantile) are below the tail by many orders
/// and are skipped.
fn binomial_tail_quantiles(n: u64, p: f64, tail: f64) -> Result<(u64, u64), StatsError> {
    let mean = n as f64 * p;
    let spread = (mean * (1.0 - p)).sqrt();
    let z = dist::normal_upper_quantile(tail)?;
    if spread > NORMAL_APPROXIMATION_SPREAD {
        let rank = |x: f64| x.ceil().clamp(0.0, n as f64) as u64;
        return Ok((rank(mean - 0.5 - z * spread), rank(mean - 0.5 + z * spread)));
    }
    let reach = (z.max(4.0) + 8.0) * spread + 10.0;
    let first = (mean - reach).floor().max(0.0) as u64;
    let last = ((mean + reach).ceil() as u64).min(n);
    let (ln_p, ln_q) = (p.ln(), (-p).ln_1p());
    let mass = |k: u64| (ln_binomial(n, k) + k as f64 * ln_p + (n - k) as f64 * ln_q).exp();

    let mut lower = last;
    let mut below = 0.0;
    for k in first..=last {
        below += mass(k);
        if below >= tail {
            lower = k;
            break;
        }
    }
    // P(B > k) for k = last is what lies beyond the window, taken as 0; if no k in the window
    // leaves more than the tail above it, the smallest is `first`.
    let mut upper = first;
    let mut above = 0.0;
    let mut k = last;
    while k > first {
        // Here `above` becomes P(B > k − 1); step down while it stays within the tail.
        above += mass(k);
        if above > tail {
            upper = k;
            break;
        }
        k -= 1;
    }
    Ok((lower, upper))
}

/// What a quantile comparison needs of one variation: its number of contexts, the sample
/// quantile and the order statistics at the interval's ranks, for one quantile level and one
/// interval level (see [`quantile_ranks`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileSummary {
    /// Number of contexts with a value.
    pub n: u64,
    /// The quantile level p, in (0, 1): 0.5 for the median, 0.9 for p90.
    pub level: f64,
    /// The α of the interval whose ends are `lower` and `upper`.
    pub alpha: f64,
    /// The sample p-quantile, the value of rank [`QuantileRanks::estimate`].
    pub estimate: f64,
    /// The value of rank [`QuantileRanks::lower`].
    pub lower: f64,
    /// The value of rank [`QuantileRanks::upper`].
    pub upper: f64,
}

impl QuantileSummary {
    /// The summary of a list of per-context values (sorted here; NaN is refused).
    pub fn from_values(values: &[f64], level: f64, alpha: f64) -> Result<Self, StatsError> {
        if values.iter().any(|v| v.is_nan()) {
            return Err(StatsError::InvalidInput {
                field: "values",
                reason: "a value is not a number".into(),
            });
        }
        let ranks = quantile_ranks(values.len() as u64, level, alpha)?;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |rank: u64| sorted[(rank - 1) as usize];
        Ok(QuantileSummary {
            n: values.len() as u64,
            level,
            alpha,
            estimate: at(ranks.estimate),
            lower: at(ranks.lower),
            upper: at(ranks.upper),
        })
    }

    /// The standard error of the sample quantile read from its interval: the interval's
    /// width over 2·z_{1−α/2}. Asymptotically the interval is the quantile ± z·√(p(1 − p)/n)/f
    /// (f the density there), so this estimates √(p(1 − p)/n)/f without estimating the density
    /// (McKean and Schrader, 1984, for the median; Price and Bonett, 2002, for differences).
    pub fn standard_error(&self) -> Result<f64, StatsError> {
        let z = dist::normal_upper_quantile(self.alpha / 2.0)?;
        Ok((self.upper - self.lower) / (2.0 * z))
    }

    /// The summary of a mean with the quantile's estimate and standard error: n values whose
    /// mean is the sample quantile and whose variance is n·SE². Comparing two of these as means
    /// is comparing the quantiles by their normal approximation (the same role as
    /// [`crate::PairSummary::linearized`] for ratios).
    pub fn as_mean(&self, variation: &'static str) -> Result<Summary, StatsError> {
        let field = match variation {
            "control" => "control.quantile",
            _ => "treatment.quantile",
        };
        check_unit_open(field, self.level)?;
        if self.n < 2 {
            return Err(StatsError::TooFewContexts {
                variation,
                n: self.n,
            });
        }
        // The ranks must exist for this n (the same check as when they were chosen).
        quantile_ranks(self.n, self.level, self.alpha)?;
        let ordered = self.lower <= self.estimate && self.estimate <= self.upper;
        if ![self.estimate, self.lower, self.upper]
            .iter()
            .all(|v| v.is_finite())
            || !ordered
        {
            return Err(StatsError::InvalidSummary {
                field,
                reason: format!(
                    "the order statistics must be finite with lower ≤ estimate ≤ upper, got {} ≤ \
                     {} ≤ {}",
                    self.lower, self.estimate, self.upper
                ),
            });
        }
        let standard_error = self.standard_error()?;
        let n = self.n as f64;
        Ok(Summary {
            n: self.n,
            mean: self.estimate,
            // Variance n·SE², times n − 1: written as a product of standard errors so that
            // nothing squares a large value first.
            squared_deviations: (n - 1.0) * n * standard_error * standard_error,
        })
    }
}

/// Compares the p-quantiles of two variations: the difference of the sample quantiles, with a
/// standard error √(SE_c² + SE_t²) from each arm's order-statistic interval
/// ([`QuantileSummary::standard_error`]); the test, interval, relative lift (Fieller's), and
/// sequential test are those of a mean metric on [`QuantileSummary::as_mean`], so every field of
/// the [`Comparison`] reads as for a mean, about the quantiles. With n in the hundreds or more
/// Welch's t is the normal; the approximation needs values that are not mostly ties (with a
/// heap of equal values at the quantile both ends coincide and the error reads as 0).
pub fn compare_quantiles(
    control: &QuantileSummary,
    treatment: &QuantileSummary,
    settings: &Settings,
) -> Result<Comparison, StatsError> {
    if control.level != treatment.level {
        return Err(StatsError::InvalidInput {
            field: "treatment.quantile",
            reason: format!(
                "both variations must be summarised at the same quantile, got {} and {}",
                control.level, treatment.level
            ),
        });
    }
    compare(
        MetricKind::Mean,
        &control.as_mean("control")?,
        &treatment.as_mean("treatment")?,
        settings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P(B ≤ k) by summing every mass, for small n.
    fn cdf(n: u64, p: f64, k: u64) -> f64 {
        (0..=k)
            .map(|i| {
                (ln_binomial(n, i) + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln()).exp()
            })
            .sum()
    }

    #[test]
    fn ranks_leave_at_most_half_alpha_in_each_tail() {
        for n in [10_u64, 37, 100, 1_000] {
            for level in [0.1, 0.5, 0.9] {
                let Ok(ranks) = quantile_ranks(n, level, 0.05) else {
                    continue;
                };
                // Lower end above the quantile: B ≤ l − 1.
                assert!(cdf(n, level, ranks.lower - 1) < 0.025, "{n} {level}");
                assert!(cdf(n, level, ranks.lower) >= 0.025, "{n} {level}");
                // Upper end below the quantile: B ≥ u.
                assert!(1.0 - cdf(n, level, ranks.upper - 1) <= 0.025 + 1e-12);
                assert!(1.0 - cdf(n, level, ranks.upper - 2) > 0.025);
                assert!(ranks.lower <= ranks.estimate && ranks.estimate <= ranks.upper);
            }
        }
    }

    #[test]
    fn too_few_contexts_says_how_many() {
        let err = quantile_ranks(20, 0.9, 0.05).unwrap_err();
        let needed = fewest_contexts(0.9, 0.025).unwrap();
        assert!(quantile_ranks(needed, 0.9, 0.05).is_ok());
        assert!(quantile_ranks(needed - 1, 0.9, 0.05).is_err());
        assert!(
            err.to_string().contains(&format!("at least {needed}")),
            "{err}"
        );
    }

    #[test]
    fn the_normal_approximation_takes_over_where_the_exact_ranks_agree_with_it() {
        // Just below the switch (spread 1e5 at p = 0.5: n = 4·10¹⁰) exact and approximate
        // ranks agree within a rank; far above it, any n is answered at once.
        let n = 39_000_000_000_u64;
        let exact = binomial_tail_quantiles(n, 0.5, 0.025).unwrap();
        let z = 1.959_963_984_540_054;
        let spread = (n as f64 * 0.25).sqrt();
        let approximate = (
            (n as f64 * 0.5 - 0.5 - z * spread).ceil() as u64,
            (n as f64 * 0.5 - 0.5 + z * spread).ceil() as u64,
        );
        assert!(
            exact.0.abs_diff(approximate.0) <= 1,
            "{exact:?} {approximate:?}"
        );
        assert!(
            exact.1.abs_diff(approximate.1) <= 1,
            "{exact:?} {approximate:?}"
        );
        let ranks = quantile_ranks(u64::MAX, 0.999, 1e-9).unwrap();
        assert!(ranks.lower < ranks.estimate && ranks.estimate < ranks.upper);
        assert!(quantile_ranks(3, 0.999_999_999, 0.05).is_err());
    }

    #[test]
    fn large_n_ranks_straddle_the_normal_approximation() {
        let n = 2_000_000_u64;
        let ranks = quantile_ranks(n, 0.9, 0.05).unwrap();
        let half_width = 1.959_964 * (n as f64 * 0.9 * 0.1).sqrt();
        let centre = n as f64 * 0.9;
        assert!(
            (ranks.lower as f64 - (centre - half_width)).abs() < 3.0,
            "{ranks:?}"
        );
        assert!(
            (ranks.upper as f64 - (centre + half_width)).abs() < 3.0,
            "{ranks:?}"
        );
    }
}
