//! Sample size and power of a planned experiment.

use crate::error::{check_positive, check_unit_open};
use crate::{MetricKind, StatsError, dist};

/// A planned comparison of each treatment with control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Design {
    /// How the primary metric is analysed.
    pub kind: MetricKind,
    /// Expected control mean (the conversion rate, in (0, 1), for [`MetricKind::Conversion`]).
    pub baseline_mean: f64,
    /// Per-context standard deviation of the metric; required for [`MetricKind::Mean`] and
    /// [`MetricKind::Count`], ignored for conversions (where it is √(p(1 − p))).
    pub baseline_std_dev: Option<f64>,
    /// Smallest relative lift worth detecting, e.g. 0.05 for +5% (negative for a decrease).
    pub minimum_detectable_effect: f64,
    /// Family-wise two-sided significance level, split across treatments (Bonferroni).
    pub alpha: f64,
    /// Desired probability of detecting the effect, e.g. 0.8.
    pub power: f64,
    /// Number of treatments compared with control (≥ 1).
    pub treatments: u32,
    /// Whether each comparison is tested one way only (in the direction of the effect): the
    /// whole α in one tail, so fewer contexts reach the same power.
    pub one_sided: bool,
}

/// The quantities the power formula needs, from a validated design.
struct Plan {
    /// Standardised effect δ = Δ / σ.
    effect_size: f64,
    /// Per-comparison level α / treatments.
    alpha: f64,
}

impl Design {
    /// A two-sided test of one treatment on a conversion rate `baseline_mean`, at the usual
    /// α = 0.05 and power 0.8.
    pub fn conversion(baseline_mean: f64, minimum_detectable_effect: f64) -> Design {
        Design {
            kind: MetricKind::Conversion,
            baseline_mean,
            baseline_std_dev: None,
            minimum_detectable_effect,
            alpha: 0.05,
            power: 0.8,
            treatments: 1,
            one_sided: false,
        }
    }

    fn plan(&self) -> Result<Plan, StatsError> {
        check_unit_open("design.alpha", self.alpha)?;
        if self.treatments == 0 {
            return Err(StatsError::InvalidInput {
                field: "design.treatments",
                reason: "at least 1 treatment is needed".into(),
            });
        }
        let mde = self.minimum_detectable_effect;
        if !mde.is_finite() || mde == 0.0 || mde <= -1.0 {
            return Err(StatsError::InvalidParameter {
                field: "design.minimum_detectable_effect",
                value: mde,
                expected: "a finite relative lift other than 0, above -1",
            });
        }
        let effect_size = match self.kind {
            MetricKind::Conversion => {
                let control = check_unit_open("design.baseline_mean", self.baseline_mean)?;
                let treatment = control * (1.0 + mde);
                if !(treatment > 0.0 && treatment < 1.0) {
                    return Err(StatsError::InvalidParameter {
                        field: "design.minimum_detectable_effect",
                        value: mde,
                        expected: "a lift that keeps the treatment rate strictly between 0 and 1",
                    });
                }
                let average_variance =
                    (control * (1.0 - control) + treatment * (1.0 - treatment)) / 2.0;
                (treatment - control) / average_variance.sqrt()
            }
            MetricKind::Mean | MetricKind::Count => {
                let baseline = self.baseline_mean;
                if !baseline.is_finite() || baseline == 0.0 {
                    return Err(StatsError::InvalidParameter {
                        field: "design.baseline_mean",
                        value: baseline,
                        expected: "a finite number other than 0 (the effect is relative to it)",
                    });
                }
                let std_dev = self.baseline_std_dev.ok_or(StatsError::InvalidInput {
                    field: "design.baseline_std_dev",
                    reason: "is required for mean and count metrics".into(),
                })?;
                check_positive("design.baseline_std_dev", std_dev)?;
                baseline * mde / std_dev
            }
        };
        if !effect_size.is_finite() || effect_size == 0.0 {
            return Err(StatsError::InvalidParameter {
                field: "design.minimum_detectable_effect",
                value: mde,
                expected: "an effect that is finite and not zero relative to the standard deviation",
            });
        }
        Ok(Plan {
            effect_size: effect_size.abs(),
            alpha: self.alpha / f64::from(self.treatments),
        })
    }
}

/// Power of the z-test with n contexts per variation: two-sided
/// Φ(δ√(n/2) − z) + Φ(−δ√(n/2) − z) with z = z_{1−α/2}; one-sided Φ(δ√(n/2) − z) with
/// z = z_{1−α}.
fn power_at(
    plan: &Plan,
    critical: f64,
    one_sided: bool,
    contexts_per_variation: f64,
) -> Result<f64, StatsError> {
    let shift = plan.effect_size * (contexts_per_variation / 2.0).sqrt();
    let wrong_tail = if one_sided {
        0.0
    } else {
        dist::normal_cdf(-shift - critical)?
    };
    Ok(dist::normal_cdf(shift - critical)? + wrong_tail)
}

/// The critical value of the design's test: z_{1−α'/2}, or z_{1−α'} one-sided.
fn critical_value(design: &Design, plan: &Plan) -> Result<f64, StatsError> {
    dist::normal_upper_quantile(if design.one_sided {
        plan.alpha
    } else {
        plan.alpha / 2.0
    })
}

/// Contexts needed in each variation (control and every treatment) to detect the design's
/// effect with its power, two-sided, at α / treatments per comparison. At least 2.
pub fn required_sample_size(design: &Design) -> Result<u64, StatsError> {
    let plan = design.plan()?;
    let power = check_unit_open("design.power", design.power)?;
    if power <= plan.alpha {
        return Err(StatsError::InvalidParameter {
            field: "design.power",
            value: power,
            expected: "a power greater than alpha / treatments (the power with no data)",
        });
    }
    let critical = critical_value(design, &plan)?;
    // The one-tail closed form n = 2 ((z_{1−α/2} + z_power) / δ)² is within a context of the
    // answer; the exact two-tail equation is then solved by bisection around it.
    let guess =
        2.0 * ((critical + dist::normal_upper_quantile(1.0 - power)?) / plan.effect_size).powi(2);
    if !guess.is_finite() || guess > 1e18 {
        return Err(StatsError::SampleSizeTooLarge);
    }
    let (mut low, mut high) = (0.0, guess.max(1.0));
    while power_at(&plan, critical, design.one_sided, high)? < power {
        low = high;
        high *= 2.0;
        if high > 1e19 {
            return Err(StatsError::SampleSizeTooLarge);
        }
    }
    for _ in 0..200 {
        let middle = 0.5 * (low + high);
        if middle <= low || middle >= high {
            break;
        }
        if power_at(&plan, critical, design.one_sided, middle)? < power {
            low = middle;
        } else {
            high = middle;
        }
    }
    // `high` reaches the power; the exact root lies in (low, high], a few ulps wide.
    Ok((high.ceil() as u64).max(2))
}

/// Power reached with `contexts_per_variation` contexts in each variation (same test and level
/// as [`required_sample_size`]; `design.power` is not used).
pub fn achieved_power(design: &Design, contexts_per_variation: u64) -> Result<f64, StatsError> {
    let plan = design.plan()?;
    let critical = critical_value(design, &plan)?;
    power_at(
        &plan,
        critical,
        design.one_sided,
        contexts_per_variation as f64,
    )
}
