//! A small seeded generator shared by the test files (each uses part of it).
#![allow(dead_code)]

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, reproducible, good enough for Monte
/// Carlo and for picking awkward inputs.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One of `values`, uniformly.
    pub fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[(self.next_u64() % values.len() as u64) as usize]
    }

    /// A pair of independent standard normals by the Box–Muller transform.
    pub fn normal_pair(&mut self) -> (f64, f64) {
        let radius = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.uniform();
        (radius * angle.cos(), radius * angle.sin())
    }

    /// One standard normal (the second of the pair is dropped: simple, and speed does not
    /// matter here).
    pub fn normal(&mut self) -> f64 {
        self.normal_pair().0
    }

    /// An exponential value with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }

    /// 1 with probability `rate`, else 0.
    pub fn bernoulli(&mut self, rate: f64) -> f64 {
        f64::from(u8::from(self.uniform() < rate))
    }
}
