//! Bayesian summaries of one comparison: the chance that the treatment is above control, the
//! expected loss of each choice, and a credible interval of the absolute lift.

use statrs::function::beta::ln_beta;

use crate::compare::validate_summary;
use crate::{Interval, MetricKind, StatsError, Summary, dist};

/// The posterior of the absolute lift θ = treatment − control, summarised for a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bayesian {
    /// P(θ > 0): the chance that the treatment's true mean is above control's.
    pub chance_above: f64,
    /// E[max(0, −θ)]: what shipping the treatment loses on average when higher is better (the
    /// metric's units per context).
    pub expected_loss_above: f64,
    /// E[max(0, θ)]: the same when lower is better.
    pub expected_loss_below: f64,
    /// The central 1 − α credible interval of θ.
    pub credible_interval: Interval,
}

/// Beyond this many terms (about 0.5 ms of sums) the exact sum gives way to the normal
/// approximation of the posteriors, whose error there is below 1e-5 relative (3e-6 measured
/// on an expected loss at 100,000 conversions per arm).
const EXACT_TERMS: f64 = 20_000.0;

/// The Bayesian summary of `treatment` against `control` at credible level 1 − `alpha`.
///
/// * Conversions: independent Beta(1, 1) priors, so each rate's posterior is
///   Beta(1 + x, 1 + n − x). The chance and the expected losses are exact: P(X > Y) for two
///   Beta variables with whole parameters is a finite sum of Beta functions (Miller, 2015),
///   summed over the smallest of the four parameters (by the symmetries X > Y ⇔ 1 − Y > 1 − X
///   and P(X > Y) = 1 − P(Y > X)); E[max(0, Y − X)] = E[Y]·P(Y⁺ > X) − E[X]·P(Y > X⁺) with
///   X⁺, Y⁺ the size-biased Beta(a + 1, b). When every parameter exceeds 20,000 the posteriors
///   are taken as normal with their exact means and variances. The credible interval is always
///   normal with the posterior's exact mean and variance (its error is measured in
///   STATISTICS.md).
/// * Means and counts: a flat prior on each mean and the per-arm variance taken as known, so
///   θ ~ N(d, SE²): chance Φ(d/SE), losses SE·φ(d/SE) ∓ d·Φ(∓d/SE), interval d ± z·SE.
pub fn bayesian(
    kind: MetricKind,
    control: &Summary,
    treatment: &Summary,
    alpha: f64,
) -> Result<Bayesian, StatsError> {
    crate::error::check_unit_open("alpha", alpha)?;
    validate_summary(kind, "control", control)?;
    validate_summary(kind, "treatment", treatment)?;
    let z = dist::normal_upper_quantile(alpha / 2.0)?;
    match kind {
        MetricKind::Conversion => {
            let posterior = |s: &Summary| {
                let converted = s.sum().round();
                (1.0 + converted, 1.0 + s.n as f64 - converted)
            };
            let (a_c, b_c) = posterior(control);
            let (a_t, b_t) = posterior(treatment);
            let mean = |a: f64, b: f64| a / (a + b);
            let variance = |a: f64, b: f64| a * b / ((a + b).powi(2) * (a + b + 1.0));
            let lift = mean(a_t, b_t) - mean(a_c, b_c);
            let spread = (variance(a_t, b_t) + variance(a_c, b_c)).sqrt();
            let credible_interval = Interval {
                lower: lift - z * spread,
                upper: lift + z * spread,
            };
            if a_c.min(b_c).min(a_t).min(b_t) > EXACT_TERMS {
                return normal_summary(lift, spread, credible_interval);
            }
            let treatment = (a_t, b_t);
            let control = (a_c, b_c);
            let chance_above = beta_above(treatment, control);
            // E[max(0, p_c − p_t)] and E[max(0, p_t − p_c)] by size-biasing.
            let loss_if_treatment_worse = mean(a_c, b_c) * beta_above((a_c + 1.0, b_c), treatment)
                - mean(a_t, b_t) * beta_above(control, (a_t + 1.0, b_t));
            let loss_if_treatment_better = mean(a_t, b_t) * beta_above((a_t + 1.0, b_t), control)
                - mean(a_c, b_c) * beta_above(treatment, (a_c + 1.0, b_c));
            Ok(Bayesian {
                chance_above,
                expected_loss_above: loss_if_treatment_worse.max(0.0),
                expected_loss_below: loss_if_treatment_better.max(0.0),
                credible_interval,
            })
        }
        MetricKind::Mean | MetricKind::Count => {
            let standard_error = (control.variance() / control.n as f64
                + treatment.variance() / treatment.n as f64)
                .sqrt();
            if !(standard_error > 0.0 && standard_error.is_finite()) {
                return Err(StatsError::ZeroVariance);
            }
            let lift = treatment.mean() - control.mean();
            normal_summary(
                lift,
                standard_error,
                Interval {
                    lower: lift - z * standard_error,
                    upper: lift + z * standard_error,
                },
            )
        }
    }
}

/// The summary of a normal posterior N(lift, spread²).
fn normal_summary(
    lift: f64,
    spread: f64,
    credible_interval: Interval,
) -> Result<Bayesian, StatsError> {
    let standardised = lift / spread;
    let density = (-0.5 * standardised * standardised).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let above = dist::normal_cdf(standardised)?;
    let below = dist::normal_cdf(-standardised)?;
    Ok(Bayesian {
        chance_above: above,
        // E[max(0, −θ)] = s·φ(d/s) − d·Φ(−d/s); E[max(0, θ)] = s·φ(d/s) + d·Φ(d/s).
        expected_loss_above: (spread * density - lift * below).max(0.0),
        expected_loss_below: (spread * density + lift * above).max(0.0),
        credible_interval,
    })
}

/// P(X > Y) for X ~ Beta(x.0, x.1) and Y ~ Beta(y.0, y.1) with whole parameters, as a sum of
/// as many terms as the smallest parameter.
fn beta_above(x: (f64, f64), y: (f64, f64)) -> f64 {
    let smallest = x.0.min(x.1).min(y.0).min(y.1);
    let probability = if smallest == x.0 {
        miller_sum(x, y)
    } else if smallest == y.0 {
        1.0 - miller_sum(y, x)
    } else if smallest == y.1 {
        // X > Y ⇔ 1 − Y > 1 − X, with 1 − Y ~ Beta(y.1, y.0).
        miller_sum((y.1, y.0), (x.1, x.0))
    } else {
        1.0 - miller_sum((x.1, x.0), (y.1, y.0))
    };
    probability.clamp(0.0, 1.0)
}

/// P(X > Y) = Σ_{i=0}^{a_x − 1} tᵢ with tᵢ = B(a_y + i, b_x + b_y) / ((b_x + i)·B(1 + i, b_x)·
/// B(a_y, b_y)). The first term is t₀ = B(a_y, b_x + b_y)/B(a_y, b_y), taken from logs; the
/// others follow from the ratio tᵢ₊₁/tᵢ = (a_y + i)/(a_y + b_x + b_y + i) · (b_x + i + 1)/(i + 1)
/// · (b_x + i)/(b_x + i + 1), multiplied in linear space and rescaled so that neither the
/// terms nor their sum leave the range of a double.
fn miller_sum(x: (f64, f64), y: (f64, f64)) -> f64 {
    const RESCALE: f64 = 1e200;
    let (a_x, b_x) = x;
    let (a_y, b_y) = y;
    let log_first = ln_beta(a_y, b_x + b_y) - ln_beta(a_y, b_y);
    // The terms and the sum are kept divided by exp(log_first + log_scale).
    let mut log_scale = 0.0;
    let mut term = 1.0;
    let mut total = 0.0;
    let mut i = 0.0;
    while i < a_x {
        total += term;
        term *= (a_y + i) / (a_y + b_x + b_y + i) * (b_x + i + 1.0) / (i + 1.0) * (b_x + i)
            / (b_x + i + 1.0);
        if term > RESCALE || total > RESCALE {
            term /= RESCALE;
            total /= RESCALE;
            log_scale += RESCALE.ln();
        } else if term < 1.0 / RESCALE && total < 1.0 / RESCALE && term > 0.0 {
            term *= RESCALE;
            total *= RESCALE;
            log_scale -= RESCALE.ln();
        }
        i += 1.0;
    }
    if total == 0.0 {
        return 0.0;
    }
    (total.ln() + log_first + log_scale).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_agrees_with_its_symmetries() {
        for (x, y) in [
            ((3.0, 9.0), (5.0, 4.0)),
            ((1.0, 1.0), (1.0, 1.0)),
            ((12.0, 2.0), (7.0, 30.0)),
        ] {
            let direct = miller_sum(x, y);
            let complement = 1.0 - miller_sum(y, x);
            let mirrored = miller_sum((y.1, y.0), (x.1, x.0));
            assert!((direct - complement).abs() < 1e-12, "{direct} {complement}");
            assert!((direct - mirrored).abs() < 1e-12, "{direct} {mirrored}");
        }
        // Identical uniform posteriors: a fair coin.
        assert!((beta_above((1.0, 1.0), (1.0, 1.0)) - 0.5).abs() < 1e-14);
    }
}
