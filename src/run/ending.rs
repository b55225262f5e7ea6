//! How an attempt of the pipeline ends: [`Finish`] when it did not fail, [`RunError`] when it
//! did, with the error's class for the outcome table. This module must not decide retries:
//! `crate::outcome` does, from the class.

use crate::api::ApiError;
use crate::ids::{RunId, SessionId, UserId};
use crate::outcome::ErrorClass;
use crate::ratelimit::RateLimitError;
use crate::records::RecordsError;
use crate::setup::SetupError;

use super::FailPoint;

/// Why a run could not be built or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A remote call failed (after its own retries).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Redis or a transcript file failed.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Setup is missing or failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The fleet-wide rate limiter failed.
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    /// Redis could not be reached or refused the client (the text names the host and why).
    #[error("{0}")]
    Connect(String),
    /// The run record does not exist.
    #[error("run {0} not found")]
    NotFound(RunId),
    /// Another run of the same user holds the user's lease.
    #[error("user {user} is busy with run {holder}")]
    Busy {
        /// The user.
        user: UserId,
        /// The run holding the lease.
        holder: RunId,
        /// When the lease expires unless renewed.
        retry_after: std::time::Duration,
    },
    /// The session ended without finishing the turn.
    #[error("session {session_id} ended: {reason}")]
    SessionEnded {
        /// The session.
        session_id: SessionId,
        /// `terminated`, `retries_exhausted`, `budget_reached`, …
        reason: String,
    },
    /// The session reported an error (`session.error`) and the turn ended without the work.
    #[error("session {session_id} reported {error_type}: {message}")]
    SessionFailed {
        /// The session.
        session_id: SessionId,
        /// `error.type`, such as `mcp_authentication_failed_error`.
        error_type: String,
        /// `error.message`.
        message: String,
        /// How to handle it, from the type.
        class: ErrorClass,
    },
    /// Another attempt of the run started while this one was stalled (its worker frozen past
    /// its lease); this one stopped before its next side effect.
    #[error("run {run_id} was taken over by a later attempt")]
    Fenced {
        /// The run.
        run_id: RunId,
    },
    /// A setup object (the MCP config, the agent, the environment) is missing at the vendor;
    /// the run waits, queued, until `setup` stores it again.
    #[error(
        "the {object} of the setup is missing at the vendor: run `agentcron setup` (or set setup.auto)"
    )]
    SetupMissing {
        /// `mcp config`, `agent` or `environment`.
        object: &'static str,
        /// When to look again.
        retry_after: std::time::Duration,
    },
    /// The prompt's template uses a value the user's profile does not set, with no default.
    #[error(
        "missing_value:{0}: the prompt uses {{{0}}}, which the user's profile does not set and which has no default"
    )]
    MissingValue(String),
    /// A passing condition ended the attempt; the next one may get through.
    #[error("{0}; trying again")]
    Again(String),
    /// Shutdown or timeout stopped the run at a safe point; it is resumable.
    #[error("cancelled at a safe point")]
    Cancelled,
    /// A test fail point fired.
    #[error("fail point {0:?}")]
    FailPoint(FailPoint),
}

impl From<redis::RedisError> for RunError {
    fn from(error: redis::RedisError) -> Self {
        Self::Records(RecordsError::Redis(error))
    }
}

impl RunError {
    /// How the worker should treat the failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api(error) => error.class(),
            Self::SessionFailed { class, .. } => *class,
            Self::Records(_)
            | Self::Connect(_)
            | Self::Busy { .. }
            | Self::Again(_)
            | Self::SetupMissing { .. }
            | Self::Cancelled
            | Self::Fenced { .. }
            | Self::FailPoint(_) => ErrorClass::Transient,
            Self::Setup(SetupError::Redis(_)) | Self::RateLimit(RateLimitError::Redis(_)) => {
                ErrorClass::Transient
            }
            Self::Setup(SetupError::Api(error)) => error.class(),
            Self::Setup(_)
            | Self::RateLimit(_)
            | Self::NotFound(_)
            | Self::SessionEnded { .. }
            | Self::MissingValue(_) => ErrorClass::Permanent,
        }
    }
}

impl RunError {
    /// True when Redis, not the run, failed: passing trouble (see [`crate::transient`]) that
    /// outlasted the call's own retries. Such an attempt is not the run's fault and is not
    /// counted; the run resumes from its persisted phase.
    pub fn is_redis_trouble(&self) -> bool {
        match self {
            Self::Records(RecordsError::Redis(error))
            | Self::Setup(SetupError::Redis(error))
            | Self::RateLimit(RateLimitError::Redis(error)) => {
                crate::transient::is_transient(error)
            }
            _ => false,
        }
    }

    /// The delay the failure asks for before the next attempt, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Busy { retry_after, .. } | Self::SetupMissing { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Api(error) => error.retry_after(),
            _ => None,
        }
    }
}

/// How a run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The turn ended normally.
    Succeeded {
        /// The session.
        session_id: SessionId,
    },
    /// Connections need the user; notices are open. Not retried.
    NeedsAuth {
        /// The inactive connections.
        connections: Vec<String>,
    },
    /// Not started, and not retried: starting would have gone over a budget.
    Skipped {
        /// Why: `budget`.
        reason: &'static str,
        /// Which budget, and what it allows and was used.
        detail: String,
    },
}
