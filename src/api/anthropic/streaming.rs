//! The Anthropic client's event streams: opening `sessions.events.stream` directly or through
//! reqwest, and resuming a session without repeating an event.
//!
//! Owns how a stream is opened and de-duplicated. It must not decode frames (that is
//! `events.rs`) or decide what a run does with an event.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use url::Url;

use super::events::ENDPOINT as STREAM;
use super::frames;
use super::{API, Client, STREAM_REQUEST_TIMEOUT, SessionEvent, check, status_error};
use crate::api::stream::{self, Direct, Streams};
use crate::api::{ApiError, path_segment, with_retries};
use crate::config::HttpConfig;
use crate::telemetry::metrics;

impl Client {
    /// Waits for the pacer's turn, when the client has a pacer (every request, this one and
    /// the JSON calls of `anthropic.rs`).
    pub(super) async fn wait_turn(&self, endpoint: &'static str) -> Result<(), ApiError> {
        crate::api::pace::wait_turn(self.pacer.as_deref(), API, endpoint).await
    }
}

/// What bounds an event stream.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// No byte this long ends the stream (`http.stream_idle_timeout`).
    pub(super) idle_timeout: std::time::Duration,
    /// Events with more data are left out, recorded by size (`http.max_event_bytes`).
    pub(super) max_event_bytes: usize,
}

impl From<&HttpConfig> for Limits {
    fn from(config: &HttpConfig) -> Self {
        Self { idle_timeout: config.stream_idle_timeout, max_event_bytes: config.max_event_bytes }
    }
}

impl Client {
    /// Opens `sessions.events.stream`: events from now on (the stream does not replay). Opening
    /// is retried like any call; once open, a dropped or idle stream ends with a transient
    /// error and the caller resumes with [`Client::resume_events`].
    ///
    /// # Errors
    /// [`ApiError`] when the stream cannot be opened.
    pub async fn stream_events(
        &self,
        session_id: &str,
    ) -> Result<impl Stream<Item = Result<SessionEvent, ApiError>> + Send + 'static, ApiError> {
        let url = format!("{}/v1/sessions/{}/events/stream", self.base, path_segment(session_id));
        let Limits { idle_timeout: idle, max_event_bytes: max } = self.streaming;
        match &self.streams {
            Streams::Direct(direct) => {
                let unusable = |_| ApiError::io(API, STREAM, &stream::unusable("bad stream URL"));
                let url = Url::parse(&url).map_err(unusable)?;
                let response = with_retries(API, STREAM, &self.base, self.policy, || async {
                    let opened = self.open_direct(direct, &url).await;
                    crate::api::pace::note_refusal(self.pacer.as_deref(), STREAM, &opened).await;
                    opened
                })
                .await?;
                Ok(frames::decode(response.into_stream(), idle, max).left_stream())
            }
            Streams::Reqwest => {
                let response = with_retries(API, STREAM, &self.base, self.policy, || async {
                    self.wait_turn(STREAM).await?;
                    let request = self.headers(self.http.get(&url)).timeout(STREAM_REQUEST_TIMEOUT);
                    let opened = check(STREAM, request.send().await).await;
                    crate::api::pace::note_refusal(self.pacer.as_deref(), STREAM, &opened).await;
                    opened
                })
                .await?;
                Ok(frames::decode(response.bytes_stream(), idle, max).right_stream())
            }
        }
    }

    async fn open_direct(&self, direct: &Direct, url: &Url) -> Result<stream::Response, ApiError> {
        self.wait_turn(STREAM).await?;
        let opened = direct.get(url, &self.common_headers()).await;
        let response = match opened {
            Ok(response) => response,
            Err(error) => {
                metrics::api_request(API.as_str(), STREAM, "transport");
                return Err(ApiError::io(API, STREAM, &error));
            }
        };
        metrics::api_request(API.as_str(), STREAM, response.status.as_str());
        crate::api::route::record_status(response.status.as_u16());
        if response.status.is_success() {
            return Ok(response);
        }
        let (status, headers) = (response.status, response.headers.clone());
        let text = response.text(self.streaming.idle_timeout).await;
        Err(status_error(STREAM, status, &headers, &text))
    }

    /// Re-attaches to a session: opens the stream first, then lists the history, and yields
    /// every event whose id is not in `seen`, each once, history first.
    ///
    /// # Errors
    /// [`ApiError`] when the stream cannot be opened or the history cannot be listed.
    pub async fn resume_events(
        &self,
        session_id: &str,
        mut seen: HashSet<String>,
    ) -> Result<impl Stream<Item = Result<SessionEvent, ApiError>> + Send + 'static, ApiError> {
        let live = self.stream_events(session_id).await?;
        let history = self.list_all_events(session_id).await?;
        let missed: Vec<_> = history
            .into_iter()
            .filter(|e| e.id().is_none_or(|id| seen.insert(id.to_owned())))
            .collect();
        let live = live.filter(move |res| {
            let fresh = match res {
                Ok(event) => event.id().is_none_or(|id| seen.insert(id.to_owned())),
                Err(_) => true,
            };
            std::future::ready(fresh)
        });
        Ok(futures::stream::iter(missed.into_iter().map(Ok)).chain(live))
    }
}
