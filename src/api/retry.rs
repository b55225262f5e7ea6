//! One retry policy for both remote APIs: every failure is classified once, here, as
//! transient, permanent or auth, and transient ones are retried with exponential backoff and
//! full jitter, honouring `Retry-After` / `retry-after-ms`.
//!
//! The loop itself is `backon`'s; this module supplies the delays ([`RetryPolicy`] is a
//! `backon::BackoffBuilder`) and the decision ([`ErrorClass`]). It must not know which call is
//! being retried beyond its name.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::config::RetryConfig;

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying: timeouts, connection errors, 408, 429, 5xx, gRPC UNAVAILABLE.
    Transient,
    /// Retrying cannot help: other 4xx, malformed responses.
    Permanent,
    /// Credentials were refused: Scalekit refreshes its token once, others give up.
    Auth,
}

impl ErrorClass {
    /// The name used in records, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Auth => "auth",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// gRPC codes that grpc-gateway puts in Scalekit error bodies (`{"code": N, …}`).
mod grpc {
    pub(super) const RESOURCE_EXHAUSTED: i64 = 8;
    pub(super) const DEADLINE_EXCEEDED: i64 = 4;
    pub(super) const ABORTED: i64 = 10;
    pub(super) const UNAVAILABLE: i64 = 14;
    pub(super) const UNAUTHENTICATED: i64 = 16;
}

/// Classifies an HTTP error status, refined by the gRPC code of a Scalekit body and by
/// Anthropic's `x-should-retry` header.
///
/// `conflict_is_transient`: Anthropic's 409 means "in progress, try again" (its SDK retries it);
/// Scalekit's 409 means ALREADY_EXISTS.
pub fn classify_status(
    status: StatusCode,
    grpc_code: Option<i64>,
    should_retry: Option<bool>,
    conflict_is_transient: bool,
) -> ErrorClass {
    if let Some(should_retry) = should_retry {
        return if should_retry { ErrorClass::Transient } else { ErrorClass::Permanent };
    }
    match grpc_code {
        Some(grpc::UNAUTHENTICATED) => return ErrorClass::Auth,
        Some(grpc::UNAVAILABLE | grpc::RESOURCE_EXHAUSTED | grpc::DEADLINE_EXCEEDED) => {
            return ErrorClass::Transient;
        }
        Some(grpc::ABORTED) => return ErrorClass::Transient,
        _ => {}
    }
    match status.as_u16() {
        401 => ErrorClass::Auth,
        408 | 429 => ErrorClass::Transient,
        409 if conflict_is_transient => ErrorClass::Transient,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies a transport failure: every one of them (connect, timeout, reset, truncated body)
/// is transient, except a request that could not even be built.
pub fn classify_transport(error: &reqwest::Error) -> ErrorClass {
    if error.is_builder() { ErrorClass::Permanent } else { ErrorClass::Transient }
}

/// The delay a response asks for: `retry-after-ms` (milliseconds, Anthropic), else
/// `Retry-After` as seconds or an HTTP date. Capped at one hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(3600);
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let parsed =
        if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
            Duration::try_from_secs_f64(ms / 1000.0).ok()
        } else {
            let value = header("retry-after")?.trim();
            match value.parse::<f64>() {
                Ok(seconds) => Duration::try_from_secs_f64(seconds).ok(),
                Err(_) => httpdate(value),
            }
        };
    parsed.map(|delay| delay.min(CAP))
}

fn httpdate(value: &str) -> Option<Duration> {
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

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
    use reqwest::header::HeaderValue;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: true,
            max_attempts: 8,
        }
    }

    fn check(
        status: u16,
        grpc: Option<i64>,
        should: Option<bool>,
        conflict: bool,
        expect: ErrorClass,
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(classify_status(status, grpc, should, conflict), expect, "{status} {grpc:?}");
    }

    #[test]
    fn classification() {
        use ErrorClass::*;
        check(400, None, None, false, Permanent);
        check(404, None, None, true, Permanent);
        check(401, None, None, false, Auth);
        check(401, Some(16), None, false, Auth);
        check(400, Some(16), None, false, Auth);
        check(408, None, None, false, Transient);
        check(409, None, None, true, Transient);
        check(409, Some(6), None, false, Permanent);
        check(429, None, None, false, Transient);
        check(429, Some(8), None, false, Transient);
        check(500, None, None, false, Transient);
        check(503, Some(14), None, false, Transient);
        check(529, None, None, false, Transient);
        check(400, Some(14), None, false, Transient);
        check(503, None, Some(false), false, Permanent);
        check(400, None, Some(true), false, Transient);
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

    #[test]
    fn retry_after_headers() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        let both = headers(&[("retry-after", "5"), ("retry-after-ms", "150")]);
        assert_eq!(retry_after(&both), Some(Duration::from_millis(150)), "ms wins, as in the SDK");
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999")])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[])), None);
        let past = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        let future = (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc2822();
        let delay = retry_after(&headers(&[("retry-after", &future)])).unwrap();
        assert!(delay > Duration::from_secs(25) && delay <= Duration::from_secs(30), "{delay:?}");
    }
}
