//! Fleet-wide rate limits per remote API (sessions created per second, tokens minted per
//! second): a token bucket in Redis shared by every worker, so that a 100,000-user tick does
//! not become a storm of 429s. It must not know which API it protects beyond the name.

use std::time::Duration;

use super::{Queue, QueueError, Result, script};
use crate::ops::metrics;

/// Takes tokens from named buckets `<p>:ratelimit:<name>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    queue: Queue,
}

impl RateLimiter {
    /// A limiter on `queue`'s Redis and prefix.
    pub fn new(queue: Queue) -> Self {
        Self { queue }
    }

    /// Waits until bucket `name` has a token and takes it. The bucket refills at `per_second`
    /// and holds at most `max(1, per_second)` tokens (one second's burst). All callers of the
    /// same name, in any process, share it; the clock is Redis's.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] when `per_second` is not a positive number;
    /// [`QueueError::Redis`] when Redis fails (the caller retries the remote call's way).
    ///
    /// # Cancel safety
    /// Cancel safe: a token is taken only by the last, atomic script call.
    pub async fn acquire(&self, name: &str, per_second: f64) -> Result<()> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(QueueError::Invalid(format!("rate {per_second} must be positive")));
        }
        let capacity = per_second.max(1.0);
        let key = self.queue.keys().ratelimit(name);
        let mut waited = Duration::ZERO;
        loop {
            let mut invocation = script::RATELIMIT.prepare_invoke();
            invocation.key(&key).arg(per_second).arg(capacity);
            let wait_ms: u64 = invocation.invoke_async(&mut self.queue.connection()).await?;
            if wait_ms == 0 {
                metrics::ratelimit_waited(name, waited);
                return Ok(());
            }
            // Another worker may take the token first; then the script says how long again.
            let wait = Duration::from_millis(wait_ms);
            waited += wait;
            tokio::time::sleep(wait).await;
        }
    }
}
