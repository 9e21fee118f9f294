//! Score intervals for two independent proportions (Miettinen and Nurminen, "Comparative
//! analysis of two rates", Statistics in Medicine 4, 1985), without their n/(n − 1) factor.
//!
//! Each interval is the set of effects the score test does not reject at level α: for a
//! difference Δ, z(Δ) = (p̂_t − p̂_c − Δ)/√(p̃_t(1 − p̃_t)/n_t + p̃_c(1 − p̃_c)/n_c) with p̃ the
//! maximum-likelihood rates under p_t − p_c = Δ; for a ratio R, z(R) = (p̂_t − R·p̂_c)/
//! √(p̃_t(1 − p̃_t)/n_t + R²·p̃_c(1 − p̃_c)/n_c) under p_t = R·p_c. At Δ = 0 (R = 1) the
//! restricted rates are the pooled rate and z is the pooled two-proportion z statistic, so both
//! intervals exclude "no effect" exactly when the test rejects. They keep their width at 0 % and
//! 100 % and their coverage at small n, where Wald's interval collapses or under-covers.
//!
//! The restricted rates of a ratio are the root of a quadratic. Those of a difference solve a
//! cubic whose closed form (an arccos) fails to round-off at the edges, so they are found by
//! bisection on the derivative of the concave restricted likelihood instead. The bounds are
//! found by bisection on z, which is monotone in the effect.

use crate::Interval;

/// Conversions `converted` out of `n` contexts in one arm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arm {
    pub converted: f64,
    pub n: f64,
}

impl Arm {
    fn rate(&self) -> f64 {
        self.converted / self.n
    }

    /// x/p − (n − x)/(1 − p): the derivative of this arm's log-likelihood in its rate, with a
    /// count of zero contributing nothing (even at the boundary).
    fn score(&self, rate: f64) -> f64 {
        let successes = if self.converted > 0.0 {
            self.converted / rate
        } else {
            0.0
        };
        let failures = if self.n > self.converted {
            (self.n - self.converted) / (1.0 - rate)
        } else {
            0.0
        };
        successes - failures
    }
}

/// Bisection iterations: each halves the bracket, so 200 reach adjacent doubles from any
/// bracket within [-1e300, 1e300].
const BISECTION_STEPS: usize = 200;

/// The root of a decreasing function on (low, high), evaluated only inside the bracket; the
/// nearer end when the function keeps one sign.
fn decreasing_root(mut low: f64, mut high: f64, f: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..BISECTION_STEPS {
        let middle = 0.5 * (low + high);
        if middle <= low || middle >= high {
            break;
        }
        if f(middle) > 0.0 {
            low = middle;
        } else {
            high = middle;
        }
    }
    0.5 * (low + high)
}

/// The control rate maximising the likelihood under p_t = treatment_rate(p_c), on the range
/// of p_c where both rates are in [0, 1]. `slope` is d p_t / d p_c.
fn restricted_control_rate(
    control: Arm,
    treatment: Arm,
    range: (f64, f64),
    treatment_rate: impl Fn(f64) -> f64,
    slope: f64,
) -> f64 {
    decreasing_root(range.0, range.1, |rate_c| {
        control.score(rate_c) + slope * treatment.score(treatment_rate(rate_c))
    })
}

fn bernoulli_variance(rate: f64) -> f64 {
    (rate * (1.0 - rate)).max(0.0)
}

/// numerator/√variance; with no variance, 0 for no difference and ±∞ otherwise.
fn standardise(numerator: f64, variance: f64) -> f64 {
    if variance > 0.0 {
        numerator / variance.sqrt()
    } else if numerator == 0.0 {
        0.0
    } else {
        numerator.signum() * f64::INFINITY
    }
}

/// The score statistic of the difference at Δ (decreasing in Δ).
fn difference_score(control: Arm, treatment: Arm, difference: f64) -> f64 {
    let range = ((-difference).max(0.0), (1.0 - difference).min(1.0));
    let rate_c =
        restricted_control_rate(control, treatment, range, |rate_c| rate_c + difference, 1.0);
    let rate_t = rate_c + difference;
    let variance =
        bernoulli_variance(rate_t) / treatment.n + bernoulli_variance(rate_c) / control.n;
    let numerator = treatment.rate() - control.rate() - difference;
    standardise(numerator, variance)
}

/// The score statistic of the ratio at R = exp(`log_ratio`) (decreasing in R).
///
/// Under p_t = R·p_c the restricted control rate is the smaller root of
/// n·R·p² − (n_t·R + x_t + n_c + x_c·R)·p + x = 0 (n, x totals over both arms), taken in
/// the form 2x / (b + √(b² − 4nRx)) with b = n_t·R + x_t + n_c + x_c·R, which cancels nothing.
fn ratio_score(control: Arm, treatment: Arm, log_ratio: f64) -> f64 {
    let ratio = log_ratio.exp();
    let total_n = control.n + treatment.n;
    let total_converted = control.converted + treatment.converted;
    let b = treatment.n * ratio + treatment.converted + control.n + control.converted * ratio;
    let discriminant = (b * b - 4.0 * total_n * ratio * total_converted).max(0.0);
    let rate_c = (2.0 * total_converted / (b + discriminant.sqrt())).clamp(0.0, 1.0);
    let rate_t = (ratio * rate_c).clamp(0.0, 1.0);
    let variance = bernoulli_variance(rate_t) / treatment.n
        + ratio * ratio * bernoulli_variance(rate_c) / control.n;
    standardise(treatment.rate() - ratio * control.rate(), variance)
}

/// The score interval of p_t − p_c at the two-sided critical value `critical`.
pub(crate) fn difference_interval(control: Arm, treatment: Arm, critical: f64) -> Interval {
    let estimate = treatment.rate() - control.rate();
    let score = |difference: f64| difference_score(control, treatment, difference);
    Interval {
        lower: decreasing_root(-1.0, estimate, |d| score(d) - critical),
        upper: decreasing_root(estimate, 1.0, |d| score(d) + critical),
    }
}

/// The score interval of p_t/p_c − 1 at the two-sided critical value `critical`. The control
/// must have at least one conversion (otherwise the ratio does not exist).
pub(crate) fn relative_interval(control: Arm, treatment: Arm, critical: f64) -> Interval {
    // Bisection in ln R over ratios from e^-300 to e^300, whose squares a double still holds.
    const LOG_RANGE: f64 = 300.0;
    let estimate = treatment.rate() / control.rate();
    let score = |log_ratio: f64| ratio_score(control, treatment, log_ratio);
    let lower = if estimate > 0.0 {
        decreasing_root(-LOG_RANGE, estimate.ln(), |r| score(r) - critical).exp()
    } else {
        0.0
    };
    let upper_start = if estimate > 0.0 {
        estimate.ln()
    } else {
        -LOG_RANGE
    };
    let upper = decreasing_root(upper_start, LOG_RANGE, |r| score(r) + critical).exp();
    Interval {
        lower: lower - 1.0,
        upper: upper - 1.0,
    }
}
