//! Holm–Bonferroni correction for multiple comparisons.

/// Holm–Bonferroni adjusted p-values, in the order given.
///
/// With the m p-values sorted ascending, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value of p₍ᵢ₎ is
/// min(1, maxⱼ≤ᵢ (m − j + 1) p₍ⱼ₎). Rejecting every hypothesis whose adjusted p-value is below α
/// controls the family-wise error rate at α (Holm, 1979).
///
/// Inputs outside [0, 1] are clamped into it and a NaN counts as 1 (no evidence), so the output
/// never holds a NaN.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let clean: Vec<f64> = p_values
        .iter()
        .map(|&p| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) })
        .collect();
    let m = clean.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| clean[a].total_cmp(&clean[b]));
    let mut adjusted = vec![0.0; m];
    let mut running_max: f64 = 0.0;
    for (rank, &index) in order.iter().enumerate() {
        let scaled = ((m - rank) as f64 * clean[index]).min(1.0);
        running_max = running_max.max(scaled);
        adjusted[index] = running_max;
    }
    adjusted
}
