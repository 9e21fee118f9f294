//! Sufficient statistics of one variation for one metric, kept in a numerically stable form.

/// Sufficient statistics of one variation for one metric over its exposed contexts: the number
/// of contexts n, the mean x̄ and the sum of squared deviations from it, M₂ = Σ(xᵢ − x̄)².
///
/// Why not n, Σx and Σx²: the variance rebuilt from raw sums, (Σx² − (Σx)²/n)/(n − 1),
/// subtracts two numbers of size n·x̄² to find one of size n·s². When the mean is large against
/// the spread (amounts in cents around a large baseline, timestamps, values near 10⁹ ± 1) the
/// digits that matter cancel and the variance comes out as noise, zero or negative. Moments
/// about the mean keep them: values are added one at a time by Welford's update and summaries of
/// disjoint sets of contexts are merged exactly by Chan, Golub and LeVeque's formula
/// ([`Summary::merge`]), which is how roll-ups combine.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Summary {
    /// Number of contexts.
    pub n: u64,
    /// Mean of the per-context values (0 when n = 0).
    pub mean: f64,
    /// Σ(xᵢ − x̄)² over the per-context values (0 when n < 2).
    pub squared_deviations: f64,
}

impl Summary {
    /// The summary of a list of per-context values.
    pub fn from_values(values: &[f64]) -> Summary {
        let mut summary = Summary::default();
        for &value in values {
            summary.add(value);
        }
        summary
    }

    /// The summary of a conversion metric: `converted` of `n` contexts have the value 1, the
    /// others 0. `converted` above `n` is kept as given, for [`crate::compare`] to refuse.
    pub fn conversions(n: u64, converted: u64) -> Summary {
        if n == 0 {
            return Summary::default();
        }
        let rate = converted as f64 / n as f64;
        Summary {
            n,
            mean: rate,
            // Σ(x − p)² over n·p ones and n·(1 − p) zeros is n·p·(1 − p).
            squared_deviations: (n as f64 * rate * (1.0 - rate)).max(0.0),
        }
    }

    /// The summary from sums of values shifted by a constant K: n, Σ(x − K) and Σ(x − K)².
    ///
    /// With K near the mean (any one of the values, or a mean computed beforehand) the
    /// subtraction Σ(x − K)² − (Σ(x − K))²/n loses nothing that matters; with K = 0 these are
    /// raw sums and the cancellation described on [`Summary`] applies. This is how the server
    /// reads its SQL aggregates, which are shifted by each variation's mean.
    pub fn from_shifted_sums(
        n: u64,
        shift: f64,
        shifted_sum: f64,
        shifted_sum_squares: f64,
    ) -> Summary {
        if n == 0 {
            return Summary::default();
        }
        let count = n as f64;
        let offset = shifted_sum / count;
        Summary {
            n,
            mean: shift + offset,
            squared_deviations: if n < 2 {
                0.0
            } else {
                (shifted_sum_squares - shifted_sum * offset).max(0.0)
            },
        }
    }

    /// The summary from raw sums n, Σx and Σx²: [`Summary::from_shifted_sums`] with K = 0, so
    /// only as precise as those sums (see [`Summary`]).
    pub fn from_sums(n: u64, sum: f64, sum_squares: f64) -> Summary {
        Summary::from_shifted_sums(n, 0.0, sum, sum_squares)
    }

    /// Adds one context's value (Welford's update).
    pub fn add(&mut self, value: f64) {
        self.n += 1;
        let delta = value - self.mean;
        self.mean += delta / self.n as f64;
        self.squared_deviations += delta * (value - self.mean);
    }

    /// Merges the summary of a disjoint set of contexts into this one (Chan, Golub and LeVeque,
    /// 1979): M₂ = M₂ₐ + M₂ᵦ + δ²·nₐ·nᵦ/n with δ = x̄ᵦ − x̄ₐ.
    pub fn merge(&mut self, other: &Summary) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (count_a, count_b) = (self.n as f64, other.n as f64);
        let total = count_a + count_b;
        let delta = other.mean - self.mean;
        self.mean += delta * (count_b / total);
        self.squared_deviations +=
            other.squared_deviations + delta * delta * (count_a * count_b / total);
        self.n += other.n;
    }

    /// The mean x̄; 0 for an empty summary (never NaN).
    pub fn mean(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.mean }
    }

    /// Σx = n·x̄.
    pub fn sum(&self) -> f64 {
        self.n as f64 * self.mean()
    }

    /// The sample variance s² = M₂ / (n − 1); 0 when n < 2.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.squared_deviations / (self.n - 1) as f64).max(0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_mean_keeps_its_variance() {
        // Values 10⁹ + {0, 1, 2, 3}: variance 5/3. Raw sums lose it entirely.
        let values: Vec<f64> = (0..4).map(|i| 1e9 + f64::from(i)).collect();
        let stable = Summary::from_values(&values);
        assert!((stable.variance() - 5.0 / 3.0).abs() < 1e-9, "{stable:?}");
        let sum: f64 = values.iter().sum();
        let sum_squares: f64 = values.iter().map(|x| x * x).sum();
        let raw = Summary::from_sums(4, sum, sum_squares);
        assert!((raw.variance() - 5.0 / 3.0).abs() > 0.1, "{raw:?}");
        let shifted = Summary::from_shifted_sums(
            4,
            1e9,
            values.iter().map(|x| x - 1e9).sum(),
            values.iter().map(|x| (x - 1e9) * (x - 1e9)).sum(),
        );
        assert!((shifted.variance() - 5.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn merging_equals_adding_one_by_one() {
        let values: Vec<f64> = (0..1000).map(|i| 5e8 + f64::from(i % 37) * 0.25).collect();
        let whole = Summary::from_values(&values);
        let mut merged = Summary::default();
        for chunk in values.chunks(77) {
            merged.merge(&Summary::from_values(chunk));
        }
        assert_eq!(merged.n, whole.n);
        assert!((merged.mean - whole.mean).abs() < 1e-6);
        // Both carry the rounding of means near 5e8 (a relative 1e-16), about 1e-8 of a deviation.
        assert!((merged.variance() / whole.variance() - 1.0).abs() < 1e-7);
    }

    #[test]
    fn conversions_are_bernoulli_moments() {
        let summary = Summary::conversions(10, 3);
        let from_values = Summary::from_values(&[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!((summary.mean - from_values.mean).abs() < 1e-15);
        assert!((summary.squared_deviations - from_values.squared_deviations).abs() < 1e-12);
        assert_eq!(Summary::conversions(0, 0), Summary::default());
    }
}
