#!/usr/bin/env python3
"""Regenerates reference.json: inputs and expected outputs for vexil-stats' reference tests.

Expected values come from scipy and statsmodels where they implement the statistic, and from
the documented closed forms otherwise (Fieller's interval and the mSPRT, in 50-digit decimal
arithmetic). This script never looks at the Rust code's output.

    python3 -m venv venv && venv/bin/pip install numpy scipy statsmodels
    venv/bin/python generate.py          # writes reference.json next to this file
"""

import json
import math
import warnings
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
from scipy import integrate, optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

SEED = 20261206
# Datasets up to this size are committed value by value so the test also checks
# Summary::from_values; larger ones only as sufficient statistics.
MAX_COMMITTED_VALUES = 200
# Fieller's interval is computed in decimal arithmetic with this many digits, so that means
# near 1e155 (whose squares overflow a double) get exact references too.
getcontext().prec = 50


def summary(values):
    """n, mean and Σ(x − mean)², from exactly rounded sums (math.fsum). Both are written as
    decimal strings that the test parses exactly (a JSON number may be rounded on parsing, and
    one unit in the last place of a mean near 1e9 is a relative 1e-6 of a lift of 0.1)."""
    values = np.asarray(values, dtype=float)
    mean = math.fsum(values) / values.size
    out = {
        "n": int(values.size),
        "mean": repr(mean),
        "squared_deviations": repr(math.fsum((values - mean) ** 2)),
    }
    if values.size <= MAX_COMMITTED_VALUES:
        out["values"] = values.tolist()
    return out


def fieller(mean_c, se_c, mean_t, se_t, critical):
    """Fieller's interval for mean_t/mean_c, minus 1, from the quadratic
    (a − ρb)² ≤ q²(v_a + ρ²v_b); None with a reason where it is not a bounded interval."""
    if mean_c == 0:
        return None, "control_mean_zero"
    if mean_t == 0 and se_t == 0:
        return None, "treatment_without_spread"
    a, b = Decimal(mean_t), Decimal(mean_c)
    q2 = Decimal(critical) ** 2
    v_a, v_b = Decimal(se_t) ** 2, Decimal(se_c) ** 2
    leading = b * b - q2 * v_b
    if leading <= 0:
        return None, "control_mean_unresolved"
    discriminant = (a * b) ** 2 - leading * (a * a - q2 * v_a)
    root = discriminant.sqrt()
    return [float((a * b - root) / leading - 1), float((a * b + root) / leading - 1)], None


def sequential(lift, var_c, n_c, var_t, n_t, alpha, rho, alternative="two-sided"):
    """mSPRT with a normal mixture, straight from the formulas (in decimal arithmetic); the
    one-sided version by numerical integration of the half-normal mixture."""
    if alternative != "two-sided":
        return sequential_one_sided(lift, var_c, n_c, var_t, n_t, alpha, rho, alternative)
    lift, v = Decimal(lift), Decimal(var_t) / n_t + Decimal(var_c) / n_c
    tau2 = Decimal(rho) ** 2 * (Decimal(var_c) + Decimal(var_t)) / 2
    log_ratio = (v / (v + tau2)).ln() / 2 + tau2 * lift**2 / (2 * v * (v + tau2))
    sequential_p = min(Decimal(1), (-log_ratio).exp())
    half = (v * (v + tau2) / tau2 * (2 * (1 / Decimal(alpha)).ln() + ((v + tau2) / v).ln())).sqrt()
    return {
        "sequential_p_value": float(sequential_p),
        "sequential_interval": [float(lift - half), float(lift + half)],
    }


def sequential_one_sided(lift, var_c, n_c, var_t, n_t, alpha, rho, alternative):
    """One-sided mSPRT: the likelihood ratio exp((θd − θ²/2)/V) of a lift θ against 0,
    integrated numerically (scipy quad) against a half-normal N(0, τ²) mixture on the side of
    the alternative; p = min(1, 1/Λ⁺), and the confidence bound the θ₀ where Λ⁺ = 1/α."""
    v = var_t / n_t + var_c / n_c
    tau2 = rho**2 * (var_c + var_t) / 2
    sign = 1.0 if alternative == "greater" else -1.0

    def log_mixture(difference):
        # In units of the standard error: x = d/√V, θ in standard errors, τ² over V.
        x, r = sign * difference / math.sqrt(v), tau2 / v

        def exponent(theta):
            return theta * x - theta**2 / 2 - theta**2 / (2 * r)

        peak = max(0.0, x / (1 + 1 / r))
        top = exponent(peak)
        width = 1 / math.sqrt(1 + 1 / r)
        integral, _ = integrate.quad(
            lambda theta: math.exp(exponent(theta) - top),
            0,
            math.inf,
            points=None,
            epsabs=0,
            epsrel=1e-12,
            limit=200,
        ) if peak == 0 else integrate.quad(
            lambda theta: math.exp(exponent(theta) - top),
            0,
            peak + 60 * width,
            points=[peak],
            epsabs=0,
            epsrel=1e-12,
            limit=200,
        )
        return top + math.log(integral * 2 / math.sqrt(2 * math.pi * r))

    log_ratio = log_mixture(lift)
    p_value = min(1.0, math.exp(-log_ratio))
    target = math.log(1 / alpha)
    # Λ⁺ grows with sign·(d − θ₀): the bound is where it reaches 1/α.
    margin = optimize.brentq(
        lambda m: log_mixture(sign * m) - target, 0.0, 100 * math.sqrt(v), xtol=1e-15 * math.sqrt(v)
    )
    bound = [lift - margin, "inf"] if alternative == "greater" else ["-inf", lift + margin]
    return {"sequential_p_value": p_value, "sequential_interval": bound}


def bayesian_normal(lift, spread, alpha):
    """Chance, expected losses and credible interval of a normal posterior N(lift, spread²)."""
    z = stats.norm.ppf(1 - alpha / 2)
    return {
        "chance_above": stats.norm.cdf(lift / spread),
        "expected_loss_above": spread * stats.norm.pdf(lift / spread)
        - lift * stats.norm.cdf(-lift / spread),
        "expected_loss_below": spread * stats.norm.pdf(lift / spread)
        + lift * stats.norm.cdf(lift / spread),
        "credible_interval": [lift - z * spread, lift + z * spread],
    }


def bayesian_conversions(conversions_c, n_c, conversions_t, n_t, alpha):
    """Beta(1, 1) priors: the chance and the expected losses integrated numerically (scipy
    quad over the Beta densities), the credible interval normal with the posterior's exact
    moments; the exact central interval too (roots of the integrated CDF of the difference),
    to measure that approximation."""
    a_c, b_c = 1 + conversions_c, 1 + n_c - conversions_c
    a_t, b_t = 1 + conversions_t, 1 + n_t - conversions_t
    control, treatment = stats.beta(a_c, b_c), stats.beta(a_t, b_t)
    mean_c, mean_t = control.mean(), treatment.mean()

    def over(density, f):
        low, high = density.ppf(1e-15), density.isf(1e-15)
        points = np.linspace(low, high, 9)[1:-1]
        value, _ = integrate.quad(
            lambda p: density.pdf(p) * f(p), low, high, points=points, epsabs=0, epsrel=1e-12,
            limit=1000,
        )
        return value

    chance = over(treatment, control.cdf)
    loss_above = over(treatment, lambda p: mean_c * stats.beta(a_c + 1, b_c).sf(p) - p * control.sf(p))
    loss_below = over(control, lambda q: mean_t * stats.beta(a_t + 1, b_t).sf(q) - q * treatment.sf(q))
    lift = mean_t - mean_c
    spread = math.sqrt(control.var() + treatment.var())
    z = stats.norm.ppf(1 - alpha / 2)

    def cdf_of_difference(d):
        return over(treatment, lambda p: control.sf(p - d))

    exact = [
        optimize.brentq(lambda d: cdf_of_difference(d) - q, -1, 1, xtol=1e-12)
        for q in (alpha / 2, 1 - alpha / 2)
    ]
    return {
        "chance_above": chance,
        "expected_loss_above": loss_above,
        "expected_loss_below": loss_below,
        "credible_interval": [lift - z * spread, lift + z * spread],
        "exact_credible_interval": exact,
    }


def one_sided(interval, alternative, lowest, highest):
    """The one-sided interval from the two-sided one at 2α: its far end at the limit."""
    if interval is None or alternative == "two-sided":
        return interval
    return [interval[0], highest] if alternative == "greater" else [lowest, interval[1]]


def flipped(alternative):
    return {"greater": "less", "less": "greater"}.get(alternative, alternative)


def welch_case(name, kind, control, treatment, alpha, rho, scale=1.0, alternative="two-sided"):
    """Welch's test by scipy, on the values divided by `scale` (the test is scale-equivariant:
    same p-value, interval times `scale`), for values whose squares would overflow in scipy."""
    control = np.asarray(control, dtype=float)
    treatment = np.asarray(treatment, dtype=float)
    result = stats.ttest_ind(
        treatment / scale, control / scale, equal_var=False, alternative=alternative
    )
    ci = result.confidence_interval(confidence_level=1 - alpha)
    ci = (ci.low * scale, ci.high * scale)
    tail = alpha / 2 if alternative == "two-sided" else alpha
    c, t = summary(control), summary(treatment)
    mean_c, mean_t = float(c["mean"]), float(t["mean"])
    var_c = float(c["squared_deviations"]) / (control.size - 1)
    var_t = float(t["squared_deviations"]) / (treatment.size - 1)
    se_c, se_t = math.sqrt(var_c / control.size), math.sqrt(var_t / treatment.size)
    relative_interval, undefined = fieller(
        mean_c, se_c, mean_t, se_t, stats.t.ppf(1 - tail, result.df)
    )
    # A negative control mean turns a rise of the absolute lift into a fall of the relative.
    relative_interval = one_sided(
        relative_interval, flipped(alternative) if mean_c < 0 else alternative, -math.inf, math.inf
    )
    expected = {
        "control_mean": mean_c,
        "treatment_mean": mean_t,
        "absolute_lift": mean_t - mean_c,
        "absolute_interval": list(ci),
        "p_value": result.pvalue,
        "standard_error": math.hypot(se_c, se_t),
        "degrees_of_freedom": result.df,
        "relative_lift": mean_t / mean_c - 1 if mean_c != 0 else None,
        "relative_interval": relative_interval,
        "relative_undefined": undefined,
    }
    expected.update(
        sequential(
            mean_t - mean_c, var_c, control.size, var_t, treatment.size, alpha, rho, alternative
        )
    )
    expected["bayesian"] = bayesian_normal(mean_t - mean_c, math.hypot(se_c, se_t), alpha)
    return {
        "name": name,
        "kind": kind,
        "alternative": alternative,
        "alpha": alpha,
        "mixture_std_dev": rho,
        "control": c,
        "treatment": t,
        "expected": to_float(expected),
    }


def score_interval(x_c, n_c, x_t, n_t, alpha, compare):
    """Miettinen–Nurminen score interval without the n/(n − 1) factor, for p_t − p_c or
    p_t/p_c, inverted with scipy's root finder on the restricted likelihood. Checked against
    statsmodels' `confint_proportions_2indep(method="score", correction=False)` for the ratio
    wherever statsmodels gives an answer, and against the closed-form cubic for the difference
    (see check_restricted_difference)."""
    crit = stats.norm.ppf(1 - alpha / 2)
    p_c, p_t = x_c / n_c, x_t / n_t

    def arm_score(x, n, p):
        successes = (x / p if p > 0 else math.inf) if x > 0 else 0.0
        failures = ((n - x) / (1 - p) if p < 1 else math.inf) if n > x else 0.0
        return successes - failures

    def restricted_rates(effect):
        if compare == "diff":
            low, high, rate_t, slope = max(0.0, -effect), min(1.0, 1 - effect), lambda q: q + effect, 1.0
        else:
            low, high, rate_t, slope = 0.0, min(1.0, 1 / effect), lambda q: effect * q, effect

        def derivative(q):
            return arm_score(x_c, n_c, q) + slope * arm_score(x_t, n_t, rate_t(q))

        inner_low, inner_high = np.nextafter(low, high), np.nextafter(high, low)
        if derivative(inner_low) <= 0:
            q = low
        elif derivative(inner_high) >= 0:
            q = high
        else:
            q = optimize.brentq(derivative, inner_low, inner_high, xtol=1e-300, rtol=1e-15)
        return q, rate_t(q)

    def score(effect):
        q_c, q_t = restricted_rates(effect)
        if compare == "diff":
            numerator = p_t - p_c - effect
            variance = q_t * (1 - q_t) / n_t + q_c * (1 - q_c) / n_c
        else:
            numerator = p_t - effect * p_c
            variance = q_t * (1 - q_t) / n_t + effect**2 * q_c * (1 - q_c) / n_c
        if variance > 0:
            return numerator / math.sqrt(variance)
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)

    if compare == "diff":
        estimate = p_t - p_c
        low = -1.0 if estimate <= -1 else optimize.brentq(
            lambda d: score(d) - crit, -1 + 1e-12, estimate, xtol=1e-15
        )
        high = 1.0 if estimate >= 1 else optimize.brentq(
            lambda d: score(d) + crit, estimate, 1 - 1e-12, xtol=1e-15
        )
    else:
        estimate = p_t / p_c
        low = 0.0 if estimate == 0 else math.exp(
            optimize.brentq(lambda r: score(math.exp(r)) - crit, -300, math.log(estimate), xtol=1e-14)
        )
        start = math.log(estimate) if estimate > 0 else -300
        high = math.exp(
            optimize.brentq(lambda r: score(math.exp(r)) + crit, start, 300, xtol=1e-14)
        )
    if compare == "ratio":
        check_against_statsmodels_ratio(x_c, n_c, x_t, n_t, alpha, low, high)
    else:
        for effect in (low, high):
            check_restricted_difference(x_c, n_c, x_t, n_t, effect, restricted_rates(effect))
    return low, high


def check_against_statsmodels_ratio(x_c, n_c, x_t, n_t, alpha, low, high):
    """statsmodels' score interval of the ratio, wherever it gives one (not at 0 % or 100 %)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = confint_proportions_2indep(
                x_t, n_t, x_c, n_c, method="score", compare="ratio", correction=False, alpha=alpha
            )
        except (ValueError, ZeroDivisionError):
            return
    # It fails in three ways: an exception, NaN, or a complex root at 100 %.
    if all(np.isreal(v) and math.isfinite(np.real(v)) for v in expected):
        assert np.allclose([low, high], expected, rtol=1e-7, atol=1e-12), (low, high, expected)


def check_restricted_difference(x_c, n_c, x_t, n_t, difference, rates):
    """The restricted rates of the difference against Miettinen and Nurminen's closed-form
    cubic, where its arccos is defined. statsmodels' copy of the cubic has a wrong linear
    coefficient (statsmodels issue 10269: count0 where nobs0 belongs), so its score interval
    of a difference is not used; the corrected coefficient is used here."""
    if difference == 0:
        return
    n, x = n_c + n_t, x_c + x_t
    a3 = n
    a2 = (n_t + 2 * n_c) * difference - n - x
    a1 = (n_c * difference - n - 2 * x_c) * difference + x
    a0 = x_c * difference * (1 - difference)
    v = (a2 / (3 * a3)) ** 3 - a1 * a2 / (6 * a3**2) + a0 / (2 * a3)
    u = math.copysign(math.sqrt(max((a2 / (3 * a3)) ** 2 - a1 / (3 * a3), 0.0)), v)
    if u == 0 or abs(v / u**3) > 1:
        return
    rate_c = 2 * u * math.cos((math.pi + math.acos(v / u**3)) / 3) - a2 / (3 * a3)
    assert abs(rate_c - rates[0]) < 1e-9, (difference, rate_c, rates)


def conversion_case(
    name, conversions_c, n_c, conversions_t, n_t, alpha, rho, alternative="two-sided"
):
    # Pooled test: statsmodels' default (prop_var=False pools the two samples). Both arms at
    # 0 % or both at 100 %: no difference can be seen, p = 1 (statsmodels gives NaN).
    if conversions_c + conversions_t in (0, n_c + n_t):
        p_value = 1.0
    else:
        _, p_value = proportions_ztest(
            [conversions_t, conversions_c],
            [n_t, n_c],
            alternative={"greater": "larger", "less": "smaller"}.get(alternative, alternative),
        )
    # One-sided bounds are the ends of the two-sided intervals at 2α.
    interval_alpha = alpha if alternative == "two-sided" else 2 * alpha
    low, high = one_sided(
        score_interval(conversions_c, n_c, conversions_t, n_t, interval_alpha, "diff"),
        alternative,
        -1.0,
        1.0,
    )
    p_c = conversions_c / n_c
    p_t = conversions_t / n_t
    if conversions_c == 0:
        relative_interval, undefined = None, "control_mean_zero"
    else:
        ratio_low, ratio_high = score_interval(
            conversions_c, n_c, conversions_t, n_t, interval_alpha, "ratio"
        )
        relative_interval = one_sided([ratio_low - 1, ratio_high - 1], alternative, -1.0, math.inf)
        undefined = None
    var_c = p_c * (1 - p_c)
    var_t = p_t * (1 - p_t)
    if var_c == 0 and var_t == 0:
        # Wald's variance is 0: the sequence uses the rates (x + 1)/(n + 2) instead.
        adjusted_c = (conversions_c + 1) / (n_c + 2)
        adjusted_t = (conversions_t + 1) / (n_t + 2)
        sequential_var_c = adjusted_c * (1 - adjusted_c)
        sequential_var_t = adjusted_t * (1 - adjusted_t)
    else:
        sequential_var_c, sequential_var_t = var_c, var_t
    expected = {
        "control_mean": p_c,
        "treatment_mean": p_t,
        "absolute_lift": p_t - p_c,
        "absolute_interval": [low, high],
        "p_value": p_value,
        "standard_error": math.sqrt(var_t / n_t + var_c / n_c),
        "relative_lift": p_t / p_c - 1 if p_c != 0 else None,
        "relative_interval": relative_interval,
        "relative_undefined": undefined,
    }
    expected.update(
        sequential(p_t - p_c, sequential_var_c, n_c, sequential_var_t, n_t, alpha, rho, alternative)
    )
    expected["bayesian"] = bayesian_conversions(conversions_c, n_c, conversions_t, n_t, alpha)

    def conversion_summary(conversions, n):
        out = {"n": n, "converted": conversions}
        if n <= MAX_COMMITTED_VALUES:
            out["values"] = [1.0] * conversions + [0.0] * (n - conversions)
        return out

    return {
        "name": name,
        "kind": "conversion",
        "alternative": alternative,
        "alpha": alpha,
        "mixture_std_dev": rho,
        "control": conversion_summary(conversions_c, n_c),
        "treatment": conversion_summary(conversions_t, n_t),
        "expected": to_float(expected),
    }


def ratio_summary(pairs):
    """n, the means and the (co-)deviations about them of per-context pairs, exactly rounded."""
    x, y = np.asarray(pairs, dtype=float).T
    mean_x, mean_y = math.fsum(x) / x.size, math.fsum(y) / y.size
    out = {
        "n": int(x.size),
        "mean_x": repr(mean_x),
        "mean_y": repr(mean_y),
        "squared_deviations_x": repr(math.fsum((x - mean_x) ** 2)),
        "squared_deviations_y": repr(math.fsum((y - mean_y) ** 2)),
        "co_deviations": repr(math.fsum((x - mean_x) * (y - mean_y))),
    }
    if x.size <= MAX_COMMITTED_VALUES:
        out["pairs"] = [[a, b] for a, b in zip(x.tolist(), y.tolist())]
    return out


def ratio_case(name, control_pairs, treatment_pairs, alpha, rho):
    """A ratio metric Σx/Σy by the delta method: each context's linearised value
    z = R + (x − R·y)/ȳ is computed explicitly here, and the z's are compared by scipy's Welch
    test, Fieller's interval and the mSPRT like a mean metric."""

    def linearised(pairs):
        x, y = np.asarray(pairs, dtype=float).T
        ratio = math.fsum(x) / math.fsum(y)
        return ratio + (x - ratio * y) / y.mean()

    case = welch_case(name, "mean", linearised(control_pairs), linearised(treatment_pairs), alpha, rho)
    case["kind"] = "ratio"
    case["control"] = ratio_summary(control_pairs)
    case["treatment"] = ratio_summary(treatment_pairs)
    return case


def cuped_case(name, control_pairs, treatment_pairs, alpha, rho):
    """CUPED: each context's metric x adjusted by its pre-exposure covariate y,
    z = x − θ(y − ȳ), θ the pooled within-arm regression slope and ȳ the pooled mean, computed
    here context by context; the z's are compared by scipy's Welch test like a mean metric."""
    arms = [np.asarray(pairs, dtype=float).T for pairs in (control_pairs, treatment_pairs)]
    co = sum(math.fsum((x - x.mean()) * (y - y.mean())) for x, y in arms)
    spread = sum(math.fsum((y - y.mean()) ** 2) for _, y in arms)
    theta = co / spread
    pooled = math.fsum(np.concatenate([y for _, y in arms])) / sum(y.size for _, y in arms)
    adjusted = [x - theta * (y - pooled) for x, y in arms]
    case = welch_case(name, "mean", adjusted[0], adjusted[1], alpha, rho)
    before = sum(math.fsum((x - x.mean()) ** 2) for x, _ in arms)
    after = sum(math.fsum((z - z.mean()) ** 2) for z in adjusted)
    case["kind"] = "cuped"
    case["control"] = ratio_summary(control_pairs)
    case["treatment"] = ratio_summary(treatment_pairs)
    case["expected"]["variance_reduction"] = 1 - after / before
    return case


def quantile_summary(values, level, alpha):
    """A variation of a quantile metric: the sample quantile (numpy's inverted_cdf, the value of
    rank ⌈n·p⌉) and the ends of scipy's distribution-free interval of the quantile at 1 − α."""
    values = np.asarray(values, dtype=float)
    interval = stats.quantile_test(values, q=0.0, p=level).confidence_interval(1 - alpha)
    out = {
        "n": int(values.size),
        "level": level,
        "alpha": alpha,
        "estimate": float(np.quantile(values, level, method="inverted_cdf")),
        "lower": float(interval.low),
        "upper": float(interval.high),
    }
    if values.size <= MAX_COMMITTED_VALUES:
        out["values"] = values.tolist()
    return out


def quantile_case(name, control, treatment, level, alpha, rho, alternative="two-sided"):
    """Quantiles compared by the normal approximation: each arm's standard error is its
    interval's width over 2·z_{1−α/2}; the difference is tested as a mean with those errors
    (scipy's Welch test from statistics, Fieller's interval, the mSPRT)."""
    c = quantile_summary(control, level, alpha)
    t = quantile_summary(treatment, level, alpha)
    z = stats.norm.isf(alpha / 2)
    se_c = (c["upper"] - c["lower"]) / (2 * z)
    se_t = (t["upper"] - t["lower"]) / (2 * z)
    n_c, n_t = c["n"], t["n"]
    q_c, q_t = c["estimate"], t["estimate"]
    test = stats.ttest_ind_from_stats(
        q_t, se_t * math.sqrt(n_t), n_t, q_c, se_c * math.sqrt(n_c), n_c,
        equal_var=False, alternative=alternative,
    )
    se = math.hypot(se_c, se_t)
    df = se**4 / (se_t**4 / (n_t - 1) + se_c**4 / (n_c - 1))
    tail = alpha / 2 if alternative == "two-sided" else alpha
    critical = stats.t.isf(tail, df)
    lift = q_t - q_c
    interval = one_sided([lift - critical * se, lift + critical * se], alternative, -math.inf, math.inf)
    relative_interval, undefined = fieller(q_c, se_c, q_t, se_t, critical)
    relative_interval = one_sided(
        relative_interval, flipped(alternative) if q_c < 0 else alternative, -math.inf, math.inf
    )
    expected = {
        "control_mean": q_c,
        "treatment_mean": q_t,
        "absolute_lift": lift,
        "absolute_interval": interval,
        "p_value": test.pvalue,
        "standard_error": se,
        "degrees_of_freedom": df,
        "relative_lift": q_t / q_c - 1 if q_c != 0 else None,
        "relative_interval": relative_interval,
        "relative_undefined": undefined,
    }
    expected.update(
        sequential(lift, se_c**2 * n_c, n_c, se_t**2 * n_t, n_t, alpha, rho, alternative)
    )
    expected["bayesian"] = bayesian_normal(lift, se, alpha)
    return {
        "name": name,
        "kind": "quantile",
        "alternative": alternative,
        "alpha": alpha,
        "mixture_std_dev": rho,
        "control": c,
        "treatment": t,
        "expected": to_float(expected),
    }


def quantile_rank_cases():
    """The 1-based ranks of scipy's interval ends (its 0-based indices plus one), or None where
    scipy gives NaN (too few values), for sizes from tiny to a million."""
    out = []
    for n in [5, 9, 20, 34, 35, 59, 100, 101, 999, 4_321, 100_000, 1_000_000]:
        for level in [0.01, 0.1, 0.5, 0.9, 0.99]:
            for confidence in [0.9, 0.95, 0.99]:
                bd = stats.binom(n, level)
                tail = (1 - confidence) / 2
                lower = int(bd.ppf(tail))
                upper = int(bd.isf(tail)) + 1
                # The same ends read through quantile_test on the values 1..n.
                interval = stats.quantile_test(np.arange(1.0, n + 1), q=0.0, p=level)
                interval = interval.confidence_interval(confidence)
                scipy_lower = None if math.isnan(interval.low) else int(interval.low)
                scipy_upper = None if math.isnan(interval.high) else int(interval.high)
                assert scipy_lower == (lower if lower >= 1 else None)
                assert scipy_upper == (upper if upper <= n else None)
                out.append(
                    {
                        "n": n,
                        "level": level,
                        "alpha": 1 - confidence,
                        "lower": scipy_lower,
                        "upper": scipy_upper,
                        "estimate": int(np.quantile(np.arange(1.0, n + 1), level, method="inverted_cdf")),
                    }
                )
    return out


def with_history(rng, n, lift, correlation):
    """Per user: this period's spend x and the pre-period's y, correlated: a user's level
    (lognormal) drives both, plus noise."""
    level = rng.lognormal(3.0, 0.6, n)
    before = level * rng.gamma(1 / (1 - correlation), 1 - correlation, n)
    after = level * (1 + lift) * rng.gamma(1 / (1 - correlation), 1 - correlation, n)
    return list(zip(np.round(after, 2).tolist(), np.round(before, 2).tolist()))


def sessions(rng, n, buy_rate, mean_amount):
    """Per user: sessions (1 + Poisson(2)) and revenue (each session buys with buy_rate)."""
    pairs = []
    for _ in range(n):
        count = 1 + rng.poisson(2.0)
        revenue = sum(rng.exponential(mean_amount) for _ in range(count) if rng.random() < buy_rate)
        pairs.append((round(revenue, 2), float(count)))
    return pairs


def to_float(value):
    """Numbers as floats; an infinite one as the string "inf" or "-inf" (JSON has none)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: to_float(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_float(item) for item in value]
    return float(value)


def comparisons(rng):
    cases = [
        welch_case("small", "mean", rng.normal(10, 3, 12), rng.normal(11, 3.5, 15), 0.05, 0.04),
        welch_case(
            "small_alpha_0.01_wide_mixture",
            "mean",
            rng.normal(5, 1, 30),
            rng.normal(5.6, 1.5, 25),
            0.01,
            0.5,
        ),
        welch_case(
            "unbalanced_lognormal",
            "mean",
            rng.lognormal(1.0, 0.8, 40),
            rng.lognormal(1.1, 0.8, 400),
            0.05,
            0.04,
        ),
        welch_case(
            "large", "mean", rng.normal(50, 20, 100_000), rng.normal(50.3, 20, 100_000), 0.05, 0.04
        ),
        welch_case(
            "tiny_effect",
            "mean",
            rng.normal(100, 10, 50_000),
            rng.normal(100.01, 10, 50_000),
            0.05,
            0.02,
        ),
        welch_case(
            "revenue_mostly_zero",
            "mean",
            rng.exponential(30, 20_000) * (rng.random(20_000) < 0.05),
            rng.exponential(32, 18_000) * (rng.random(18_000) < 0.05),
            0.1,
            0.04,
        ),
        welch_case("counts", "count", rng.poisson(2.0, 5_000), rng.poisson(2.1, 5_000), 0.05, 0.04),
        welch_case(
            "counts_small_unbalanced", "count", rng.poisson(3.0, 9), rng.poisson(2.0, 60), 0.05, 0.1
        ),
        conversion_case("conversion_small", 12, 40, 20, 45, 0.05, 0.04),
        conversion_case("conversion_large", 5_000, 100_000, 5_200, 100_000, 0.05, 0.04),
        conversion_case("conversion_unbalanced", 30, 1_000, 400, 9_000, 0.05, 0.04),
        conversion_case("conversion_tiny_effect", 100_000, 1_000_000, 100_500, 1_000_000, 0.05, 0.01),
        conversion_case("conversion_alpha_0.01_negative", 900, 3_000, 820, 3_100, 0.01, 0.2),
        # The edges: large means against a small spread, zero means, 0 % and 100 % rates,
        # a control mean indistinguishable from 0, values whose squares overflow a double.
        welch_case(
            "near_1e9_plus_minus_1",
            "mean",
            1e9 + rng.normal(0, 1, 5_000),
            1e9 + 0.1 + rng.normal(0, 1, 5_000),
            0.05,
            0.04,
        ),
        welch_case(
            "timestamps_ms",
            "mean",
            1.7e12 + rng.normal(0, 250, 150),
            1.7e12 + 100 + rng.normal(0, 250, 160),
            0.05,
            0.04,
        ),
        welch_case(
            "cents_large_baseline",
            "mean",
            np.round(2.5e7 + rng.exponential(300, 30_000)),
            np.round(2.5e7 + rng.exponential(310, 30_000)),
            0.05,
            0.04,
        ),
        welch_case(
            "treatment_all_zero", "mean", rng.exponential(5, 50), np.zeros(60), 0.05, 0.04
        ),
        welch_case("control_all_zero", "count", np.zeros(80), rng.poisson(0.3, 90), 0.05, 0.04),
        welch_case(
            "control_mean_unresolved",
            "mean",
            rng.normal(0.05, 1, 40),
            rng.normal(0.5, 1, 40),
            0.05,
            0.04,
        ),
        welch_case(
            "negative_control_mean",
            "mean",
            rng.normal(-20, 4, 300),
            rng.normal(-19, 4, 300),
            0.05,
            0.04,
        ),
        welch_case(
            "values_near_1e155",
            "mean",
            1e155 * (1 + 1e-5 * rng.normal(0, 1, 100)),
            1e155 * (1 + 4e-6 + 1e-5 * rng.normal(0, 1, 100)),
            0.05,
            0.04,
            scale=1e150,
        ),
        conversion_case("conversion_treatment_none", 9, 120, 0, 115, 0.05, 0.04),
        conversion_case("conversion_control_none", 0, 200, 4, 210, 0.05, 0.04),
        conversion_case("conversion_both_none", 0, 50, 0, 60, 0.05, 0.04),
        conversion_case("conversion_both_all", 40, 40, 35, 35, 0.05, 0.04),
        conversion_case("conversion_treatment_all", 25, 30, 30, 30, 0.1, 0.04),
        conversion_case("conversion_tiny_n", 1, 5, 3, 6, 0.05, 0.04),
        # One-sided: p-values in one direction, lower (or upper) bounds.
        welch_case(
            "one_sided_greater",
            "mean",
            rng.normal(10, 3, 25),
            rng.normal(11.5, 3, 30),
            0.05,
            0.3,
            alternative="greater",
        ),
        welch_case(
            "one_sided_less_counts",
            "count",
            rng.poisson(4.0, 2_000),
            rng.poisson(3.8, 2_100),
            0.05,
            0.04,
            alternative="less",
        ),
        welch_case(
            "one_sided_greater_wrong_way",
            "mean",
            rng.normal(100, 15, 400),
            rng.normal(97, 15, 400),
            0.1,
            0.04,
            alternative="greater",
        ),
        welch_case(
            "one_sided_negative_control",
            "mean",
            rng.normal(-50, 10, 200),
            rng.normal(-47, 10, 200),
            0.05,
            0.04,
            alternative="greater",
        ),
        conversion_case("one_sided_conversion_greater", 90, 1_000, 118, 1_000, 0.05, 0.04, "greater"),
        conversion_case("one_sided_conversion_less_none", 8, 100, 0, 100, 0.05, 0.04, "less"),
        # Ratio metrics: revenue per session, correlated with sessions per user.
        ratio_case(
            "ratio_revenue_per_session",
            sessions(rng, 3_000, 0.1, 40.0),
            sessions(rng, 3_000, 0.12, 40.0),
            0.05,
            0.04,
        ),
        ratio_case(
            "ratio_small",
            sessions(rng, 60, 0.3, 20.0),
            sessions(rng, 70, 0.3, 25.0),
            0.05,
            0.04,
        ),
        # CUPED: spend adjusted by the same users' spend before the experiment.
        cuped_case(
            "cuped_spend",
            with_history(rng, 2_000, 0.0, 0.8),
            with_history(rng, 2_000, 0.03, 0.8),
            0.05,
            0.04,
        ),
        cuped_case(
            "cuped_small",
            with_history(rng, 40, 0.0, 0.5),
            with_history(rng, 50, 0.1, 0.5),
            0.05,
            0.04,
        ),
        # Quantile metrics: latencies (lognormal), p50 and p90, and a p99 of a large sample.
        quantile_case(
            "quantile_p90_latency",
            rng.lognormal(5.0, 0.5, 3_000),
            rng.lognormal(5.05, 0.5, 3_200),
            0.9,
            0.05,
            0.04,
        ),
        quantile_case(
            "quantile_median_small",
            rng.lognormal(3.0, 0.8, 60),
            rng.lognormal(3.4, 0.8, 70),
            0.5,
            0.05,
            0.04,
        ),
        quantile_case(
            "quantile_p99_large",
            rng.gamma(2.0, 50.0, 200_000),
            rng.gamma(2.0, 49.0, 200_000),
            0.99,
            0.01,
            0.02,
        ),
        quantile_case(
            "quantile_p10_one_sided",
            rng.normal(100, 15, 800),
            rng.normal(97, 15, 850),
            0.1,
            0.05,
            0.04,
            alternative="less",
        ),
    ]
    return cases


def srm_cases():
    cases = [
        ("even_50_50", [100_000, 100_000], [50, 50]),
        ("flagged_50.5_49.5", [101_000, 99_000], [50, 50]),
        ("small_off", [510, 490], [0.5, 0.5]),
        ("three_way_weights", [20_150, 19_870, 59_980], [1, 1, 3]),
        ("three_way_broken", [21_000, 19_000, 60_000], [20, 20, 60]),
        ("tiny", [3, 9], [1, 1]),
        ("uneven_10_90", [1_030, 8_970], [10, 90]),
    ]
    out = []
    for name, observed, weights in cases:
        total = sum(observed)
        expected = [total * w / sum(weights) for w in weights]
        result = stats.chisquare(observed, expected)
        out.append(
            {
                "name": name,
                "observed": observed,
                "weights": [float(w) for w in weights],
                "expected": {
                    "chi_square": float(result.statistic),
                    "degrees_of_freedom": len(observed) - 1,
                    "p_value": float(result.pvalue),
                    "mismatch": bool(result.pvalue < 0.001),
                },
            }
        )
    return out


def holm_cases(rng):
    lists = [
        [0.01, 0.04, 0.03, 0.005],
        [0.5],
        [0.001, 0.001, 0.2, 0.049, 0.9, 0.0004],
        [0.04, 0.04, 0.04],
        rng.random(25).tolist(),
        (rng.random(12) * 0.02).tolist(),
    ]
    return [
        {"p_values": p, "expected": multipletests(p, method="holm")[1].tolist()} for p in lists
    ]


def power_cases():
    designs = [
        ("conversion", 0.10, None, 0.05, 0.05, 0.8, 1, 5_000),
        ("conversion", 0.02, None, 0.10, 0.05, 0.9, 1, 50_000),
        ("conversion", 0.30, None, -0.04, 0.01, 0.8, 3, 10_000),
        ("conversion", 0.5, None, 0.2, 0.05, 0.8, 2, 100),
        ("mean", 50.0, 20.0, 0.01, 0.05, 0.8, 1, 20_000),
        ("mean", 12.5, 40.0, 0.05, 0.1, 0.95, 4, 1_000),
        ("count", 2.0, 1.5, 0.03, 0.05, 0.8, 1, 7_777),
        ("count", 10.0, 3.0, 0.2, 0.05, 0.8, 1, 30),
        # One-sided: the whole α in the direction of the effect.
        ("conversion", 0.10, None, 0.05, 0.05, 0.8, 1, 5_000, "larger"),
        ("mean", 12.5, 40.0, -0.05, 0.05, 0.9, 2, 1_000, "larger"),
    ]
    out = []
    power_analysis = NormalIndPower()
    for kind, baseline, std_dev, mde, alpha, power, treatments, other_n, *sides in designs:
        alternative = sides[0] if sides else "two-sided"
        if kind == "conversion":
            p1, p2 = baseline, baseline * (1 + mde)
            effect = (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
        else:
            effect = baseline * mde / std_dev
        split_alpha = alpha / treatments
        n = power_analysis.solve_power(
            effect_size=abs(effect), alpha=split_alpha, power=power, ratio=1.0, alternative=alternative
        )
        required = max(2, math.ceil(n))

        def power_at(contexts):
            return float(
                power_analysis.power(
                    abs(effect), nobs1=contexts, alpha=split_alpha, ratio=1.0, alternative=alternative
                )
            )

        out.append(
            {
                "design": {
                    "kind": kind,
                    "baseline_mean": baseline,
                    "baseline_std_dev": std_dev,
                    "minimum_detectable_effect": mde,
                    "alpha": alpha,
                    "power": power,
                    "treatments": treatments,
                    "one_sided": alternative != "two-sided",
                },
                "expected": {
                    "required_sample_size": required,
                    "solved_sample_size": float(n),
                    "power_at_required": power_at(required),
                    "contexts": other_n,
                    "power_at_contexts": power_at(other_n),
                },
            }
        )
    return out


def tail_cases():
    """Distribution tails far beyond what a 95 % interval needs, to measure (not assume) the
    precision the engine gives there."""
    degrees = [1.0, 2.5, 10.0, 100.0, 1e4, 5e5, 2e6, 1e9]
    t_p = [
        {"t": t, "degrees_of_freedom": df, "p_value": float(2 * stats.t.sf(t, df))}
        for t in [0.5, 2.0, 5.0, 10.0, 30.0]
        for df in degrees
        if 2 * stats.t.sf(t, df) > 1e-300
    ]
    t_quantile = [
        {"upper_tail": q, "degrees_of_freedom": df, "t": float(stats.t.isf(q, df))}
        for q in [0.025, 1e-4, 1e-8, 1e-15]
        for df in degrees
    ]
    normal = [{"z": z, "sf": float(stats.norm.sf(z))} for z in [0.5, 1.96, 4.0, 8.0, 15.0, 25.0, 37.0]]
    chi_square = [
        {"x": x, "degrees_of_freedom": df, "sf": float(stats.chi2.sf(x, df))}
        for x in [0.5, 5.0, 30.0, 200.0]
        for df in [1, 2, 4, 20]
    ]
    return {"t_p_value": t_p, "t_quantile": t_quantile, "normal_sf": normal, "chi_square_sf": chi_square}


def main():
    rng = np.random.default_rng(SEED)
    reference = {
        "generated_by": "generate.py with numpy %s, scipy %s, statsmodels %s"
        % (np.__version__, __import__("scipy").__version__, __import__("statsmodels").__version__),
        "comparisons": comparisons(rng),
        "sample_ratio": srm_cases(),
        "holm": holm_cases(rng),
        "quantile_ranks": quantile_rank_cases(),
        "power": power_cases(),
        "tails": tail_cases(),
    }
    path = Path(__file__).with_name("reference.json")
    path.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
