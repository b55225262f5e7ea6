//! Fleet-wide rate limits per remote API (Anthropic's creates, other calls and environment
//! calls, sessions created and tokens minted): a token bucket in Redis shared by every worker,
//! so that a 100,000-user tick does not become a storm of 429s. A leaf beside the rooms: the
//! run pipeline calls it before a remote call. It must not know which API it protects beyond
//! the name.

use std::sync::LazyLock;
use std::time::Duration;

use crate::config::RedisConn;
use redis::Script;

use crate::keys::Keys;
use crate::telemetry::metrics;

/// The token bucket, one atomic script per take.
static BUCKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("ratelimit/bucket.lua")));

/// Why a token could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The rate is not a positive number.
    #[error("rate {0} must be positive")]
    InvalidRate(f64),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Takes tokens from named buckets `<p>:ratelimit:<name>`. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    redis: RedisConn,
    keys: Keys,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("prefix", &self.keys.prefix()).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter on `redis`, with buckets under `keys`' prefix.
    pub fn new(redis: RedisConn, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Waits until bucket `name` has a token and takes it. The name is a fixed one (it labels
    /// `agentcron_ratelimit_wait_seconds`, whose series must stay few). The bucket refills at `per_second`
    /// and holds at most `max(1, per_second)` tokens (one second's burst). All callers of the
    /// same name, in any process, share it; the clock is Redis's.
    ///
    /// # Errors
    /// [`RateLimitError::InvalidRate`] when `per_second` is not a positive number;
    /// [`RateLimitError::Redis`] when Redis fails (the caller retries the remote call's way).
    ///
    /// # Cancel safety
    /// Cancel safe: a token is taken only by the last, atomic script call.
    pub async fn acquire(&self, name: &'static str, per_second: f64) -> Result<(), RateLimitError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateLimitError::InvalidRate(per_second));
        }
        let capacity = per_second.max(1.0);
        let key = self.keys.ratelimit(name);
        let mut waited = Duration::ZERO;
        loop {
            let mut invocation = BUCKET.prepare_invoke();
            invocation.key(&key).arg(per_second).arg(capacity);
            let wait_ms: u64 = invocation.invoke_async(&mut self.redis.clone()).await?;
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
