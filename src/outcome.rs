//! The outcome table: the one place that says how an attempt's end becomes the run's state,
//! whether the attempt counts, and what the queue does next.
//!
//! ```text
//! handler reports          when                      queue action  run state   attempt counts
//! Succeeded                                          Succeeded     succeeded   yes
//! NeedsAuth                                          NeedsAuth     needs_auth  yes
//! Cancelled                an operator's cancel      Cancelled     cancelled   yes
//! Skipped (over budget)                              Skipped       skipped     no
//! Cancelled                the worker is stopping    Release       queued      no
//! Failed(retryable class)  the worker is stopping    Release       queued      no
//! Defer (user busy, setup missing)                    Defer         queued      no
//! Superseded (fenced off)                            Release       queued      no
//! Failed(retryable class)  attempts left             Retry         failed      yes
//! Failed(retryable class)  last attempt              Dead          dead        yes
//! Failed(permanent, auth)                            Dead          dead        yes
//! ```
//!
//! Retryable classes are `transient`, `timeout` and `panic`. A remote call's own class comes
//! from `api::retry`; the run pipeline and the worker add `timeout` and `panic`.
//!
//! Pure, so every row is tested here. This module must not talk to Redis or the remote APIs.

use std::fmt;
use std::time::Duration;

use crate::backoff::RetryPolicy;

/// The states of a run, as stored in `state` and used in `<p>:runs:state:<s>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Waiting in the ready list or the delayed set.
    Queued,
    /// Held by a worker.
    Running,
    /// Finished successfully.
    Succeeded,
    /// A connection needs the user's authorisation; not retried.
    NeedsAuth,
    /// The last attempt failed transiently; another attempt is due at `next_attempt_at_ms`.
    Failed,
    /// Attempts exhausted or a permanent error; `last_error` says why.
    Dead,
    /// Cancelled by an operator.
    Cancelled,
    /// Not started: starting it would have gone over a budget; `skip_reason` says which.
    Skipped,
}

impl RunState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::NeedsAuth,
        Self::Failed,
        Self::Dead,
        Self::Cancelled,
        Self::Skipped,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::NeedsAuth => "needs_auth",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether no further attempt will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::NeedsAuth | Self::Dead | Self::Cancelled | Self::Skipped
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure ended an attempt (or a remote call), stored as `error_class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying: timeouts, connection errors, 408, 429, 5xx, gRPC UNAVAILABLE, Redis.
    Transient,
    /// Retrying cannot help: other 4xx, malformed responses, a missing run or setup.
    Permanent,
    /// Credentials were refused: Scalekit refreshes its token once, others give up.
    Auth,
    /// The run outlived `worker.run_timeout`, or ignored its cancellation.
    Timeout,
    /// The handler panicked; retried, since the cause may be remote state.
    Panic,
}

impl ErrorClass {
    /// The name used in records, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Auth => "auth",
            Self::Timeout => "timeout",
            Self::Panic => "panic",
        }
    }

    /// Whether another attempt may help.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::Timeout | Self::Panic)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt ended, as the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run finished; the handler wrote its results.
    Succeeded,
    /// A connection needs the user's authorisation; never retried.
    NeedsAuth,
    /// The handler stopped because its token was cancelled.
    Cancelled,
    /// The run was not started, and will not be: `reason` says why (`budget`).
    Skipped {
        /// Why, for `skip_reason`.
        reason: &'static str,
        /// What exactly, for `skip_detail`.
        detail: String,
    },
    /// Not now, and not counted as an attempt (for example the user's lease is held).
    Defer {
        /// When to try again.
        after: Duration,
    },
    /// A later attempt of the run started while this one was stalled (its worker frozen past
    /// its lease): this one stopped without acting. Its worker no longer holds the run, so the
    /// queue normally writes nothing; were the entry still held, the run goes back unharmed.
    Superseded,
    /// The attempt failed; its class decides between another attempt and `dead`.
    Failed {
        /// The error, for `last_error` (already redacted).
        error: String,
        /// Its class, for `error_class`.
        class: ErrorClass,
        /// A delay the remote asked for (`Retry-After`), used instead of the backoff.
        after: Option<Duration>,
    },
}

impl Outcome {
    /// A failure of `class` with no delay asked for.
    pub fn failed(error: impl Into<String>, class: ErrorClass) -> Self {
        Self::Failed { error: error.into(), class, after: None }
    }

    /// The label of `agentcron_runs_total{outcome}`; `None` for a deferred attempt, which
    /// never started a run.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Self::Succeeded => Some("succeeded"),
            Self::NeedsAuth => Some("needs_auth"),
            Self::Cancelled => Some("cancelled"),
            Self::Skipped { .. } => Some("skipped"),
            Self::Failed { class, .. } if class.is_retryable() => Some("retry"),
            Self::Failed { .. } => Some("fatal"),
            Self::Defer { .. } | Self::Superseded => None,
        }
    }
}

/// What the queue records when an attempt ends: the right-hand side of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Terminal: the run succeeded.
    Succeeded,
    /// Terminal: a connection needs the user's authorisation.
    NeedsAuth,
    /// Terminal: cancelled by an operator.
    Cancelled,
    /// Terminal, the attempt refunded: the run was not started.
    Skipped {
        /// Why, for `skip_reason`.
        reason: &'static str,
        /// What exactly, for `skip_detail`.
        detail: String,
    },
    /// State `failed`: another attempt after `after`.
    Retry {
        /// The error, for `last_error`.
        error: String,
        /// Its class, for `error_class`.
        class: ErrorClass,
        /// The delay before the next attempt.
        after: Duration,
    },
    /// State `dead`, with a `<p>:q:dead` entry.
    Dead {
        /// The error, for `last_error`.
        error: String,
        /// Its class, for `error_class`.
        class: ErrorClass,
    },
    /// Queued again after `after` without counting the attempt (the user's lease was held).
    Defer {
        /// The delay.
        after: Duration,
    },
    /// Queued again now without counting the attempt (shutdown or lost lease).
    Release,
}

impl Disposition {
    /// The queue action's name: the finish script's mode and the `agentcron_jobs_total` label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::NeedsAuth => "needs_auth",
            Self::Cancelled => "cancelled",
            Self::Skipped { .. } => "skipped",
            Self::Retry { .. } => "retry",
            Self::Dead { .. } => "dead",
            Self::Defer { .. } => "defer",
            Self::Release => "release",
        }
    }

    /// The run's state once the action is recorded.
    pub fn run_state(&self) -> RunState {
        match self {
            Self::Succeeded => RunState::Succeeded,
            Self::NeedsAuth => RunState::NeedsAuth,
            Self::Cancelled => RunState::Cancelled,
            Self::Skipped { .. } => RunState::Skipped,
            Self::Retry { .. } => RunState::Failed,
            Self::Dead { .. } => RunState::Dead,
            Self::Defer { .. } | Self::Release => RunState::Queued,
        }
    }

    /// Whether the action records a state the run reached (not a deferral or a release).
    pub fn is_outcome(&self) -> bool {
        !matches!(self, Self::Defer { .. } | Self::Release)
    }

    /// Whether the attempt counts towards `max_attempts` (else it is refunded).
    pub fn counts_attempt(&self) -> bool {
        !matches!(self, Self::Defer { .. } | Self::Release | Self::Skipped { .. })
    }
}

/// Where an attempt stands when it ends: the left-hand conditions of the table.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// This attempt, 1-based.
    pub number: u32,
    /// `worker.max_attempts`.
    pub max: u32,
    /// The worker itself stopped the run (shutdown grace over, or its lease lost): an
    /// unfinished run is released, not failed.
    pub stopped: bool,
}

/// The table: what to record for `outcome`, with the next attempt's backoff from `policy`.
pub fn decide(outcome: Outcome, attempt: Attempt, policy: &RetryPolicy) -> Disposition {
    let retryable = |class: ErrorClass| class.is_retryable();
    match outcome {
        Outcome::Succeeded => Disposition::Succeeded,
        Outcome::NeedsAuth => Disposition::NeedsAuth,
        Outcome::Skipped { reason, detail } => Disposition::Skipped { reason, detail },
        Outcome::Defer { after } => Disposition::Defer { after },
        Outcome::Superseded => Disposition::Release,
        Outcome::Cancelled if attempt.stopped => Disposition::Release,
        Outcome::Failed { class, .. } if attempt.stopped && retryable(class) => {
            Disposition::Release
        }
        Outcome::Cancelled => Disposition::Cancelled,
        Outcome::Failed { error, class, .. } if !retryable(class) => {
            Disposition::Dead { error, class }
        }
        Outcome::Failed { error, class, .. } if attempt.number >= attempt.max => {
            let error = format!("{error} (gave up after {} attempts)", attempt.number);
            Disposition::Dead { error, class }
        }
        Outcome::Failed { error, class, after } => {
            let backoff = policy.delay(attempt.number.saturating_sub(1), fastrand::f64());
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
            budget: None,
        }
    }

    fn failed(class: ErrorClass, after: Option<Duration>) -> Outcome {
        Outcome::Failed { error: "503".to_owned(), class, after }
    }

    fn retry(class: ErrorClass, secs: u64) -> Disposition {
        Disposition::Retry { error: "503".to_owned(), class, after: Duration::from_secs(secs) }
    }

    fn dead(error: &str, class: ErrorClass) -> Disposition {
        Disposition::Dead { error: error.to_owned(), class }
    }

    /// One row: the outcome, attempt number (of 3), whether the worker stopped, and the
    /// expected action, state and whether the attempt counts.
    fn check(outcome: Outcome, number: u32, stopped: bool, expect: &Disposition, state: RunState) {
        let label = format!("{outcome:?} attempt {number} stopped {stopped}");
        let attempt = Attempt { number, max: 3, stopped };
        let got = decide(outcome, attempt, &policy());
        assert_eq!(&got, expect, "{label}");
        assert_eq!(got.run_state(), state, "{label}");
        let refunded = matches!(
            got,
            Disposition::Defer { .. } | Disposition::Release | Disposition::Skipped { .. }
        );
        assert_eq!(got.counts_attempt(), !refunded, "{label}");
    }

    #[test]
    fn the_table() {
        use {Disposition as D, ErrorClass as C, RunState as S};
        let secs = Duration::from_secs;
        check(Outcome::Succeeded, 1, false, &D::Succeeded, S::Succeeded);
        check(Outcome::Succeeded, 1, true, &D::Succeeded, S::Succeeded);
        check(Outcome::NeedsAuth, 3, false, &D::NeedsAuth, S::NeedsAuth);
        check(Outcome::Cancelled, 1, false, &D::Cancelled, S::Cancelled);
        check(Outcome::Cancelled, 1, true, &D::Release, S::Queued);
        let (reason, detail) = ("budget", "user_daily: 2 of 1 tokens used".to_owned());
        let skipped = D::Skipped { reason, detail: detail.clone() };
        check(Outcome::Skipped { reason, detail }, 1, false, &skipped, S::Skipped);
        check(Outcome::Defer { after: secs(5) }, 3, false, &D::Defer { after: secs(5) }, S::Queued);
        check(Outcome::Superseded, 2, false, &D::Release, S::Queued);
        for class in [C::Transient, C::Timeout, C::Panic] {
            check(failed(class, None), 1, true, &D::Release, S::Queued);
            check(failed(class, None), 1, false, &retry(class, 1), S::Failed);
            check(failed(class, None), 2, false, &retry(class, 2), S::Failed);
            check(failed(class, Some(secs(30))), 2, false, &retry(class, 30), S::Failed);
            let gave_up = dead("503 (gave up after 3 attempts)", class);
            check(failed(class, None), 3, false, &gave_up, S::Dead);
        }
        for class in [C::Permanent, C::Auth] {
            check(failed(class, None), 1, false, &dead("503", class), S::Dead);
            check(failed(class, None), 1, true, &dead("503", class), S::Dead);
        }
    }

    #[test]
    fn names_round_trip() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RunState::parse("done"), None);
        let terminal: Vec<_> = RunState::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        use RunState as S;
        let expect = [S::Succeeded, S::NeedsAuth, S::Dead, S::Cancelled, S::Skipped];
        assert_eq!(terminal, expect);
        assert_eq!(failed(ErrorClass::Auth, None).label(), Some("fatal"));
        assert_eq!(failed(ErrorClass::Timeout, None).label(), Some("retry"));
        assert_eq!(Outcome::Defer { after: Duration::ZERO }.label(), None);
    }
}
