//! The one retry loop of every remote call ([`with_retries`]): it retries transient failures
//! at the pace of a [`RetryPolicy`], and within its budget when it has one (interactive
//! commands), ending then with [`ApiError::Unreachable`], which names the service.
//!
//! What is transient is decided in `retry.rs`; this module only acts on it.

use std::time::Duration;

use tracing::Instrument;

use super::{Api, ApiError, route, wait};
use crate::backoff::RetryPolicy;
use crate::outcome::ErrorClass;
use crate::telemetry::metrics;

/// Runs `attempt` until it succeeds, fails for good, or `policy` runs out; each retry is
/// logged and counted. A `Retry-After` replaces the computed delay but never extends the
/// attempt budget. This is the one retry loop of a remote call: nothing inside `attempt`
/// retries on its own.
///
/// With a [`RetryPolicy::budget`], each attempt gets only the time left of it, no pause
/// outlasts it, and a call that kept failing transiently ends with
/// [`ApiError::Unreachable`], which names the service at `base` (its origin only).
pub(crate) async fn with_retries<T, F, Fut>(
    api: Api,
    endpoint: &'static str,
    base: &str,
    policy: RetryPolicy,
    mut attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    use backon::BackoffBuilder;
    // Requests and the pauses between their attempts are both time spent on the remote.
    let _waiting = wait::Clock::start();
    let started = tokio::time::Instant::now();
    let mut delays = policy.build();
    let mut n_attempts = 0_u32;
    loop {
        n_attempts += 1;
        // One span per attempt: each is a request of its own, with its own status, and the
        // `traceparent` it carries names it.
        let span = route::span(api, endpoint, n_attempts - 1);
        let this_attempt = span.in_scope(&mut attempt).instrument(span.clone());
        let res = match policy.budget {
            None => this_attempt.await,
            Some(budget) => {
                let left = budget.saturating_sub(started.elapsed());
                tokio::time::timeout(left, this_attempt).await.unwrap_or_else(|_| {
                    let message = "no answer within the budget".to_owned();
                    Err(ApiError::Transport {
                        api,
                        endpoint,
                        message,
                        class: ErrorClass::Transient,
                    })
                })
            }
        };
        if res.is_err() {
            route::record_failure(&span);
        }
        let error = match res {
            Ok(value) => return Ok(value),
            Err(error) if error.class() != ErrorClass::Transient => return Err(error),
            Err(error) => error,
        };
        let delay = delays.next().and_then(|computed| match policy.budget {
            None => Some(error.retry_after().unwrap_or(computed)),
            Some(budget) => pause_within(
                budget.saturating_sub(started.elapsed()),
                computed,
                error.retry_after(),
            ),
        });
        let Some(delay) = delay else {
            if policy.budget.is_none() {
                return Err(error);
            }
            let (origin, elapsed) = (origin_of(base), started.elapsed());
            let last = Box::new(error);
            return Err(ApiError::Unreachable { api, origin, attempts: n_attempts, elapsed, last });
        };
        let class = error.class().as_str();
        tracing::warn!(
            message = "Remote call failed; retrying.",
            api = api.as_str(),
            endpoint,
            class,
            attempt = n_attempts + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %error,
        );
        metrics::api_retry(api.as_str(), class);
        tokio::time::sleep(delay).await;
    }
}

/// The least time worth giving one more attempt of a call with a budget.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// The pause before the next attempt of a call with `left` of its budget: the server's
/// `Retry-After` if an attempt still fits after it, else the computed pause shortened to half
/// of what is left, so that the budget is used to its end rather than given up on when the
/// next full pause would not fit; none when no attempt of [`MIN_ATTEMPT`] would.
fn pause_within(left: Duration, computed: Duration, asked: Option<Duration>) -> Option<Duration> {
    let pause = asked.unwrap_or_else(|| computed.min(left / 2));
    (left.saturating_sub(pause) >= MIN_ATTEMPT).then_some(pause)
}

/// Scheme, host and port of `base`: never a credential or path that a URL might carry.
fn origin_of(base: &str) -> String {
    match url::Url::parse(base) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => "an invalid URL".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> ApiError {
        let message = "connection failed: refused".to_owned();
        ApiError::Transport {
            api: Api::Scalekit,
            endpoint: "e",
            message,
            class: ErrorClass::Transient,
        }
    }

    /// An interactive command's call: the budget ends the retries (not 8 attempts with their
    /// pauses), a hanging attempt is cut at it, and the error names the host, never the URL's
    /// credentials. Without a budget the call ends as before, with the last error as it was.
    #[tokio::test(start_paused = true)]
    async fn a_budget_bounds_a_call_and_names_the_host() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: false,
            max_attempts: 100,
            budget: Some(Duration::from_secs(5)),
        };
        let base = "http://user:password@127.0.0.1:9/api";
        let started = tokio::time::Instant::now();
        let mut n_attempts = 0;
        let error = with_retries(Api::Scalekit, "e", base, policy, || {
            n_attempts += 1;
            async { Err::<(), _>(refused()) }
        })
        .await
        .unwrap_err();
        // Pauses of 0.5 and 1 s, then half of what is left: 1.75, 0.875 and 0.4375 s; after
        // that an attempt would get less than MIN_ATTEMPT.
        assert_eq!(n_attempts, 6);
        // Paused time: tokio's timer rounds each pause to the millisecond.
        let elapsed = started.elapsed();
        assert!(elapsed > Duration::from_millis(4500) && elapsed < Duration::from_secs(5));
        assert_eq!(
            error.to_string(),
            "cannot reach Scalekit at http://127.0.0.1:9 after 4.6 s (6 attempts); last error: \
             scalekit e: connection failed: refused (transient)"
        );
        assert_eq!(error.class(), ErrorClass::Transient);

        let started = tokio::time::Instant::now();
        let hang = with_retries(Api::Anthropic, "e", "https://api.example", policy, || {
            std::future::pending::<Result<(), ApiError>>()
        });
        let error = hang.await.unwrap_err().to_string();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(
            error.starts_with(
                "cannot reach Anthropic at https://api.example after 5.0 s (1 attempt)"
            ),
            "{error}"
        );
        assert!(error.ends_with("no answer within the budget (transient)"), "{error}");

        let patient = RetryPolicy { budget: None, max_attempts: 3, ..policy };
        let error =
            with_retries(Api::Scalekit, "e", base, patient, || async { Err::<(), _>(refused()) })
                .await
                .unwrap_err();
        assert_eq!(error.to_string(), "scalekit e: connection failed: refused (transient)");
    }
}
