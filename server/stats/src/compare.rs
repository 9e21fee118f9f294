//! Comparing one treatment with control on one metric.

use crate::dist;
use crate::error::{check_positive, check_unit_open};
use crate::{StatsError, Summary};
use crate::{proportions, sequential};

/// How a metric's per-context values are analysed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Per-context 0/1 (did the context convert); two-proportion z-test.
    Conversion,
    /// Per-context value (sum or mean of an event's value per context); Welch's t-test.
    Mean,
    /// Per-context count of events; Welch's t-test.
    Count,
}

/// A two-sided interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

impl Interval {
    fn around(centre: f64, half_width: f64) -> Interval {
        Interval {
            lower: centre - half_width,
            upper: centre + half_width,
        }
    }

    /// Whether `value` lies inside the closed interval.
    pub fn contains(&self, value: f64) -> bool {
        self.lower <= value && value <= self.upper
    }
}

/// The result of [`compare`]: treatment against control on one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Mean per context (conversion rate for [`MetricKind::Conversion`]) of control.
    pub control_mean: f64,
    /// Mean per context of the treatment.
    pub treatment_mean: f64,
    /// Treatment mean − control mean.
    pub absolute_lift: f64,
    /// Two-sided 1 − α confidence interval of the absolute lift (fixed horizon): Welch's for
    /// means and counts, the score interval for conversions.
    pub absolute_interval: Interval,
    /// (treatment − control) / control; `None` when the control mean is 0.
    pub relative_lift: Option<f64>,
    /// Two-sided 1 − α interval of the relative lift: Fieller's for means and counts, the
    /// score interval of the rate ratio for conversions. Each excludes 0 exactly when the
    /// p-value is below α. `None` when no honest bounded interval exists;
    /// [`Comparison::relative_undefined`] says why.
    pub relative_interval: Option<Interval>,
    /// Why [`Comparison::relative_interval`] is `None`.
    pub relative_undefined: Option<RelativeUndefined>,
    /// Fixed-horizon two-sided p-value (valid when read once, at the planned sample size).
    pub p_value: f64,
    /// Always-valid p-value (mSPRT): may be read after every new context.
    pub sequential_p_value: f64,
    /// 1 − α confidence sequence for the absolute lift: covers it at all times simultaneously.
    pub sequential_interval: Interval,
    /// Unpooled standard error of the absolute lift, √(s²_t/n_t + s²_c/n_c).
    pub standard_error: f64,
}

/// Which difference a test looks for, θ being the true absolute lift (treatment − control).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Alternative {
    /// Any difference, θ ≠ 0 (the default).
    #[default]
    TwoSided,
    /// The treatment above control, θ > 0: the p-values test only that way, and every interval
    /// is a lower bound (its upper end the largest possible value, or +∞).
    Greater,
    /// The treatment below control, θ < 0: the mirror image of [`Alternative::Greater`].
    Less,
}

/// Parameters of [`compare`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Significance level of every test and interval, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Standard deviation ρ of the normal mixing distribution of the mSPRT, in units of the
    /// per-context standard deviation: the mixture is N(0, τ²) over the true absolute lift with
    /// τ = ρ · √((s²_c + s²_t)/2). A larger ρ gives narrower confidence sequences early and wider
    /// ones late. Default [`DEFAULT_MIXTURE_STD_DEV`] (0.04), which makes the sequence
    /// narrowest near 10,000 contexts per variation at α = 0.05; see [`Settings::tuned_for`].
    pub mixture_std_dev: f64,
    /// Two-sided (the default) or one-sided tests and intervals.
    pub alternative: Alternative,
}

/// Default ρ of [`Settings::mixture_std_dev`]: close to optimal for 10,000 contexts per
/// variation at α = 0.05 (exact optimum 0.0398).
pub const DEFAULT_MIXTURE_STD_DEV: f64 = 0.04;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            mixture_std_dev: DEFAULT_MIXTURE_STD_DEV,
            alternative: Alternative::TwoSided,
        }
    }
}

impl Settings {
    /// Settings whose confidence sequence is (nearly) narrowest when each variation has
    /// `contexts_per_variation` contexts, e.g. the planned sample size of the experiment.
    ///
    /// With x = τ²/V (V the variance of the lift estimate) the half-width is proportional to
    /// √((1 + x)/x · (2 ln(1/α) + ln(1 + x))), minimised near x* = 2 ln(1/α) + ln(1 + 2 ln(1/α))
    /// (Waudby-Smith et al., 2024, §3). With equal variances and n contexts per variation,
    /// x = ρ² n / 2, hence ρ = √(2 x* / n).
    pub fn tuned_for(alpha: f64, contexts_per_variation: u64) -> Result<Settings, StatsError> {
        check_unit_open("alpha", alpha)?;
        if contexts_per_variation == 0 {
            return Err(StatsError::InvalidInput {
                field: "contexts_per_variation",
                reason: "must be at least 1".into(),
            });
        }
        let log_inverse_alpha = 2.0 * (1.0 / alpha).ln();
        let optimal_ratio = log_inverse_alpha + log_inverse_alpha.ln_1p();
        Ok(Settings {
            alpha,
            mixture_std_dev: (2.0 * optimal_ratio / contexts_per_variation as f64).sqrt(),
            alternative: Alternative::TwoSided,
        })
    }

    fn validate(&self) -> Result<(), StatsError> {
        check_unit_open("settings.alpha", self.alpha)?;
        check_positive("settings.mixture_std_dev", self.mixture_std_dev)?;
        Ok(())
    }
}

/// Why a [`Comparison`] gives no relative interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelativeUndefined {
    /// The control mean is 0: a relative lift does not exist.
    ControlMeanZero,
    /// The control mean is not distinguishable from 0 at the test's level, so Fieller's
    /// confidence set for the ratio is unbounded.
    ControlMeanUnresolved,
    /// Every treatment value is 0, so the treatment's spread is unknown: any interval would
    /// be the point −100 %.
    TreatmentWithoutSpread,
    /// The relative lift or a bound overflows double precision.
    OutOfRange,
}

impl std::fmt::Display for RelativeUndefined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ControlMeanZero => "the control mean is 0, so a relative lift is undefined",
            Self::ControlMeanUnresolved => {
                "the control mean is not distinguishable from 0 at this level, so the relative \
                 lift is unbounded"
            }
            Self::TreatmentWithoutSpread => {
                "every treatment value is 0, so its spread is unknown and no relative interval \
                 would be honest"
            }
            Self::OutOfRange => "the relative lift is too large for double precision",
        })
    }
}

use RelativeUndefined::{
    ControlMeanUnresolved, ControlMeanZero, OutOfRange, TreatmentWithoutSpread,
};

/// Compares `treatment` with `control` on one metric of the given kind.
///
/// See the crate documentation for the formulas. Errors (never a panic, never a NaN) for fewer
/// than 2 contexts in a variation, zero variance in both (means and counts), summaries no set of
/// values could produce, or invalid settings. A zero control mean is not an error: the absolute
/// lift, its interval and the p-values are still given, the relative lift is not.
pub fn compare(
    kind: MetricKind,
    control: &Summary,
    treatment: &Summary,
    settings: &Settings,
) -> Result<Comparison, StatsError> {
    settings.validate()?;
    validate_summary(kind, "control", control)?;
    validate_summary(kind, "treatment", treatment)?;

    let mean_c = control.mean();
    let mean_t = treatment.mean();
    let lift = mean_t - mean_c;
    if !lift.is_finite() {
        return Err(StatsError::InvalidInput {
            field: "summary",
            reason: format!(
                "the difference of the means ({mean_t:e} − {mean_c:e}) overflows double precision"
            ),
        });
    }
    let alternative = settings.alternative;
    // A one-sided bound at level α is the matching end of the two-sided interval at 2α (each
    // interval below is monotone in its statistic), with the other end at the limit.
    let tail = match alternative {
        Alternative::TwoSided => settings.alpha / 2.0,
        Alternative::Greater | Alternative::Less => settings.alpha,
    };
    let z = dist::normal_upper_quantile(tail)?;

    // Standard deviations rather than variances throughout, so values up to ~1e300 (whose
    // squares would overflow) still compare.
    let (sd_c, sd_t) = match kind {
        MetricKind::Conversion => (bernoulli_sd(mean_c), bernoulli_sd(mean_t)),
        MetricKind::Mean | MetricKind::Count => {
            (control.variance().sqrt(), treatment.variance().sqrt())
        }
    };
    let se_c = sd_c / (control.n as f64).sqrt();
    let se_t = sd_t / (treatment.n as f64).sqrt();
    let standard_error = se_c.hypot(se_t);

    let (p_value, absolute_interval, relative) = match kind {
        MetricKind::Conversion => {
            let converted_c = control.sum().round();
            let converted_t = treatment.sum().round();
            let n_c = control.n as f64;
            let n_t = treatment.n as f64;
            // The test uses the pooled rate (the null says both rates are equal). Both arms
            // at 0 % or both at 100 % show no difference at all: p = 1.
            let pooled = (converted_c + converted_t) / (n_c + n_t);
            let pooled_error = (pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t)).sqrt();
            let p_value = if pooled_error > 0.0 {
                let statistic = lift / pooled_error;
                match alternative {
                    Alternative::TwoSided => (2.0 * dist::normal_sf(statistic.abs())?).min(1.0),
                    Alternative::Greater => dist::normal_sf(statistic)?,
                    Alternative::Less => dist::normal_sf(-statistic)?,
                }
            } else {
                1.0
            };
            let arm_c = proportions::Arm {
                converted: converted_c,
                n: n_c,
            };
            let arm_t = proportions::Arm {
                converted: converted_t,
                n: n_t,
            };
            let absolute = one_sided(
                proportions::difference_interval(arm_c, arm_t, z),
                alternative,
                -1.0,
                1.0,
            );
            let relative = if mean_c == 0.0 {
                Err(ControlMeanZero)
            } else {
                finite(proportions::relative_interval(arm_c, arm_t, z))
                    .map(|interval| one_sided(interval, alternative, -1.0, f64::INFINITY))
            };
            (p_value, absolute, relative)
        }
        MetricKind::Mean | MetricKind::Count => {
            if standard_error <= 0.0 {
                return Err(StatsError::ZeroVariance);
            }
            let share_t = se_t / standard_error;
            let share_c = se_c / standard_error;
            // Welch–Satterthwaite degrees of freedom, in shares of the standard error so that
            // nothing is raised to the fourth power of a large number.
            let degrees_of_freedom = 1.0
                / (share_t.powi(4) / (treatment.n - 1) as f64
                    + share_c.powi(4) / (control.n - 1) as f64);
            let t = lift / standard_error;
            let critical = dist::t_upper_quantile(tail, degrees_of_freedom)?;
            let two_sided_p = dist::t_two_sided_p(t, degrees_of_freedom)?;
            let p_value = match alternative {
                Alternative::TwoSided => two_sided_p,
                Alternative::Greater if t > 0.0 => two_sided_p / 2.0,
                Alternative::Less if t < 0.0 => two_sided_p / 2.0,
                Alternative::Greater | Alternative::Less => 1.0 - two_sided_p / 2.0,
            };
            // With a negative control mean the relative lift falls as the absolute one rises.
            let relative_alternative = if mean_c < 0.0 {
                alternative.reversed()
            } else {
                alternative
            };
            let relative = fieller_interval(mean_c, se_c, mean_t, se_t, critical)
                .and_then(finite)
                .map(|interval| {
                    one_sided(
                        interval,
                        relative_alternative,
                        f64::NEG_INFINITY,
                        f64::INFINITY,
                    )
                });
            (
                p_value,
                one_sided(
                    Interval::around(lift, critical * standard_error),
                    alternative,
                    f64::NEG_INFINITY,
                    f64::INFINITY,
                ),
                relative,
            )
        }
    };

    let sequential = sequential_inference(kind, control, treatment, lift, settings)?;
    let (relative_interval, relative_undefined) = match relative {
        Ok(interval) => (Some(interval), None),
        Err(reason) => (None, Some(reason)),
    };
    let relative_lift = (mean_c != 0.0)
        .then(|| lift / mean_c)
        .filter(|r| r.is_finite());
    let comparison = Comparison {
        control_mean: mean_c,
        treatment_mean: mean_t,
        absolute_lift: lift,
        absolute_interval,
        relative_lift,
        relative_interval,
        relative_undefined: relative_undefined
            .or((relative_lift.is_none() && mean_c != 0.0).then_some(OutOfRange)),
        p_value,
        sequential_p_value: sequential.p_value,
        sequential_interval: sequential.interval,
        standard_error,
    };
    ensure_finite(&comparison, alternative)?;
    Ok(comparison)
}

/// A two-sided relative interval whose ends both fit in a double, or why not.
fn finite(interval: Interval) -> Result<Interval, RelativeUndefined> {
    if interval.lower.is_finite() && interval.upper.is_finite() {
        Ok(interval)
    } else {
        Err(OutOfRange)
    }
}

impl Alternative {
    fn reversed(self) -> Alternative {
        match self {
            Alternative::TwoSided => Alternative::TwoSided,
            Alternative::Greater => Alternative::Less,
            Alternative::Less => Alternative::Greater,
        }
    }
}

/// The one-sided interval of `alternative` from a two-sided one: its far end moved to the
/// limit of what the quantity can be.
fn one_sided(interval: Interval, alternative: Alternative, lowest: f64, highest: f64) -> Interval {
    match alternative {
        Alternative::TwoSided => interval,
        Alternative::Greater => Interval {
            lower: interval.lower,
            upper: highest,
        },
        Alternative::Less => Interval {
            lower: lowest,
            upper: interval.upper,
        },
    }
}

fn bernoulli_sd(rate: f64) -> f64 {
    (rate * (1.0 - rate)).max(0.0).sqrt()
}

/// Fieller's interval for x̄_t/x̄_c, minus 1 (Fieller, "Some problems in interval estimation",
/// JRSS B 16, 1954), with independent arms and the test's own critical value q: the set of ρ
/// with (x̄_t − ρ·x̄_c)² ≤ q²(SE_t² + ρ²·SE_c²). Since ρ = 1 is in it exactly when |t| ≤ q, the
/// interval excludes a zero relative lift exactly when Welch's test rejects. It is bounded only
/// when the control mean itself is significant (x̄_c² > q²·SE_c²); otherwise the set is
/// unbounded and no interval is given.
fn fieller_interval(
    mean_c: f64,
    se_c: f64,
    mean_t: f64,
    se_t: f64,
    critical: f64,
) -> Result<Interval, RelativeUndefined> {
    if mean_c == 0.0 {
        return Err(ControlMeanZero);
    }
    if mean_t == 0.0 && se_t == 0.0 {
        return Err(TreatmentWithoutSpread);
    }
    // Divided through by x̄_c², so nothing squares a large mean.
    let ratio = mean_t / mean_c;
    let scaled_c = critical * se_c / mean_c.abs();
    let scaled_t = critical * se_t / mean_c.abs();
    let leading = 1.0 - scaled_c * scaled_c;
    if leading <= 0.0 {
        return Err(ControlMeanUnresolved);
    }
    let root = (scaled_t.powi(2) * leading + (scaled_c * ratio).powi(2)).sqrt();
    Ok(Interval {
        lower: (ratio - root) / leading - 1.0,
        upper: (ratio + root) / leading - 1.0,
    })
}

/// The always-valid p-value and confidence sequence of the absolute lift.
struct SequentialResult {
    p_value: f64,
    interval: Interval,
}

/// The mSPRT of the absolute lift, in units of its standard error so that no variance
/// overflows. For conversions with both arms at 0 % or 100 % the Wald variance is 0; the rates
/// then stand in as (x + 1)/(n + 2) (Agresti and Caffo, 2000), which keeps the sequence honest
/// rather than a point.
fn sequential_inference(
    kind: MetricKind,
    control: &Summary,
    treatment: &Summary,
    lift: f64,
    settings: &Settings,
) -> Result<SequentialResult, StatsError> {
    let (sd_c, sd_t) = match kind {
        MetricKind::Conversion => {
            let (sd_c, sd_t) = (bernoulli_sd(control.mean()), bernoulli_sd(treatment.mean()));
            if sd_c == 0.0 && sd_t == 0.0 {
                let adjusted = |s: &Summary| (s.sum().round() + 1.0) / (s.n as f64 + 2.0);
                (
                    bernoulli_sd(adjusted(control)),
                    bernoulli_sd(adjusted(treatment)),
                )
            } else {
                (sd_c, sd_t)
            }
        }
        MetricKind::Mean | MetricKind::Count => {
            (control.variance().sqrt(), treatment.variance().sqrt())
        }
    };
    let standard_error =
        (sd_c / (control.n as f64).sqrt()).hypot(sd_t / (treatment.n as f64).sqrt());
    if standard_error <= 0.0 {
        return Err(StatsError::ZeroVariance);
    }
    // τ² = ρ²(s²_c + s²_t)/2, over V = SE².
    let mixture_ratio = settings.mixture_std_dev.powi(2)
        * ((sd_c / standard_error).powi(2) + (sd_t / standard_error).powi(2))
        / 2.0;
    let standardised = lift / standard_error;
    let alpha = settings.alpha;
    Ok(match settings.alternative {
        Alternative::TwoSided => {
            let two_sided = sequential::msprt(standardised, 1.0, mixture_ratio, alpha);
            SequentialResult {
                p_value: two_sided.p_value,
                interval: Interval::around(lift, two_sided.half_width * standard_error),
            }
        }
        Alternative::Greater => {
            let (p_value, margin) = sequential::one_sided(standardised, mixture_ratio, alpha)?;
            SequentialResult {
                p_value,
                interval: Interval {
                    lower: lift - margin * standard_error,
                    upper: f64::INFINITY,
                },
            }
        }
        Alternative::Less => {
            let (p_value, margin) = sequential::one_sided(-standardised, mixture_ratio, alpha)?;
            SequentialResult {
                p_value,
                interval: Interval {
                    lower: f64::NEG_INFINITY,
                    upper: lift + margin * standard_error,
                },
            }
        }
    })
}

pub(crate) fn validate_summary(
    kind: MetricKind,
    variation: &'static str,
    summary: &Summary,
) -> Result<(), StatsError> {
    let (mean_field, deviations_field) = match variation {
        "control" => ("control.mean", "control.squared_deviations"),
        _ => ("treatment.mean", "treatment.squared_deviations"),
    };
    if summary.n < 2 {
        return Err(StatsError::TooFewContexts {
            variation,
            n: summary.n,
        });
    }
    if !summary.mean.is_finite() {
        return Err(StatsError::InvalidSummary {
            field: mean_field,
            reason: "must be a finite number".into(),
        });
    }
    if !summary.squared_deviations.is_finite() || summary.squared_deviations < 0.0 {
        return Err(StatsError::InvalidSummary {
            field: deviations_field,
            reason: if summary.squared_deviations == f64::INFINITY {
                "overflows double precision: the values are too spread (beyond about 1e150) to \
                 square; rescale the metric (for example to thousands)"
                    .into()
            } else {
                "must be a finite number ≥ 0".into()
            },
        });
    }
    let n = summary.n as f64;
    let total = summary.sum();
    // A count or a number of conversions computed as n·x̄ is whole up to rounding.
    let whole = |what: &str| -> Result<(), StatsError> {
        if (total - total.round()).abs() > 1e-6 * total.abs().max(1.0) {
            return Err(StatsError::InvalidSummary {
                field: mean_field,
                reason: format!(
                    "{what} must be whole, but n × mean = {n} × {} = {total}",
                    summary.mean
                ),
            });
        }
        Ok(())
    };
    match kind {
        MetricKind::Conversion => {
            if !(0.0..=1.0).contains(&summary.mean) {
                return Err(StatsError::InvalidSummary {
                    field: mean_field,
                    reason: format!(
                        "a conversion rate must be within [0, 1], got {}",
                        summary.mean
                    ),
                });
            }
            whole("the number of conversions")?;
            let expected = n * summary.mean * (1.0 - summary.mean);
            if (summary.squared_deviations - expected).abs() > 1e-6 * expected.max(1.0) {
                return Err(StatsError::InvalidSummary {
                    field: deviations_field,
                    reason: format!(
                        "must be n·p·(1 − p) = {expected} for a conversion metric (values are 0 \
                         or 1), got {}",
                        summary.squared_deviations
                    ),
                });
            }
        }
        MetricKind::Count => {
            if summary.mean < 0.0 {
                return Err(StatsError::InvalidSummary {
                    field: mean_field,
                    reason: format!("counts cannot be negative, got a mean of {}", summary.mean),
                });
            }
            whole("the total count")?;
        }
        MetricKind::Mean => {}
    }
    Ok(())
}

fn ensure_finite(comparison: &Comparison, alternative: Alternative) -> Result<(), StatsError> {
    let values = [
        comparison.control_mean,
        comparison.treatment_mean,
        comparison.absolute_lift,
        comparison.p_value,
        comparison.sequential_p_value,
        comparison.standard_error,
    ];
    // A one-sided interval has one infinite end; only the other must be finite.
    let bounds = [comparison.absolute_interval, comparison.sequential_interval];
    let bounds_valid = |b: &Interval| match alternative {
        Alternative::TwoSided => b.lower.is_finite() && b.upper.is_finite(),
        Alternative::Greater => b.lower.is_finite() && !b.upper.is_nan(),
        Alternative::Less => b.upper.is_finite() && !b.lower.is_nan(),
    };
    if values.iter().all(|value| value.is_finite()) && bounds.iter().all(bounds_valid) {
        Ok(())
    } else {
        Err(StatsError::InvalidInput {
            field: "summary",
            reason: "an interval bound overflows double precision: the values are too large \
                     (beyond about 1e300); rescale the metric"
                .into(),
        })
    }
}
