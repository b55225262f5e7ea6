//! What a handler reports, and the decision of what the queue records for it: retried with
//! backoff, dead, terminal, deferred or released. Pure, so every branch is unit-tested.
//! This module must not talk to Redis.

use std::time::Duration;

use crate::api::retry::RetryPolicy;
use crate::queue::Disposition;

/// How an attempt ended, as the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run finished; the handler wrote its results.
    Succeeded,
    /// A connection needs the user's authorisation; never retried.
    NeedsAuth,
    /// The handler stopped because its token was cancelled.
    Cancelled,
    /// A transient failure: retried after `after` (else the backoff) up to `max_attempts`.
    Retry {
        /// The error, for `last_error`.
        error: String,
        /// Its class, for `error_class` (such as `transient`, `timeout`).
        class: String,
        /// A delay the remote asked for (`Retry-After`).
        after: Option<Duration>,
    },
    /// A permanent failure: dead now.
    Fatal {
        /// The error, for `last_error`.
        error: String,
        /// Its class, for `error_class` (such as `permanent`, `auth`).
        class: String,
    },
    /// Not now, and not counted as an attempt (for example the user's lease is held).
    Defer {
        /// When to try again.
        after: Duration,
    },
}

/// Decides what to record. `stopped` is true when the worker itself cancelled the run
/// (shutdown grace over, or lease lost): then an unfinished run is released, not failed.
pub(crate) fn decide(
    outcome: Outcome,
    attempt: u32,
    max_attempts: u32,
    stopped: bool,
    policy: &RetryPolicy,
) -> Disposition {
    match outcome {
        Outcome::Succeeded => Disposition::Succeeded,
        Outcome::NeedsAuth => Disposition::NeedsAuth,
        Outcome::Defer { after } => Disposition::Defer { after },
        Outcome::Cancelled | Outcome::Retry { .. } if stopped => Disposition::Release,
        Outcome::Cancelled => Disposition::Cancelled,
        Outcome::Fatal { error, class } => Disposition::Dead { error, class },
        Outcome::Retry { error, class, .. } if attempt >= max_attempts => {
            let error = format!("{error} (gave up after {attempt} attempts)");
            Disposition::Dead { error, class }
        }
        Outcome::Retry { error, class, after } => {
            let backoff = policy.delay(attempt.saturating_sub(1), fastrand::f64());
            Disposition::Retry { error, class, after: after.unwrap_or(backoff) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_interval: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: false,
            max_attempts: 8,
        }
    }

    fn check(outcome: Outcome, attempt: u32, stopped: bool, expect: &Disposition) {
        let label = format!("{outcome:?}");
        assert_eq!(&decide(outcome, attempt, 3, stopped, &policy()), expect, "{label}");
    }

    fn retry(after: Option<Duration>) -> Outcome {
        Outcome::Retry { error: "503".to_owned(), class: "transient".to_owned(), after }
    }

    #[test]
    fn decisions() {
        use Disposition as D;
        let (e, c) = ("503".to_owned(), "transient".to_owned());
        check(Outcome::Succeeded, 1, false, &D::Succeeded);
        check(Outcome::Succeeded, 1, true, &D::Succeeded);
        check(Outcome::NeedsAuth, 3, false, &D::NeedsAuth);
        check(Outcome::Cancelled, 1, false, &D::Cancelled);
        check(Outcome::Cancelled, 1, true, &D::Release);
        check(retry(None), 1, true, &D::Release);
        let secs = Duration::from_secs;
        check(
            retry(None),
            1,
            false,
            &D::Retry { error: e.clone(), class: c.clone(), after: secs(1) },
        );
        check(
            retry(None),
            2,
            false,
            &D::Retry { error: e.clone(), class: c.clone(), after: secs(2) },
        );
        check(
            retry(Some(secs(30))),
            2,
            false,
            &D::Retry { error: e, class: c.clone(), after: secs(30) },
        );
        let dead = D::Dead { error: "503 (gave up after 3 attempts)".to_owned(), class: c };
        check(retry(None), 3, false, &dead);
        let fatal = Outcome::Fatal { error: "400".to_owned(), class: "permanent".to_owned() };
        check(fatal, 1, false, &D::Dead { error: "400".to_owned(), class: "permanent".to_owned() });
        check(Outcome::Defer { after: secs(5) }, 3, false, &D::Defer { after: secs(5) });
    }
}
