//! When to stop sampling: once the median is known precisely enough, or the budget is spent.

use std::time::Duration;

use serde::Serialize;

use super::stats::summarize;

#[derive(Debug, Clone, Serialize)]
pub struct StopRule {
    pub min_samples: usize,
    pub max_samples: usize,
    /// Stop when the relative half-width of the median's confidence interval is below this.
    pub target_rel_ci: f64,
    pub confidence: f64,
    /// Wall-clock budget for the sampling of one case (warm-up not included).
    pub budget: Duration,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule {
            min_samples: 10,
            max_samples: 2000,
            target_rel_ci: 0.01,
            confidence: 0.95,
            budget: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The confidence interval reached the target.
    Converged,
    /// The time budget ran out first: the row's `rel_ci` says how precise it is.
    Budget,
    MaxSamples,
}

impl StopRule {
    /// `None` to keep sampling.
    pub fn check(&self, samples: &[f64], elapsed: Duration) -> Option<StopReason> {
        let n = samples.len();
        if n >= self.max_samples {
            return Some(StopReason::MaxSamples);
        }
        if n >= self.min_samples && summarize(samples, self.confidence).rel_ci <= self.target_rel_ci
        {
            return Some(StopReason::Converged);
        }
        // The budget never cuts a case below 3 samples: a median needs some company.
        if elapsed >= self.budget && n >= self.min_samples.min(3) {
            return Some(StopReason::Budget);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> StopRule {
        StopRule {
            min_samples: 10,
            max_samples: 500,
            target_rel_ci: 0.01,
            confidence: 0.95,
            budget: Duration::from_secs(1),
        }
    }

    #[test]
    fn quiet_samples_stop_at_the_minimum() {
        let r = rule();
        let quiet = vec![100.0; 9];
        assert_eq!(r.check(&quiet, Duration::ZERO), None, "below min_samples");
        let quiet = vec![100.0; 10];
        assert_eq!(r.check(&quiet, Duration::ZERO), Some(StopReason::Converged));
    }

    #[test]
    fn noisy_samples_keep_going_until_budget() {
        let r = rule();
        let noisy: Vec<f64> = (0..50)
            .map(|i| if i % 2 == 0 { 100.0 } else { 150.0 })
            .collect();
        assert_eq!(r.check(&noisy, Duration::from_millis(10)), None);
        assert_eq!(
            r.check(&noisy, Duration::from_secs(2)),
            Some(StopReason::Budget)
        );
    }

    #[test]
    fn max_samples_caps_the_run() {
        let r = rule();
        let noisy: Vec<f64> = (0..500).map(|i| (i % 7) as f64 + 1.0).collect();
        assert_eq!(
            r.check(&noisy, Duration::ZERO),
            Some(StopReason::MaxSamples)
        );
    }

    #[test]
    fn converges_once_noise_averages_out() {
        // 1% jitter around 100: the median's interval shrinks like 1/sqrt(n).
        let r = rule();
        let jitter = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|i| 100.0 + ((i * 7919) % 201) as f64 / 100.0 - 1.0)
                .collect()
        };
        let mut n = 10;
        while r.check(&jitter(n), Duration::ZERO).is_none() {
            n += 1;
            assert!(n < 500, "never converged");
        }
        assert!(summarize(&jitter(n), 0.95).rel_ci <= 0.01);
    }
}
