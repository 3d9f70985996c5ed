//! Branch-free `f32` approximations of `erf` and `exp` that the compiler vectorises.
//!
//! `libm`'s `erff`/`expf` are scalar calls with branches, so a loop over them runs one element
//! at a time. These are straight-line arithmetic on one element (clamps, fused multiply-adds,
//! one division, integer bit tricks): inside a function compiled for AVX2 + FMA the loops that
//! call them become 8-wide vector code. Both stay within a few ulp of the exact value (tested
//! against `f64` references below).

/// `erf(x)` as a rational function `x·P(x²)/Q(x²)` (P of degree 6, Q of degree 4 in `x²`), and
/// exactly ±1 beyond |x| = 3.9, where `erf` rounds to ±1 in `f32` (so `1 + erf(x)` vanishes
/// exactly for large negative `x`, as GELU needs). The coefficients are the minimax fit used by
/// Eigen and XLA for `f32`; absolute error below 4·10⁻⁷ (largest near |x| = 3.2, where
/// `erf` is within 10⁻⁵ of ±1).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906e-4,
        -2.954_600_2e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_3e-3,
        -1.426_474e-2,
    ];
    let clamped = x.clamp(-4.0, 4.0);
    let x2 = clamped * clamped;
    let p = P.iter().fold(0.0f32, |acc, &c| acc.mul_add(x2, c));
    let q = Q.iter().fold(0.0f32, |acc, &c| acc.mul_add(x2, c));
    if x.abs() >= 3.9 {
        1.0f32.copysign(x)
    } else {
        clamped * p / q
    }
}

/// `exp(x)` for `x ≤ 0` (what the GELU derivative needs): `2ⁿ·e^r` with `n = round(x/ln 2)`,
/// `|r| ≤ ln 2 / 2` and a degree-7 Taylor polynomial for `e^r` (relative error below 10⁻⁷).
/// Inputs below −87 give `e^−87 ≈ 1.6·10⁻³⁸` instead of a subnormal.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 0.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let poly = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ]
    .iter()
    .fold(0.0f32, |acc, &c| acc.mul_add(r, c));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    poly * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (converges on the whole tested range; the largest term
    /// at |x| = 4.5 is about 10⁷, so the cancellation leaves ~10⁻⁹ of accuracy).
    fn erf_reference(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn grid(from: f32, to: f32, steps: usize) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |i| from + (to - from) * i as f32 / steps as f32)
    }

    #[test]
    fn erf_matches_the_series_to_four_ten_millionths() {
        let worst = grid(-4.5, 4.5, 9001)
            .map(|x| (erf(x) as f64 - erf_reference(x as f64).clamp(-1.0, 1.0)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 4e-7, "max |erf error| {worst}");
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-30.0), -1.0);
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn exp_matches_f64_to_relative_two_ten_millionths() {
        let worst = grid(-87.0, 0.0, 20_000)
            .map(|x| {
                let exact = (x as f64).exp();
                (exp_nonpositive(x) as f64 - exact).abs() / exact
            })
            .fold(0.0, f64::max);
        assert!(worst < 2e-7, "max relative exp error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-200.0) < 1e-37);
    }
}
