//! Backoff maths, one policy for every retry in the product: remote calls (`api`), the notice
//! webhook (`records::webhook`) and a run's next attempt (the outcome table). Exponential with
//! full jitter and a cap; defaults come from `[retry]`: 500 ms doubling to 30 s, at most 8
//! attempts and 5 minutes of waiting per call.
//!
//! Pure: this module must not sleep, talk to Redis or know what is being retried.

use std::time::Duration;

use crate::config::RetryConfig;

/// Exponential backoff with full jitter. Defaults (from `[retry]`): 500 ms doubling to 30 s,
/// at most 8 attempts and 5 minutes of waiting per call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay before jitter.
    pub initial: Duration,
    /// Cap on one delay.
    pub max_interval: Duration,
    /// Cap on the sum of delays of one call.
    pub max_elapsed: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Full jitter: each delay is uniform in `0..=computed`.
    pub jitter: bool,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The most one call may take, its attempts and the pauses between them included; none
    /// for the daemons, which wait out an outage. Interactive commands set it (30 s unless
    /// `--connect-budget` says otherwise), so that an unreachable service fails them fast.
    pub budget: Option<Duration>,
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(config: &RetryConfig) -> Self {
        Self {
            initial: config.initial,
            max_interval: config.max_interval,
            max_elapsed: config.max_elapsed,
            multiplier: config.multiplier,
            jitter: config.jitter,
            max_attempts: config.max_attempts,
            budget: None,
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before retry number `retry` (0 for the first retry):
    /// `min(max_interval, initial * multiplier^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_interval).min(self.max_interval)
    }

    /// The delay before retry number `retry`, with `unit` a uniform sample in `[0, 1)`; pure so
    /// that it can be tested.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        if self.jitter { ceiling.mul_f64(unit.clamp(0.0, 1.0)) } else { ceiling }
    }
}

/// The delays of one call, as `backon` consumes them.
#[derive(Debug)]
pub struct Delays {
    policy: RetryPolicy,
    retry: u32,
    waited: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retry + 1 >= self.policy.max_attempts || self.waited >= self.policy.max_elapsed {
            return None;
        }
        let delay = self.policy.delay(self.retry, fastrand::f64());
        let delay = delay.min(self.policy.max_elapsed.saturating_sub(self.waited));
        self.retry += 1;
        self.waited += delay;
        Some(delay)
    }
}

impl backon::BackoffBuilder for RetryPolicy {
    type Backoff = Delays;

    fn build(self) -> Delays {
        Delays { policy: self, retry: 0, waited: Duration::ZERO }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: true,
            max_attempts: 8,
            budget: None,
        }
    }

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let policy = policy();
        assert_eq!(policy.delay(0, 1.0), Duration::from_millis(500));
        assert_eq!(policy.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(policy.delay(10, 1.0), Duration::from_secs(30), "capped at max_interval");
        assert_eq!(policy.delay(3, 0.25), Duration::from_secs(1), "full jitter scales the ceiling");
        assert_eq!(policy.delay(3, 0.0), Duration::ZERO);
        let fixed = RetryPolicy { jitter: false, ..policy };
        assert_eq!(fixed.delay(2, 0.1), Duration::from_secs(2));
        assert_eq!(policy.delay(u32::MAX, 1.0), Duration::from_secs(30), "no overflow");
    }

    #[test]
    fn attempts_and_elapsed_bound_the_delays() {
        use backon::BackoffBuilder;
        assert_eq!(policy().build().count(), 7, "8 attempts = 7 retries");
        let tight = RetryPolicy { max_elapsed: Duration::from_secs(2), jitter: false, ..policy() };
        let delays: Vec<_> = tight.build().collect();
        assert_eq!(delays.iter().sum::<Duration>(), Duration::from_secs(2));
        assert_eq!(delays.last(), Some(&Duration::from_millis(500)), "the last one is trimmed");
        let once = RetryPolicy { max_attempts: 1, ..policy() };
        assert_eq!(once.build().count(), 0);
    }
}
