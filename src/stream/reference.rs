//! CPU side of the stream suite: fresh random inputs and the reference results the GPU output is
//! compared with. Parallel with rayon: a 4 GiB case checks in seconds.

use rayon::prelude::*;

use crate::numeric::{splitmix64, SPLITMIX64_GAMMA};
use crate::suite::Check;

/// Fills `out` with pseudo-random words from `seed` (SplitMix64 per index: parallel and fresh
/// for every seed, so no two runs compare against the same data).
pub fn random_words(seed: u64, len: usize) -> Vec<u32> {
    let mut out = vec![0u32; len];
    out.par_iter_mut().enumerate().for_each(|(i, w)| {
        *w = splitmix64(seed ^ (i as u64).wrapping_mul(SPLITMIX64_GAMMA)) as u32
    });
    out
}

/// Random floats in [-1, 1).
pub fn random_floats(seed: u64, len: usize) -> Vec<f32> {
    random_words(seed, len)
        .into_par_iter()
        .map(|w| (w >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
        .collect()
}

/// Exact sum of all words, wrapping like the kernel's u64 accumulators (integer addition is
/// associative, so the GPU's order does not matter and the check is exact).
pub fn word_sum(words: &[u32]) -> u64 {
    words
        .par_iter()
        .map(|&w| u64::from(w))
        .reduce(|| 0, u64::wrapping_add)
}

/// Compares the read kernel's per-block partial sums with the CPU sum.
pub fn check_sum(block_partials: &[u64], words: &[u32]) -> Check {
    let gpu = block_partials.iter().fold(0u64, |a, &b| a.wrapping_add(b));
    let cpu = word_sum(words);
    Check {
        passed: gpu == cpu,
        max_rel_err: if gpu == cpu {
            0.0
        } else {
            (gpu as f64 - cpu as f64).abs() / (cpu as f64).max(1.0)
        },
        detail: format!(
            "sum of {} words over {} blocks: gpu {gpu}, cpu {cpu}",
            words.len(),
            block_partials.len()
        ),
        accuracy: None,
    }
}

/// Exact element-wise equality (copy, fill).
pub fn check_equal(got: &[u32], want: impl Fn(usize) -> u32 + Sync) -> Check {
    let mismatches: Vec<usize> = got
        .par_iter()
        .enumerate()
        .filter(|&(i, &g)| g != want(i))
        .map(|(i, _)| i)
        .collect();
    let detail = match mismatches.iter().min() {
        None => format!("{} elements equal", got.len()),
        Some(&i) => format!(
            "{} of {} elements differ; first at {i}: got {:#010x}, want {:#010x}",
            mismatches.len(),
            got.len(),
            got[i],
            want(i)
        ),
    };
    Check {
        passed: mismatches.is_empty(),
        max_rel_err: if mismatches.is_empty() { 0.0 } else { 1.0 },
        detail,
        accuracy: None,
    }
}

/// a = b + s*c against an f64 reference. The kernel computes fma(s, c, b) in f32: one rounding,
/// so |a - exact| <= u |exact| with u = 2^-24. The bound allowed is 2u(|b| + |s c|): it also
/// admits a non-fused a = b + (s*c) (two roundings) and nothing looser. NaN never passes.
pub fn check_triad(a: &[f32], b: &[f32], c: &[f32], s: f32) -> Check {
    const U: f64 = 1.0 / (1u64 << 24) as f64;
    let worst = a
        .par_iter()
        .enumerate()
        .map(|(i, &got)| {
            let (bi, ci) = (f64::from(b[i]), f64::from(c[i]));
            let exact = bi + f64::from(s) * ci;
            let err = (f64::from(got) - exact).abs();
            let bound = 2.0 * U * (bi.abs() + (f64::from(s) * ci).abs());
            let ok = err <= bound; // false for NaN
            let rel = if exact == 0.0 { err } else { err / exact.abs() };
            (ok, if got.is_nan() { f64::INFINITY } else { rel }, i)
        })
        .reduce(
            || (true, 0.0, usize::MAX),
            |x, y| {
                (
                    x.0 && y.0,
                    x.1.max(y.1),
                    if !y.0 { y.2.min(x.2) } else { x.2 },
                )
            },
        );
    let (passed, max_rel_err, first_bad) = worst;
    let detail = if passed {
        format!(
            "{} elements within 2u(|b|+|sc|) of the f64 reference",
            a.len()
        )
    } else {
        format!(
            "element {first_bad}: got {}, want {}",
            a[first_bad],
            f64::from(b[first_bad]) + f64::from(s) * f64::from(c[first_bad])
        )
    };
    Check {
        passed,
        max_rel_err,
        detail,
        accuracy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_inputs_are_fresh_per_seed() {
        let (a, b) = (random_words(1, 1000), random_words(2, 1000));
        assert_ne!(a, b);
        assert_eq!(a, random_words(1, 1000));
        let f = random_floats(3, 10_000);
        assert!(f.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(f.iter().any(|&x| x < -0.5) && f.iter().any(|&x| x > 0.5));
    }

    #[test]
    fn sum_check_catches_a_missing_block() {
        let words = random_words(7, 4097);
        let total = word_sum(&words);
        assert!(check_sum(&[total - 5, 5], &words).passed);
        assert!(!check_sum(&[total - 5, 4], &words).passed);
    }

    #[test]
    fn equality_check_reports_the_first_mismatch() {
        let mut got = vec![7u32; 100];
        assert!(check_equal(&got, |_| 7).passed);
        got[42] = 0xffff_ffff;
        got[90] = 1;
        let c = check_equal(&got, |_| 7);
        assert!(!c.passed);
        assert!(
            c.detail.contains("2 of 100") && c.detail.contains("first at 42"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn triad_tolerance_admits_rounding_and_rejects_real_errors() {
        let (b, c, s) = (random_floats(1, 1001), random_floats(2, 1001), 0.37f32);
        let fused: Vec<f32> = b.iter().zip(&c).map(|(&b, &c)| s.mul_add(c, b)).collect();
        let unfused: Vec<f32> = b.iter().zip(&c).map(|(&b, &c)| b + s * c).collect();
        assert!(check_triad(&fused, &b, &c, s).passed);
        assert!(check_triad(&unfused, &b, &c, s).passed);
        // 64 ulps off at the largest |a| (no cancellation there, so the bound is about 2 ulps).
        let big = (0..fused.len())
            .max_by(|&i, &j| fused[i].abs().total_cmp(&fused[j].abs()))
            .unwrap();
        let mut wrong = fused.clone();
        wrong[big] = f32::from_bits(wrong[big].to_bits() + 64);
        assert!(!check_triad(&wrong, &b, &c, s).passed);
        let mut nan = fused;
        nan[3] = f32::NAN;
        let check = check_triad(&nan, &b, &c, s);
        assert!(
            !check.passed && check.detail.contains("element 3"),
            "{}",
            check.detail
        );
    }
}
