//! What a turn's events say, one event at a time: whether the turn goes on, waits for our
//! answer to a tool use, or is over — and whether it did the work. Pure, so the live stream and
//! a resumed attempt (fed the recorded history) reach the same verdict; it must not call
//! anything.
//!
//! The turn is over only at a `session.status_idle` that follows the echo of our
//! `user.message` (an idle from before it is stale). A `session.error` whose `retry_status` is
//! not `retrying` fails the turn, whatever the idle after it says: the agent stopped without
//! doing the work.

use crate::api::anthropic::{EventKind, SessionEvent, StopReason};
use crate::api::retry;
use crate::ids::SessionId;

use crate::run::RunError;

/// What to do after an event.
#[derive(Debug)]
pub(crate) enum Step {
    /// Keep reading.
    Continue,
    /// Answer these tool uses, then keep reading.
    Answer(Vec<String>),
    /// The turn is over and did the work.
    Done,
    /// The turn is over without doing the work.
    Failed(RunError),
}

/// An error the session reported, kept until the turn ends.
#[derive(Debug, Clone)]
struct Reported {
    error_type: String,
    message: String,
}

/// The turn's state as its events arrive.
#[derive(Debug)]
pub(crate) struct TurnState {
    session_id: SessionId,
    echoed: bool,
    reported: Option<Reported>,
}

impl TurnState {
    /// A turn of `session_id`; `echoed` when our message is known to have been echoed.
    pub(crate) fn new(session_id: SessionId, echoed: bool) -> Self {
        Self { session_id, echoed, reported: None }
    }

    /// Takes in one event.
    pub(crate) fn observe(&mut self, event: &SessionEvent) -> Step {
        match &event.kind {
            EventKind::UserMessage => {
                // Our message starts the turn; what was reported before belongs to none of ours.
                self.echoed = true;
                self.reported = None;
                Step::Continue
            }
            EventKind::Error { error_type, message, retry_status } => {
                if retry_status.as_deref() == Some("retrying") {
                    tracing::info!(message = "The session reported an error it is retrying.", error_type = %error_type, detail = %message);
                } else {
                    tracing::warn!(message = "The session reported an error; the turn has failed.", error_type = %error_type, detail = %message);
                    self.reported =
                        Some(Reported { error_type: error_type.clone(), message: message.clone() });
                }
                Step::Continue
            }
            EventKind::Terminated => Step::Failed(self.failure("terminated")),
            EventKind::Idle { .. } if !self.echoed => {
                tracing::info!(message = "An idle from before our message; waiting for the turn.", session_id = %self.session_id);
                Step::Continue
            }
            EventKind::Idle { stop_reason } => match stop_reason {
                _ if self.reported.is_some() => Step::Failed(self.failure("error")),
                StopReason::EndTurn => Step::Done,
                StopReason::RequiresAction { event_ids } => Step::Answer(event_ids.clone()),
                StopReason::Other(reason) => Step::Failed(self.failure(reason)),
            },
            _ => Step::Continue,
        }
    }

    /// The error the session reported, else that it ended for `reason`.
    fn failure(&mut self, reason: &str) -> RunError {
        let session_id = self.session_id.clone();
        match self.reported.take() {
            Some(Reported { error_type, message }) => RunError::SessionFailed {
                session_id,
                class: retry::classify_session_error(&error_type),
                error_type,
                message,
            },
            None => RunError::SessionEnded { session_id, reason: reason.to_owned() },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::outcome::ErrorClass;

    fn event(raw: serde_json::Value) -> SessionEvent {
        SessionEvent::from_json(raw)
    }

    fn idle(reason: &str) -> SessionEvent {
        event(json!({"type": "session.status_idle", "stop_reason": {"type": reason}}))
    }

    fn error(error_type: &str, retry_status: &str) -> SessionEvent {
        event(json!({"type": "session.error", "error": {"type": error_type, "message": "m",
            "retry_status": {"type": retry_status}}}))
    }

    fn turn(events: &[SessionEvent]) -> Vec<Step> {
        let mut state = TurnState::new(SessionId::from("sesn_1".to_owned()), false);
        events.iter().map(|event| state.observe(event)).collect()
    }

    fn message() -> SessionEvent {
        event(json!({"type": "user.message", "content": []}))
    }

    #[test]
    fn an_idle_before_the_echo_is_stale() {
        let steps = turn(&[idle("end_turn"), message(), idle("end_turn")]);
        assert!(matches!(steps[0], Step::Continue));
        assert!(matches!(steps[2], Step::Done));
    }

    #[test]
    fn a_session_error_fails_the_turn_with_its_class() {
        let steps = turn(&[
            message(),
            error("mcp_authentication_failed_error", "terminal"),
            idle("end_turn"),
        ]);
        let Step::Failed(RunError::SessionFailed { error_type, class, .. }) = &steps[2] else {
            panic!("{steps:?}")
        };
        assert_eq!(
            (error_type.as_str(), *class),
            ("mcp_authentication_failed_error", ErrorClass::Auth)
        );
        let steps = turn(&[
            message(),
            error("model_overloaded_error", "exhausted"),
            idle("retries_exhausted"),
        ]);
        assert!(
            matches!(&steps[2], Step::Failed(e) if e.class() == ErrorClass::Transient),
            "{steps:?}"
        );
        let steps = turn(&[message(), error("billing_error", "terminal"), idle("end_turn")]);
        assert!(
            matches!(&steps[2], Step::Failed(e) if e.class() == ErrorClass::Permanent),
            "{steps:?}"
        );
    }

    #[test]
    fn an_error_being_retried_or_from_before_our_message_does_not_fail_it() {
        let steps =
            turn(&[message(), error("model_overloaded_error", "retrying"), idle("end_turn")]);
        assert!(matches!(steps[2], Step::Done), "{steps:?}");
        let steps = turn(&[error("unknown_error", "terminal"), message(), idle("end_turn")]);
        assert!(matches!(steps[2], Step::Done), "{steps:?}");
    }

    #[test]
    fn requires_action_asks_for_an_answer_and_termination_fails() {
        let asks = event(json!({"type": "session.status_idle",
            "stop_reason": {"type": "requires_action", "event_ids": ["sevt_1"]}}));
        let steps = turn(&[message(), asks, event(json!({"type": "session.status_terminated"}))]);
        assert!(matches!(&steps[1], Step::Answer(ids) if ids == &["sevt_1"]));
        assert!(
            matches!(&steps[2], Step::Failed(RunError::SessionEnded { reason, .. }) if reason == "terminated")
        );
    }
}
