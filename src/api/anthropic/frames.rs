//! The event stream's body turned into session events: bytes to SSE frames (`sse.rs`), frames
//! to events. `ping` frames, comments and empty data are skipped; a frame whose data is not
//! JSON is counted and skipped; one over the size limit is recorded by its size; `event: error`
//! becomes [`ApiError::StreamError`]. A stream silent for longer than the idle timeout ends with
//! a transient error so the caller reconnects. This module must not read what an event means
//! beyond `type` (that is `events.rs`).

use std::collections::VecDeque;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::events::{ENDPOINT, SessionEvent};
use super::sse::{SseDecoder, SseFrame};
use crate::api::{Api, ApiError};

/// Turns an SSE response body into session events. The idle timeout runs between any bytes
/// of the body, comment lines (`:keep-alive`, heartbeats) included: a quiet agent that keeps
/// its stream alive is not cut off; only a silent connection is.
pub(crate) fn decode<B, E>(
    body: impl Stream<Item = Result<B, E>> + Send + 'static,
    idle_timeout: Duration,
    max_event_bytes: usize,
) -> impl Stream<Item = Result<SessionEvent, ApiError>> + Send + 'static
where
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let start = (Box::pin(watched(body, idle_timeout)), SseDecoder::new(max_event_bytes));
    futures::stream::unfold(Some((start, VecDeque::new())), |state| async move {
        let ((mut body, mut decoder), mut ready) = state?;
        loop {
            while let Some(frame) = ready.pop_front() {
                let decoded = match frame {
                    SseFrame::Event { name, data } => frame_event(&name, &data),
                    SseFrame::Oversize { name, bytes } => oversize(&name, bytes),
                };
                match decoded {
                    Frame::Skip => {}
                    Frame::Event(event) => {
                        return Some((Ok(event), Some(((body, decoder), ready))));
                    }
                    Frame::Error(error) => return Some((Err(error), None)),
                }
            }
            match body.next().await {
                None => return None,
                Some(Err(error)) => return Some((Err(transport(error.to_string())), None)),
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    decoder.feed(chunk.as_ref(), &mut out);
                    ready.extend(out);
                }
            }
        }
    })
}

/// An event whose data passed the limit: recorded as its name and size, so the transcript
/// says what was left out, and the turn goes on.
fn oversize(name: &str, bytes: usize) -> Frame {
    crate::telemetry::metrics::stream_frame_skipped("oversize");
    tracing::warn!(
        message = "An event-stream event over the size limit was left out.",
        event = name,
        bytes
    );
    let name = if name.is_empty() { "unknown" } else { name };
    Frame::Event(SessionEvent::from_json(
        json!({"type": name, "agentcron_truncated": {"bytes": bytes}}),
    ))
}

/// Why the body stopped.
#[derive(Debug)]
enum BodyError {
    /// No byte at all for the idle timeout.
    Idle(Duration),
    /// The body itself failed.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Idle(timeout) => {
                write!(f, "no event or keep-alive for {}s", timeout.as_secs_f64())
            }
            Self::Read(error) => f.write_str(error),
        }
    }
}

/// `body` with the idle timeout between its chunks; ends after the first error.
fn watched<B, E>(
    body: impl Stream<Item = Result<B, E>> + Send + 'static,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<B, BodyError>> + Send + 'static
where
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    futures::stream::unfold(Some(Box::pin(body)), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle_timeout, body.next()).await {
            Err(_) => Some((Err(BodyError::Idle(idle_timeout)), None)),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some((Err(BodyError::Read(error.to_string())), None)),
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
        }
    })
}

enum Frame {
    Skip,
    Event(SessionEvent),
    Error(ApiError),
}

fn frame_event(name: &str, data: &str) -> Frame {
    if name == "ping" || data.trim().is_empty() {
        return Frame::Skip;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        // One bad frame must not end a healthy turn: counted, logged, skipped.
        crate::telemetry::metrics::stream_frame_skipped("not_json");
        tracing::warn!(
            message = "Skipped an event-stream frame whose data is not JSON.",
            event = name,
            bytes = data.len()
        );
        return Frame::Skip;
    };
    if name == "error" || value.get("type").and_then(Value::as_str) == Some("error") {
        let field =
            |key: &str| value.pointer(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Frame::Error(ApiError::StreamError {
            api: Api::Anthropic,
            endpoint: ENDPOINT,
            error_type: field("/error/type"),
            message: field("/error/message"),
        });
    }
    if value.get("type").and_then(Value::as_str) == Some("ping") {
        return Frame::Skip;
    }
    Frame::Event(SessionEvent::from_json(value))
}

fn transport(message: String) -> ApiError {
    ApiError::Transport {
        api: Api::Anthropic,
        endpoint: ENDPOINT,
        message,
        class: crate::api::retry::classify_cut_stream(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert!(matches!(frame_event("ping", r#"{"type":"ping"}"#), Frame::Skip));
        assert!(matches!(frame_event("message", ""), Frame::Skip));
        assert!(matches!(
            frame_event("agent.message", r#"{"type":"agent.message","content":[]}"#),
            Frame::Event(_)
        ));
        let Frame::Error(error) = frame_event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
        ) else {
            panic!("an error frame is an error")
        };
        assert_eq!(error.class(), crate::outcome::ErrorClass::Transient);
        assert!(
            matches!(frame_event("agent.message", "{not json"), Frame::Skip),
            "skipped, not fatal"
        );
    }

    /// Comment lines keep the stream alive: a quiet stretch longer than the idle timeout, made
    /// of heartbeats, is not a timeout; real silence is.
    #[tokio::test]
    async fn heartbeats_reset_the_idle_timer_and_silence_does_not() {
        let event = "data: {\"type\":\"session.status_idle\",\"id\":\"sevt_1\"}\n\n";
        let chunks = |pauses: Vec<(u64, &'static str)>| {
            futures::stream::iter(pauses).then(|(ms, chunk)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, std::io::Error>(chunk.as_bytes().to_vec())
            })
        };
        let idle = Duration::from_millis(1_000);
        // 1.2 s with only comments, each 300 ms after the last: never 1 s without a byte.
        let beat = ":keep-alive\n\n";
        let beating = vec![(300, beat), (300, beat), (300, beat), (300, event)];
        let got: Vec<_> = decode(chunks(beating), idle, 1024).collect().await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].is_ok(), "heartbeats 300 ms apart, then the event: {got:?}");
        let silent = vec![(1_500, event)];
        let got: Vec<_> = decode(chunks(silent), idle, 1024).collect().await;
        assert!(matches!(got.as_slice(), [Err(_)]), "1.5 s of silence times out: {got:?}");
    }
}
