//! The statistics engine of Vexil experiments: pure functions over sufficient statistics, no
//! I/O. Distributions come from [statrs].
//!
//! # Inputs
//!
//! A [`Summary`] holds, for one variation and one metric, the number of exposed contexts n, the
//! mean x̄ and the sum of squared deviations M₂ = Σ(x − x̄)² of the per-context values x; the
//! sample variance is s² = M₂/(n − 1). Moments about the mean, not raw sums Σx and Σx², because
//! rebuilding a variance from raw sums cancels catastrophically when the mean is large against
//! the spread (see [`Summary`]). For a [`MetricKind::Conversion`] the values are 0/1 and the
//! per-context variance is the Bernoulli p̂(1 − p̂). Below, c is control, t the treatment,
//! d = x̄_t − x̄_c the absolute lift, SE = √(s²_t/n_t + s²_c/n_c).
//!
//! # Fixed-horizon test and interval ([`compare`])
//!
//! * **Mean, Count — Welch's t-test.** t = d/SE, degrees of freedom by Welch–Satterthwaite
//!   ν = SE⁴ / ((s²_t/n_t)²/(n_t − 1) + (s²_c/n_c)²/(n_c − 1)), p = 2·P(T_ν > |t|); interval
//!   d ± t_{ν,1−α/2}·SE. This is scipy's `ttest_ind(treatment, control, equal_var=False)` and
//!   its `confidence_interval(1 − α)` (Welch, 1947). Above ν = 10⁶ Student's t is evaluated by
//!   its expansion in 1/ν (Cornish–Fisher for the quantile), because statrs' incomplete beta
//!   loses accuracy at such ν; p-values ≥ 1e-15 stay within 1e-8 of scipy's there, smaller
//!   ones less (see STATISTICS.md).
//! * **Conversion — pooled two-proportion z-test and score intervals.** The test uses the
//!   pooled rate p̄ = (x_c + x_t)/(n_c + n_t): z = d/√(p̄(1 − p̄)(1/n_c + 1/n_t)),
//!   p = 2·P(Z > |z|) (statsmodels `proportions_ztest`); both arms at 0 % or both at 100 % give
//!   p = 1. The interval is the Miettinen–Nurminen score interval without the n/(n − 1)
//!   factor: every Δ that the score test of p_t − p_c = Δ does not reject. At Δ = 0 that test
//!   *is* the pooled z-test, so the interval excludes 0 exactly when p < α; and unlike Wald's
//!   interval it keeps its coverage at small n and its width at 0 % and 100 %.
//!
//! [`Comparison::standard_error`] is the unpooled SE of both cases (Wald's for conversions).
//!
//! # Relative lift
//!
//! r = d/x̄_c = x̄_t/x̄_c − 1, with an interval that agrees with the test's decision:
//!
//! * **Mean, Count — Fieller's interval** (Fieller, 1954): every ρ with
//!   (x̄_t − ρx̄_c)² ≤ q²(SE_t² + ρ²SE_c²), q the Welch test's own critical value, minus 1.
//!   ρ = 1 belongs to it exactly when |t| ≤ q, so it excludes a zero lift exactly when the test
//!   rejects. It is bounded only when the control mean is itself significantly different from
//!   0; otherwise no interval is given ([`RelativeUndefined::ControlMeanUnresolved`]).
//! * **Conversion — the score interval of the rate ratio** p_t/p_c (Miettinen–Nurminen,
//!   Koopman), minus 1; at ratio 1 its test is again the pooled z-test. With no treatment
//!   conversions it runs from −100 % to an honest upper bound.
//!
//! A zero control mean gives no relative lift ([`RelativeUndefined::ControlMeanZero`]); a
//! treatment whose values are all 0 in a mean metric gives no relative interval, because its
//! spread is unknown ([`RelativeUndefined::TreatmentWithoutSpread`]). The absolute lift, its
//! interval and the p-values are given in every case. In the simulations of `tests/coverage.rs`
//! (small n, skewed values, rates near 0 %) these intervals cover 94.5–97 % for a nominal 95 %,
//! where the textbook delta-method interval covers 81–94 %, and never disagree with the test.
//!
//! # One-sided tests ([`Alternative`])
//!
//! With [`Settings::alternative`] set to `Greater` (or `Less`) the p-value tests θ > 0 only
//! (θ < 0): P(T_ν > t), P(Z > z). Each interval becomes a bound: the matching end of the
//! two-sided interval at level 2α — exactly the one-sided interval, since each statistic is
//! monotone in the effect — with the other end at the limit of the quantity (+∞, or 1 for a
//! difference of rates; −1 for a relative lift of rates). The sequential test mixes over one
//! side only, a half-normal N(0, τ²) on θ > 0, whose likelihood ratio has the closed form
//! Λ⁺ = Λ·2Φ(d·τ/√(V(V + τ²))); the always-valid p-value is min(1, 1/Λ⁺) and the confidence
//! sequence's bound is where Λ⁺ reaches 1/α. [`Design::one_sided`] plans with the whole α in
//! one tail.
//!
//! # Ratio metrics ([`compare_ratio`])
//!
//! A ratio metric is Σx/Σy over the contexts of a variation (revenue per session), where x and
//! y vary by context and move together. [`PairSummary`] keeps n, both means, both squared
//! deviations and the co-deviations; by the delta method the ratio R = x̄/ȳ behaves as the mean
//! of the linearised values zᵢ = R + (xᵢ − R·yᵢ)/ȳ, of variance (s²_x − 2R·s_xy + R²·s²_y)/ȳ²,
//! which [`compare_ratio`] compares as a mean metric.
//!
//! # Quantile metrics ([`compare_quantiles`])
//!
//! The p-quantile of the per-context values (p50 or p90 of each context's mean latency). In a
//! variation of n contexts the sample quantile is the value of rank ⌈n·p⌉, and its
//! distribution-free interval [x₍ₗ₎, x₍ᵤ₎] takes the ranks that leave at most α/2 of the
//! Binomial(n, p) law in each tail ([`quantile_ranks`]; scipy's `quantile_test` interval). Its
//! width estimates the quantile's standard error, SE = (x₍ᵤ₎ − x₍ₗ₎)/(2·z_{1−α/2}), without a
//! density estimate (McKean and Schrader, 1984; Price and Bonett, 2002). The difference of two
//! quantiles is then compared as a mean with that standard error ([`QuantileSummary::as_mean`]):
//! Welch's test (the normal at these n), Fieller's relative interval, the mSPRT and the
//! Bayesian reading. Only three order statistics per variation cross from the database. The
//! normal approximation needs the values not to be mostly ties at the quantile.
//!
//! # CUPED ([`cuped`])
//!
//! With a pre-exposure covariate y of each context (the same metric before the experiment),
//! x − θ(y − ȳ) with θ the pooled within-arm slope keeps the lift's expectation and removes the
//! share of variance the covariate explains (Deng et al., WSDM 2013). [`cuped`] returns both
//! arms' adjusted summaries, compared as means.
//!
//! # Bayesian summaries ([`bayesian`])
//!
//! The chance that the treatment is above control, P(θ > 0), the expected loss of shipping it
//! E[max(0, −θ)] (and of keeping control, E[max(0, θ)]), and a central credible interval of θ.
//! Conversions: Beta(1, 1) priors, exact sums of Beta functions for the chance and the losses.
//! Means and counts: flat priors, θ ~ N(d, SE²). See [`bayesian`] for the formulas.
//!
//! # Sequential inference: mSPRT with a normal mixture
//!
//! Fixed-horizon p-values are only valid when read once; read daily they inflate false
//! positives (the simulation test shows about 4× at 20 looks). Vexil reports the always-valid
//! p-value and confidence sequence of the **mixture sequential probability ratio test** of
//! Johari, Koomen, Pekelis and Walsh, "Always Valid Inference: Continuous Monitoring of A/B
//! Tests", *Operations Research* 70(3), 2022 (arXiv:1512.04922, 2015/2017). With the lift
//! estimate d, its variance V = SE² (unpooled) and a N(0, τ²) mixing distribution over the true
//! lift θ, the mixture likelihood ratio against θ₀ is
//!
//! Λ(θ₀) = √(V/(V + τ²)) · exp(τ² (d − θ₀)² / (2V(V + τ²))).
//!
//! * always-valid p-value p = min(1, 1/Λ(0)); by Ville's inequality P(∃ n: p_n ≤ α) ≤ α under
//!   the null, so it may be read after every context. (A caller holding the history may also
//!   report the running minimum, which has the same guarantee.)
//! * confidence sequence {θ : Λ(θ) < 1/α} = d ± √(V(V + τ²)/τ² · (2 ln(1/α) + ln((V + τ²)/V))),
//!   which covers the true lift at all times simultaneously with probability ≥ 1 − α.
//!
//! The variance is estimated, not known, so the guarantee is asymptotic (large n). With τ set
//! in units of the per-context standard deviation, τ² = ρ²·(s²_c + s²_t)/2, the interval is
//! exactly the two-sided asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy
//! and Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences",
//! *Annals of Statistics* 52(6), 2024 (arXiv:2103.06476), which justifies the plug-in.
//!
//! **Tuning parameter:** ρ = [`Settings::mixture_std_dev`], default
//! [`DEFAULT_MIXTURE_STD_DEV`] = 0.04, which makes the sequence narrowest near 10,000 contexts
//! per variation at α = 0.05. [`Settings::tuned_for`] picks ρ = √(2x*/n) for a planned n, with
//! x* = 2 ln(1/α) + ln(1 + 2 ln(1/α)). Any ρ > 0 keeps the guarantee; it only moves where the
//! sequence is tightest.
//!
//! # Sample-ratio mismatch ([`sample_ratio_mismatch`])
//!
//! Pearson's chi-square goodness of fit of the contexts per variation Oᵢ against Eᵢ = N wᵢ/Σw:
//! χ² = Σ (Oᵢ − Eᵢ)²/Eᵢ with k − 1 degrees of freedom (scipy `chisquare`). A mismatch is
//! reported when p < [`SRM_ALPHA`] = 0.001 (Fabijan et al., "Diagnosing Sample Ratio Mismatch in
//! Online Controlled Experiments", KDD 2019).
//!
//! # Multiple comparisons ([`holm`])
//!
//! Holm's step-down adjustment (Holm, "A simple sequentially rejective multiple test
//! procedure", *Scand. J. Statist.* 6, 1979): sorted ascending, p̃₍ᵢ₎ = min(1, max_{j≤i} (m − j +
//! 1) p₍ⱼ₎) (statsmodels `multipletests(method="holm")`).
//!
//! # Sample size and power ([`required_sample_size`], [`achieved_power`])
//!
//! Two-sided, equal allocation, normal approximation, with a standardised effect δ:
//! for conversions δ = (p₂ − p₁)/√((p₁(1 − p₁) + p₂(1 − p₂))/2) with p₂ = p₁(1 + MDE)
//! (the unpooled variance of the Wald interval); for means and counts δ = x̄·MDE/σ. With
//! n contexts per variation the power is
//!
//! power(n) = Φ(δ√(n/2) − z_{1−α'/2}) + Φ(−δ√(n/2) − z_{1−α'/2}),
//!
//! statsmodels' `NormalIndPower().power(δ, n, α', ratio=1, alternative="two-sided")`; the sample
//! size is the smallest integer n reaching the requested power. With several treatments the
//! level is split by Bonferroni, α' = α / treatments, so the family-wise error rate over the
//! treatment comparisons stays ≤ α. The t-test's exact power would need a handful more contexts
//! only when n is in the tens.
//!
//! # Example
//!
//! ```
//! use vexil_stats::{MetricKind, Settings, Summary, compare};
//!
//! let control = Summary::conversions(10_000, 1_000);
//! let treatment = Summary::conversions(10_000, 1_120);
//! let result = compare(MetricKind::Conversion, &control, &treatment, &Settings::default())?;
//! assert!((result.relative_lift.unwrap() - 0.12).abs() < 1e-12);
//! assert!(result.relative_interval.unwrap().lower > 0.0); // agrees with the p-value
//! assert!(result.p_value < 0.01); // significant when read once …
//! assert!(result.sequential_p_value > result.p_value); // … and stricter when read any time
//! assert!(result.sequential_interval.lower < result.absolute_interval.lower);
//! # Ok::<(), vexil_stats::StatsError>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bayes;
mod compare;
mod dist;
mod error;
mod holm;
mod pairs;
mod power;
mod proportions;
mod quantile;
mod sequential;
mod srm;
mod summary;

pub use bayes::{Bayesian, bayesian};
pub use compare::{
    Alternative, Comparison, DEFAULT_MIXTURE_STD_DEV, Interval, MetricKind, RelativeUndefined,
    Settings, compare,
};
pub use error::StatsError;
pub use holm::holm;
pub use pairs::{PairSummary, compare_ratio, cuped};
pub use power::{Design, achieved_power, required_sample_size};
pub use quantile::{QuantileRanks, QuantileSummary, compare_quantiles, quantile_ranks};
pub use srm::{SRM_ALPHA, SampleRatio, sample_ratio_mismatch};
pub use summary::Summary;
