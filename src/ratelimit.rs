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

    /// Empties bucket `name` for `pause`: the vendor refused a request (a 429 asking to wait
    /// that long), so no caller in the fleet takes a token of it before then, instead of each
    /// one finding out with a 429 of its own.
    ///
    /// # Errors
    /// As [`RateLimiter::acquire`].
    pub async fn drain(
        &self,
        name: &'static str,
        per_second: f64,
        pause: Duration,
    ) -> Result<(), RateLimitError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateLimitError::InvalidRate(per_second));
        }
        let mut invocation = DRAIN.prepare_invoke();
        invocation.key(self.keys.ratelimit(name)).arg(per_second).arg(pause.as_secs_f64());
        let () = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// How long a caller of bucket `name` would wait for a token now, without taking one.
    ///
    /// # Errors
    /// As [`RateLimiter::acquire`].
    pub async fn wait_now(
        &self,
        name: &'static str,
        per_second: f64,
    ) -> Result<Duration, RateLimitError> {
        let mut invocation = PEEK.prepare_invoke();
        invocation.key(self.keys.ratelimit(name)).arg(per_second).arg(per_second.max(1.0));
        let wait_ms: u64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(Duration::from_millis(wait_ms))
    }
}

/// Sets a bucket's tokens to minus `pause` seconds of refill (unless already lower), so the
/// first token is due after `pause`. KEYS: 1 bucket. ARGV: 1 rate per second, 2 pause seconds.
static DRAIN: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local t = redis.call('TIME') \
         local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
         local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) or 0 \
         local drained = math.min(tokens, -tonumber(ARGV[1]) * tonumber(ARGV[2])) \
         redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', drained), 'ts_us', string.format('%d', now)) \
         redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) + 60000) \
         return 0",
    )
});

/// The bucket script's answer without taking a token. KEYS: 1 bucket. ARGV: 1 rate, 2 capacity.
static PEEK: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local t = redis.call('TIME') \
         local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
         local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts_us') \
         local rate, cap = tonumber(ARGV[1]), tonumber(ARGV[2]) \
         local tokens = tonumber(s[1]) or cap \
         local ts = tonumber(s[2]) or now \
         tokens = math.min(cap, tokens + math.max(0, now - ts) / 1000000 * rate) \
         if tokens >= 1 then return 0 end \
         return math.ceil((1 - tokens) / rate * 1000)",
    )
});
