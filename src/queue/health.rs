//! Whether Redis is serving this worker, as its loops see it, and the backoff they share while
//! it is not. A change of health is logged once, not once per failed call: "unavailable" at the
//! first failure, "available again" with the outage's duration once calls have succeeded for
//! [`SETTLE`] without a failure in between, so that a Redis refusing only writes (full memory)
//! while reads still pass does not flap the log. It also keeps when the worker's lease was last
//! renewed: `/readyz` and the fetch loop read it. This module must not retry anything itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::telemetry::metrics;

/// Calls must succeed this long, with no failure, before Redis counts as available again.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Health of Redis for one worker process, shared by all its loops (the heartbeat thread's
/// too) and by its ops server.
#[derive(Debug)]
pub struct Health {
    // A std Mutex: held only to compare and update a few fields, never across an await.
    outage: Mutex<Outage>,
    epoch: Instant,
    /// Milliseconds from `epoch` to the last lease renewal; 0 before the first.
    renewed_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Outage {
    /// When the first failure of the current outage happened.
    since: Option<Instant>,
    /// The last failure, to settle before recovery.
    last_failure: Option<Instant>,
    n_failures: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self { outage: Mutex::default(), epoch: Instant::now(), renewed_ms: AtomicU64::new(0) }
    }
}

impl Health {
    /// Records a failed Redis call by `op`; logs only the start of an outage.
    pub fn failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        metrics::redis_error(op);
        let now = Instant::now();
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        outage.last_failure = Some(now);
        outage.n_failures += 1;
        if outage.since.is_none() {
            outage.since = Some(now);
            drop(outage);
            tracing::warn!(
                message = "Redis unavailable; retrying with backoff.",
                op,
                error.message = %error
            );
        }
    }

    /// Records a successful Redis call; logs the end of an outage once calls have passed for
    /// [`SETTLE`] since its last failure.
    pub fn ok(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(since), Some(last)) = (outage.since, outage.last_failure) else { return };
        if last.elapsed() < SETTLE {
            return;
        }
        let n_failed_calls = outage.n_failures;
        *outage = Outage::default();
        drop(outage);
        let outage_secs = (last - since).as_secs_f64();
        tracing::info!(
            message = "Redis available again; resuming.",
            outage_secs = (outage_secs * 10.0).round() / 10.0,
            n_failed_calls
        );
    }

    /// True during an outage (from its first failure until it settled).
    pub fn is_down(&self) -> bool {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner).since.is_some()
    }

    /// Records that the worker's lease was renewed now.
    pub fn renewed(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        self.renewed_ms.store(ms, Ordering::Release);
    }

    /// How long ago the lease was last renewed; `None` before the first renewal.
    pub fn since_renewed(&self) -> Option<Duration> {
        let ms = self.renewed_ms.load(Ordering::Acquire);
        (ms > 0).then(|| self.epoch.elapsed().saturating_sub(Duration::from_millis(ms)))
    }

    /// True when the lease of length `lease` has gone unrenewed for half of it: the heartbeat
    /// cannot reach Redis, so new runs must not be taken (they could be reaped before they
    /// start) and the worker is not ready.
    pub fn lease_at_risk(&self, lease: Duration) -> bool {
        self.since_renewed().is_none_or(|since| since > lease / 2)
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
    fn an_outage_is_logged_once_and_ends_only_after_it_settles() {
        let health = Health::default();
        let error = "OOM command not allowed";
        health.failed("heartbeat", &error);
        health.ok();
        assert!(health.is_down(), "a success right after a failure does not end the outage");
        health.failed("fetch", &error);
        assert!(health.is_down());
        {
            let mut outage = health.outage.lock().unwrap();
            outage.last_failure = Some(Instant::now() - SETTLE);
        }
        health.ok();
        assert!(!health.is_down(), "calls passed for SETTLE since the last failure");
    }

    #[test]
    fn a_lease_is_at_risk_before_its_first_renewal_and_after_half_of_it() {
        let health = Health::default();
        assert!(health.lease_at_risk(Duration::from_secs(30)));
        health.renewed();
        assert!(!health.lease_at_risk(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(health.lease_at_risk(Duration::from_millis(4)));
    }

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
