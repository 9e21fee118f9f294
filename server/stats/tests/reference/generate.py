#!/usr/bin/env python3
"""Regenerates reference.json: inputs and expected outputs for vexil-stats' reference tests.

Expected values come from scipy and statsmodels where they implement the statistic, and from
the documented closed forms in numpy otherwise (delta-method relative interval, mSPRT). This
script never looks at the Rust code's output.

    python3 -m venv venv && venv/bin/pip install numpy scipy statsmodels
    venv/bin/python generate.py          # writes reference.json next to this file
"""

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

SEED = 20261122
# Datasets up to this size are committed value by value so the test also checks
# Summary::from_values; larger ones only as sufficient statistics.
MAX_COMMITTED_VALUES = 200


def summary(values):
    values = np.asarray(values, dtype=float)
    out = {
        "n": int(values.size),
        "sum": math.fsum(values),
        "sum_squares": math.fsum(values * values),
    }
    if values.size <= MAX_COMMITTED_VALUES:
        out["values"] = values.tolist()
    return out


def relative_and_sequential(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha, rho):
    """Delta-method relative interval and mSPRT (normal mixture), straight from the formulas."""
    z = stats.norm.ppf(1 - alpha / 2)
    relative = mean_t / mean_c - 1
    relative_var = var_t / (n_t * mean_c**2) + mean_t**2 * var_c / (n_c * mean_c**4)
    relative_half = z * np.sqrt(relative_var)

    lift = mean_t - mean_c
    v = var_t / n_t + var_c / n_c
    tau2 = rho**2 * (var_c + var_t) / 2
    likelihood_ratio = np.sqrt(v / (v + tau2)) * np.exp(tau2 * lift**2 / (2 * v * (v + tau2)))
    sequential_p = min(1.0, 1.0 / likelihood_ratio)
    half = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    return {
        "relative_lift": relative,
        "relative_interval": [relative - relative_half, relative + relative_half],
        "sequential_p_value": float(sequential_p),
        "sequential_interval": [lift - half, lift + half],
    }


def welch_case(name, kind, control, treatment, alpha, rho):
    control = np.asarray(control, dtype=float)
    treatment = np.asarray(treatment, dtype=float)
    result = stats.ttest_ind(treatment, control, equal_var=False)
    ci = result.confidence_interval(confidence_level=1 - alpha)
    var_c = control.var(ddof=1)
    var_t = treatment.var(ddof=1)
    expected = {
        "control_mean": control.mean(),
        "treatment_mean": treatment.mean(),
        "absolute_lift": treatment.mean() - control.mean(),
        "absolute_interval": [ci.low, ci.high],
        "p_value": result.pvalue,
        "standard_error": math.sqrt(var_t / treatment.size + var_c / control.size),
        "degrees_of_freedom": result.df,
    }
    expected.update(
        relative_and_sequential(
            control.mean(), var_c, control.size, treatment.mean(), var_t, treatment.size, alpha, rho
        )
    )
    return {
        "name": name,
        "kind": kind,
        "alpha": alpha,
        "mixture_std_dev": rho,
        "control": summary(control),
        "treatment": summary(treatment),
        "expected": to_float(expected),
    }


def conversion_case(name, conversions_c, n_c, conversions_t, n_t, alpha, rho):
    # Pooled test: statsmodels' default (prop_var=False pools the two samples).
    _, p_value = proportions_ztest([conversions_t, conversions_c], [n_t, n_c])
    low, high = confint_proportions_2indep(
        conversions_t, n_t, conversions_c, n_c, method="wald", compare="diff", alpha=alpha
    )
    p_c = conversions_c / n_c
    p_t = conversions_t / n_t
    var_c = p_c * (1 - p_c)
    var_t = p_t * (1 - p_t)
    expected = {
        "control_mean": p_c,
        "treatment_mean": p_t,
        "absolute_lift": p_t - p_c,
        "absolute_interval": [low, high],
        "p_value": p_value,
        "standard_error": math.sqrt(var_t / n_t + var_c / n_c),
    }
    expected.update(relative_and_sequential(p_c, var_c, n_c, p_t, var_t, n_t, alpha, rho))

    def conversion_summary(conversions, n):
        out = {"n": n, "sum": float(conversions), "sum_squares": float(conversions)}
        if n <= MAX_COMMITTED_VALUES:
            out["values"] = [1.0] * conversions + [0.0] * (n - conversions)
        return out

    return {
        "name": name,
        "kind": "conversion",
        "alpha": alpha,
        "mixture_std_dev": rho,
        "control": conversion_summary(conversions_c, n_c),
        "treatment": conversion_summary(conversions_t, n_t),
        "expected": to_float(expected),
    }


def to_float(value):
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
    ]
    out = []
    power_analysis = NormalIndPower()
    for kind, baseline, std_dev, mde, alpha, power, treatments, other_n in designs:
        if kind == "conversion":
            p1, p2 = baseline, baseline * (1 + mde)
            effect = (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
        else:
            effect = baseline * mde / std_dev
        split_alpha = alpha / treatments
        n = power_analysis.solve_power(
            effect_size=abs(effect), alpha=split_alpha, power=power, ratio=1.0, alternative="two-sided"
        )
        required = max(2, math.ceil(n))

        def power_at(contexts):
            return float(
                power_analysis.power(
                    abs(effect), nobs1=contexts, alpha=split_alpha, ratio=1.0, alternative="two-sided"
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


def main():
    rng = np.random.default_rng(SEED)
    reference = {
        "generated_by": "generate.py with numpy %s, scipy %s, statsmodels %s"
        % (np.__version__, __import__("scipy").__version__, __import__("statsmodels").__version__),
        "comparisons": comparisons(rng),
        "sample_ratio": srm_cases(),
        "holm": holm_cases(rng),
        "power": power_cases(),
    }
    path = Path(__file__).with_name("reference.json")
    path.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
