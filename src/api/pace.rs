//! Pacing of Anthropic requests: the rate class the vendor counts each request in, and the
//! hook ([`Pacer`]) a client waits on before it sends one.
//!
//! Anthropic documents its Managed Agents limits per class: creates (agents, sessions, vaults),
//! every other agent, session and vault call, and environment calls. A client with a pacer
//! waits for a turn in the request's class before every attempt, retries included (the vendor
//! counts each). This module must not know how turns are shared: the run pipeline implements
//! [`Pacer`] over the fleet-wide buckets in Redis.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::{Api, ApiError};
use crate::outcome::ErrorClass;

/// One of Anthropic's documented rate classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Creating an agent, a session, a vault or a vault credential.
    Create,
    /// Any other agent, session or vault call: retrieve, list, update, archive, delete, send
    /// and list events, open the event stream.
    Request,
    /// Any environment call (a limit of its own).
    Environment,
}

impl RateClass {
    /// The class of the call named `endpoint` (`sessions.create`, `vaults.credentials.update`,
    /// `environments.list`, …): environment calls are their own class, every other `….create`
    /// is a create, everything else a request.
    pub fn of(endpoint: &str) -> Self {
        if endpoint.starts_with("environments.") {
            Self::Environment
        } else if endpoint.ends_with(".create") {
            Self::Create
        } else {
            Self::Request
        }
    }

    /// The class's name: `creates`, `requests` or `environments`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "creates",
            Self::Request => "requests",
            Self::Environment => "environments",
        }
    }
}

/// What a pacer's wait resolves to: `Err` with a reason when it could not tell whether a turn
/// is free (its store failed); the request is then not sent.
pub type Turn<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Waits for a turn to send one request of a class.
pub trait Pacer: Send + Sync + fmt::Debug {
    /// Resolves once one request of `class` may be sent.
    fn turn(&self, class: RateClass) -> Turn<'_>;

    /// The vendor refused a request of `class` with a 429 asking to wait `pause`: a shared pacer
    /// holds every caller back for that long. The default does nothing.
    fn refused(&self, class: RateClass, pause: std::time::Duration) -> Turn<'_> {
        let _ = (class, pause);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Tells `pacer` about a 429 in `res` (how long it asked to wait; a second when it did not
/// say). A pacer that fails to take note changes nothing: the request's own retry still waits.
pub(crate) async fn note_refusal<T>(
    pacer: Option<&dyn Pacer>,
    endpoint: &'static str,
    res: &Result<T, ApiError>,
) {
    let (Some(pacer), Err(error)) = (pacer, res) else { return };
    if error.status() == Some(429) {
        let pause = error.retry_after().unwrap_or(std::time::Duration::from_secs(1));
        if let Err(reason) = pacer.refused(RateClass::of(endpoint), pause).await {
            tracing::debug!(message = "Could not hold the fleet back after a 429.", reason);
        }
    }
}

/// Waits on `pacer`, if any, before one request of `endpoint`. A pacer that fails makes a
/// transient error: the request was not sent, and retrying may find the store back.
pub(crate) async fn wait_turn(
    pacer: Option<&dyn Pacer>,
    api: Api,
    endpoint: &'static str,
) -> Result<(), ApiError> {
    let Some(pacer) = pacer else { return Ok(()) };
    pacer.turn(RateClass::of(endpoint)).await.map_err(|reason| ApiError::Transport {
        api,
        endpoint,
        message: format!("not sent: the rate limiter failed: {reason}"),
        class: ErrorClass::Transient,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_falls_in_its_documented_class() {
        for (endpoint, class) in [
            ("sessions.create", RateClass::Create),
            ("vaults.create", RateClass::Create),
            ("vaults.credentials.create", RateClass::Create),
            ("agents.create", RateClass::Create),
            ("sessions.events.send", RateClass::Request),
            ("sessions.events.list", RateClass::Request),
            ("sessions.events.stream", RateClass::Request),
            ("sessions.retrieve", RateClass::Request),
            ("sessions.archive", RateClass::Request),
            ("sessions.list", RateClass::Request),
            ("vaults.list", RateClass::Request),
            ("vaults.credentials.list", RateClass::Request),
            ("vaults.credentials.update", RateClass::Request),
            ("environments.create", RateClass::Environment),
            ("environments.list", RateClass::Environment),
        ] {
            assert_eq!(RateClass::of(endpoint), class, "{endpoint}");
        }
    }
}
