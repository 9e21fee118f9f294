//! Comparing one treatment with control on one metric.

use crate::dist;
use crate::error::{check_positive, check_unit_open};
use crate::sequential;
use crate::{StatsError, Summary};

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
    /// Two-sided 1 − α confidence interval of the absolute lift (fixed horizon).
    pub absolute_interval: Interval,
    /// (treatment − control) / control.
    pub relative_lift: f64,
    /// Two-sided 1 − α interval of the relative lift by the delta method.
    pub relative_interval: Interval,
    /// Fixed-horizon two-sided p-value (valid when read once, at the planned sample size).
    pub p_value: f64,
    /// Always-valid p-value (mSPRT): may be read after every new context.
    pub sequential_p_value: f64,
    /// 1 − α confidence sequence for the absolute lift: covers it at all times simultaneously.
    pub sequential_interval: Interval,
    /// Unpooled standard error of the absolute lift, √(s²_t/n_t + s²_c/n_c), the one behind
    /// the intervals.
    pub standard_error: f64,
}

/// Parameters of [`compare`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Two-sided significance level of every test and interval, in (0, 1). Default 0.05.
    pub alpha: f64,
    /// Standard deviation ρ of the normal mixing distribution of the mSPRT, in units of the
    /// per-context standard deviation: the mixture is N(0, τ²) over the true absolute lift with
    /// τ = ρ · √((s²_c + s²_t)/2). A larger ρ gives narrower confidence sequences early and wider
    /// ones late. Default [`DEFAULT_MIXTURE_STD_DEV`] (0.04), which makes the sequence
    /// narrowest near 10,000 contexts per variation at α = 0.05; see [`Settings::tuned_for`].
    pub mixture_std_dev: f64,
}

/// Default ρ of [`Settings::mixture_std_dev`]: close to optimal for 10,000 contexts per
/// variation at α = 0.05 (exact optimum 0.0398).
pub const DEFAULT_MIXTURE_STD_DEV: f64 = 0.04;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            mixture_std_dev: DEFAULT_MIXTURE_STD_DEV,
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
        })
    }

    fn validate(&self) -> Result<(), StatsError> {
        check_unit_open("settings.alpha", self.alpha)?;
        check_positive("settings.mixture_std_dev", self.mixture_std_dev)?;
        Ok(())
    }
}

/// Compares `treatment` with `control` on one metric of the given kind.
///
/// See the crate documentation for the formulas. Errors (never a panic, never a NaN) for fewer
/// than 2 contexts in a variation, zero variance in both, a zero control mean, inconsistent
/// summaries or invalid settings.
pub fn compare(
    kind: MetricKind,
    control: &Summary,
    treatment: &Summary,
    settings: &Settings,
) -> Result<Comparison, StatsError> {
    settings.validate()?;
    validate_summary(kind, "control", control)?;
    validate_summary(kind, "treatment", treatment)?;

    let n_c = control.n as f64;
    let n_t = treatment.n as f64;
    let mean_c = control.mean();
    let mean_t = treatment.mean();
    let lift = mean_t - mean_c;
    let alpha = settings.alpha;

    // Per-context variances: the Bernoulli variance p(1 − p) for conversions (as statsmodels'
    // z-test and Wald interval use), the sample variance otherwise (as scipy's Welch test).
    let (var_c, var_t) = match kind {
        MetricKind::Conversion => (mean_c * (1.0 - mean_c), mean_t * (1.0 - mean_t)),
        MetricKind::Mean | MetricKind::Count => (control.variance(), treatment.variance()),
    };
    let lift_variance = var_t / n_t + var_c / n_c;
    if !(lift.is_finite() && lift_variance.is_finite()) {
        return Err(too_large());
    }
    let standard_error = lift_variance.sqrt();
    if standard_error <= 0.0 {
        return Err(StatsError::ZeroVariance);
    }

    let (p_value, critical_value) = match kind {
        MetricKind::Conversion => {
            // The test uses the pooled rate (the null says both rates are equal).
            let pooled = (control.sum + treatment.sum) / (n_c + n_t);
            let pooled_error = (pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t)).sqrt();
            if pooled_error <= 0.0 {
                return Err(StatsError::ZeroVariance);
            }
            let z = lift / pooled_error;
            let p_value = (2.0 * dist::normal_sf(z.abs())?).min(1.0);
            (p_value, dist::normal_upper_quantile(alpha / 2.0)?)
        }
        MetricKind::Mean | MetricKind::Count => {
            let a = var_t / n_t;
            let b = var_c / n_c;
            // Welch–Satterthwaite degrees of freedom.
            let degrees_of_freedom =
                lift_variance * lift_variance / (a * a / (n_t - 1.0) + b * b / (n_c - 1.0));
            if !degrees_of_freedom.is_finite() {
                return Err(too_large());
            }
            let t = lift / standard_error;
            (
                dist::t_two_sided_p(t, degrees_of_freedom)?,
                dist::t_upper_quantile(alpha / 2.0, degrees_of_freedom)?,
            )
        }
    };

    if mean_c == 0.0 {
        return Err(StatsError::ZeroControlMean);
    }
    let relative_lift = lift / mean_c;
    // Delta method for g(x̄_t, x̄_c) = x̄_t / x̄_c − 1 with independent samples.
    let relative_variance = var_t / (n_t * mean_c * mean_c)
        + mean_t * mean_t * var_c / (n_c * mean_c * mean_c * mean_c * mean_c);
    let z = dist::normal_upper_quantile(alpha / 2.0)?;
    let relative_interval = Interval::around(relative_lift, z * relative_variance.sqrt());

    let mixture_variance =
        settings.mixture_std_dev * settings.mixture_std_dev * (var_c + var_t) / 2.0;
    let sequential = sequential::msprt(lift, lift_variance, mixture_variance, alpha);

    let comparison = Comparison {
        control_mean: mean_c,
        treatment_mean: mean_t,
        absolute_lift: lift,
        absolute_interval: Interval::around(lift, critical_value * standard_error),
        relative_lift,
        relative_interval,
        p_value,
        sequential_p_value: sequential.p_value,
        sequential_interval: Interval::around(lift, sequential.half_width),
        standard_error,
    };
    ensure_finite(&comparison)?;
    Ok(comparison)
}

fn validate_summary(
    kind: MetricKind,
    variation: &'static str,
    summary: &Summary,
) -> Result<(), StatsError> {
    let field = |name: &'static str| -> &'static str {
        match (variation, name) {
            ("control", "sum") => "control.sum",
            ("control", _) => "control.sum_squares",
            (_, "sum") => "treatment.sum",
            _ => "treatment.sum_squares",
        }
    };
    if summary.n < 2 {
        return Err(StatsError::TooFewContexts {
            variation,
            n: summary.n,
        });
    }
    if !summary.sum.is_finite() {
        return Err(StatsError::InvalidSummary {
            field: field("sum"),
            reason: "must be a finite number",
        });
    }
    if !summary.sum_squares.is_finite() || summary.sum_squares < 0.0 {
        return Err(StatsError::InvalidSummary {
            field: field("sum_squares"),
            reason: "must be a finite number ≥ 0",
        });
    }
    let n = summary.n as f64;
    match kind {
        MetricKind::Conversion => {
            if summary.sum < 0.0 || summary.sum > n {
                return Err(StatsError::InvalidSummary {
                    field: field("sum"),
                    reason: "conversions must be between 0 and n",
                });
            }
            if (summary.sum_squares - summary.sum).abs() > 1e-9 * summary.sum.max(1.0) {
                return Err(StatsError::InvalidSummary {
                    field: field("sum_squares"),
                    reason: "must equal sum for a conversion metric (values are 0 or 1)",
                });
            }
        }
        MetricKind::Count => {
            if summary.sum < 0.0 {
                return Err(StatsError::InvalidSummary {
                    field: field("sum"),
                    reason: "counts cannot be negative",
                });
            }
        }
        MetricKind::Mean => {}
    }
    // Cauchy–Schwarz: (Σx)² ≤ n Σx²; a little slack absorbs rounding.
    if summary.sum * summary.sum > n * summary.sum_squares * (1.0 + 1e-9) {
        return Err(StatsError::InvalidSummary {
            field: field("sum_squares"),
            reason: "is smaller than (sum)² / n, which no set of values can produce",
        });
    }
    Ok(())
}

fn ensure_finite(comparison: &Comparison) -> Result<(), StatsError> {
    let values = [
        comparison.control_mean,
        comparison.treatment_mean,
        comparison.absolute_lift,
        comparison.absolute_interval.lower,
        comparison.absolute_interval.upper,
        comparison.relative_lift,
        comparison.relative_interval.lower,
        comparison.relative_interval.upper,
        comparison.p_value,
        comparison.sequential_p_value,
        comparison.sequential_interval.lower,
        comparison.sequential_interval.upper,
        comparison.standard_error,
    ];
    if values.iter().all(|value| value.is_finite()) {
        Ok(())
    } else {
        Err(too_large())
    }
}

fn too_large() -> StatsError {
    StatsError::InvalidInput {
        field: "summary",
        reason: "values are too large to compare in double precision".into(),
    }
}
