//! Summary statistics of timing samples, and the distribution-free confidence interval of the
//! median that the adaptive stopping rule watches.

use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};
use statrs::statistics::{Data, Distribution, OrderStatistics};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub mean: f64,
    pub stdev: f64,
    pub min: f64,
    pub max: f64,
    /// Confidence interval of the median (order statistics; no normality assumed).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Half-width of that interval relative to the median: 0.01 means "median known to ±1%".
    pub rel_ci: f64,
}

/// Summarises `samples` (any unit) with a `confidence` (e.g. 0.95) interval of the median.
pub fn summarize(samples: &[f64], confidence: f64) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut data = Data::new(sorted.clone());
    let median = data.median();
    let (lo, hi) = median_ci_ranks(sorted.len(), confidence);
    let (ci_low, ci_high) = (sorted[lo], sorted[hi]);
    Summary {
        samples: sorted.len(),
        median,
        p10: data.quantile(0.10),
        p90: data.quantile(0.90),
        mean: data.mean().unwrap_or(median),
        stdev: data.std_dev().unwrap_or(0.0),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        ci_low,
        ci_high,
        rel_ci: if median > 0.0 {
            (ci_high - ci_low) / (2.0 * median)
        } else {
            f64::INFINITY
        },
    }
}

/// 0-based ranks (lo, hi) of the order statistics that bound the median with at least
/// `confidence` coverage: the number of samples below the median is Binomial(n, 1/2), so
/// [x_(j), x_(n+1-j)] covers it with probability 1 - 2 P(B <= j-1). With too few samples for
/// the requested confidence this is [min, max].
pub fn median_ci_ranks(n: usize, confidence: f64) -> (usize, usize) {
    if n < 2 {
        return (0, n.saturating_sub(1));
    }
    let Ok(b) = Binomial::new(0.5, n as u64) else {
        return (0, n - 1);
    };
    let tail = (1.0 - confidence) / 2.0;
    // Largest 1-based j in [1, n/2] with P(B <= j-1) <= tail; the cdf is monotone: bisect.
    let (mut lo, mut hi) = (1u64, (n / 2) as u64);
    if b.cdf(0) > tail {
        return (0, n - 1);
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if b.cdf(mid - 1) <= tail {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let j = lo as usize;
    (j - 1, n - j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.95);
        assert_eq!(s.samples, 5);
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max), (1.0, 5.0));
        assert!((s.mean - 3.0).abs() < 1e-12);
        assert!((s.stdev - 2.5f64.sqrt()).abs() < 1e-12, "sample stdev");
        assert!(s.p10 < s.median && s.median < s.p90);
    }

    #[test]
    fn constant_samples_have_zero_interval() {
        let s = summarize(&[7.0; 40], 0.95);
        assert_eq!(s.rel_ci, 0.0);
        assert_eq!(s.stdev, 0.0);
    }

    #[test]
    fn median_ranks_match_binomial_tables() {
        // Classic table values for 95%: n=10 -> x(2)..x(9); n=20 -> x(6)..x(15); n=100 -> x(40)..x(61).
        assert_eq!(median_ci_ranks(10, 0.95), (1, 8));
        assert_eq!(median_ci_ranks(20, 0.95), (5, 14));
        assert_eq!(median_ci_ranks(100, 0.95), (39, 60));
        // Too few samples for 95%: the whole range.
        assert_eq!(median_ci_ranks(5, 0.95), (0, 4));
    }

    #[test]
    fn interval_narrows_with_more_samples() {
        let noisy =
            |n: usize| -> Vec<f64> { (0..n).map(|i| 100.0 + (i * 37 % 11) as f64).collect() };
        let few = summarize(&noisy(12), 0.95).rel_ci;
        let many = summarize(&noisy(1200), 0.95).rel_ci;
        assert!(many <= few, "{many} > {few}");
    }
}
