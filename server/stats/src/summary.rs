//! Sufficient statistics of one variation for one metric.

/// Sufficient statistics of one variation for one metric over its exposed contexts.
///
/// `n` is the number of contexts, `sum` is Σ xᵢ over their per-context values and
/// `sum_squares` is Σ xᵢ². For a conversion metric the values are 0 or 1, so `sum` is the
/// number of converted contexts and equals `sum_squares`. Summaries of disjoint sets of contexts
/// add field by field, which is how the server rolls them up.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Summary {
    /// Number of contexts.
    pub n: u64,
    /// Σ of per-context values.
    pub sum: f64,
    /// Σ of squared per-context values.
    pub sum_squares: f64,
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

    /// Adds one context's value.
    pub fn add(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.sum_squares += value * value;
    }

    /// The mean x̄ = Σx / n; 0 for an empty summary (never NaN).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }

    /// The sample variance s² = (Σx² − (Σx)²/n) / (n − 1); 0 when n < 2. Rounding can make the
    /// numerator slightly negative for constant data, so it is clamped at 0.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        let centred = self.sum_squares - self.sum * (self.sum / n);
        (centred / (n - 1.0)).max(0.0)
    }
}
