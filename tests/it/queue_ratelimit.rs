//! The fleet-wide rate limit holds across limiters on separate connections (as in separate
//! worker processes): acquisitions never exceed the bucket's burst plus its rate times the
//! elapsed time. A correctness bound, not a timing assertion.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentcron::ratelimit::{RateLimitError, RateLimiter};

use crate::common::TestRedis;
use crate::common::worker::{config, queue};

/// A limiter on its own connection, as another worker process would have.
async fn limiter(config: &agentcron::config::Config) -> RateLimiter {
    let queue = queue(config).await;
    RateLimiter::new(queue.connection(), queue.keys().clone())
}

#[tokio::test]
async fn the_rate_limit_holds_across_two_limiters() {
    const RATE: f64 = 20.0;
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let limiters = [limiter(&config).await, limiter(&config).await];
    let n_acquired = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let window = Duration::from_millis(1_500);
    let mut tasks = tokio::task::JoinSet::new();
    for limiter in limiters {
        for _ in 0..4 {
            let (limiter, n_acquired) = (limiter.clone(), Arc::clone(&n_acquired));
            tasks.spawn(async move {
                while started.elapsed() < window {
                    limiter.acquire("sessions", RATE).await.unwrap();
                    n_acquired.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n_acquired = n_acquired.load(Ordering::SeqCst);
    // Burst (capacity = one second's worth) plus refill over the whole elapsed time.
    #[allow(clippy::cast_precision_loss)]
    let acquired = n_acquired as f64;
    let bound = RATE + RATE * elapsed + 1.0;
    assert!(acquired <= bound, "{n_acquired} tokens in {elapsed:.2}s exceeds {bound:.1}");
    assert!(acquired >= RATE, "the burst was available: only {n_acquired}");
}

#[tokio::test]
async fn a_nonpositive_rate_is_refused() {
    let redis = TestRedis::new().await;
    let limiter = limiter(&config(&redis)).await;
    for rate in [0.0, -1.0, f64::NAN] {
        let error = limiter.acquire("tokens", rate).await.unwrap_err();
        assert!(matches!(error, RateLimitError::InvalidRate(_)), "{rate}: {error:?}");
    }
}

/// A drained bucket (a 429 asked the fleet to wait) makes every limiter of it wait that long,
/// and never shortens a longer wait already set. Read from the bucket, not timed.
#[tokio::test]
async fn a_drained_bucket_holds_every_limiter_back_for_the_pause() {
    const RATE: f64 = 50.0;
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let (one, other) = (limiter(&config).await, limiter(&config).await);
    assert_eq!(other.wait_now("creates", RATE).await.unwrap(), Duration::ZERO);
    one.drain("creates", RATE, Duration::from_secs(3)).await.unwrap();
    let wait = other.wait_now("creates", RATE).await.unwrap();
    assert!(
        wait > Duration::from_millis(2_900) && wait <= Duration::from_millis(3_100),
        "{wait:?}"
    );
    one.drain("creates", RATE, Duration::from_secs(1)).await.unwrap();
    let still = other.wait_now("creates", RATE).await.unwrap();
    assert!(still > Duration::from_millis(2_800), "a shorter pause does not shorten it: {still:?}");
}
