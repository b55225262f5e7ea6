//! Whether Redis is reachable, as the worker's loops see it, and the backoff they share while it
//! is not. A state change is logged once (not once per failed call), so an outage of a minute
//! does not flood the log. This module must not retry anything itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::telemetry::metrics;

/// Reachability of Redis, shared by every loop of one worker process.
#[derive(Debug, Default)]
pub(crate) struct Health {
    // An atomic, not a Mutex: loops only flip it and compare the previous value.
    down: AtomicBool,
}

impl Health {
    /// Records a failed Redis call by `op`; logs only the transition to "down".
    pub(crate) fn failed(&self, op: &'static str, error: &super::QueueError) {
        metrics::redis_error(op);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                message = "Redis unavailable; retrying with backoff.",
                op,
                error.message = %error
            );
        }
    }

    /// Records a successful Redis call; logs only the transition back to "up".
    pub(crate) fn ok(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(message = "Redis available again; resuming.");
        }
    }
}

/// Exponential backoff for Redis retries: 100 ms doubling to 5 s, with full jitter so that a
/// fleet of workers does not reconnect in lockstep.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    n_failures: u32,
}

impl Backoff {
    const INITIAL: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = Self::INITIAL.saturating_mul(1 << self.n_failures.min(6)).min(Self::MAX);
        self.n_failures = self.n_failures.saturating_add(1);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Back to the first delay after a success.
    pub(crate) fn reset(&mut self) {
        self.n_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first <= Backoff::INITIAL && first >= Backoff::INITIAL / 2, "{first:?}");
        for _ in 0..20 {
            assert!(backoff.next_delay() <= Backoff::MAX);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Backoff::INITIAL);
    }
}
