//! The JSON API's reads under `/api/*` (status, runs, one run, its transcript, notices), each
//! the same report the CLI prints with `--json`, redacted the same way; and the JSON error
//! every endpoint answers with. Reads only: the actions are `act.rs`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{DEFAULT_LIMIT, MAX_LIMIT, OpsState};
use crate::ids::RunId;
use crate::ops::report::{self, RunFilter};
use crate::outcome::RunState;
use crate::records::transcript;

pub(super) async fn status(State(state): State<OpsState>) -> Result<Response, ApiError> {
    let mut conn = state.redis.clone();
    let status = report::status(&mut conn, &state.keys, &state.config).await?;
    Ok(state.json(&status))
}

/// `/api/runs` parameters, as `agentcron runs` takes them. Unknown parameters are refused so
/// that a typo does not silently list everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsParams {
    user: Option<String>,
    state: Option<String>,
    schedule: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

pub(super) async fn runs(
    State(state): State<OpsState>,
    params: Result<Query<RunsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let filter = run_filter(params)?;
    let mut conn = state.redis.clone();
    let runs = report::runs(&mut conn, &state.keys, &filter).await?;
    Ok(state.json(&runs))
}

fn run_filter(params: RunsParams) -> Result<RunFilter, ApiError> {
    if let Some(name) = &params.state
        && RunState::parse(name).is_none()
    {
        let names: Vec<_> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::BadRequest(format!("state: expected one of {}", names.join(", "))));
    }
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit: expected 1 to {MAX_LIMIT}")))?,
    };
    let since_ms = params.since.as_deref().map(since).transpose()?;
    Ok(RunFilter {
        user: params.user,
        state: params.state,
        schedule: params.schedule,
        since_ms,
        limit,
    })
}

/// `since`: unix milliseconds, RFC 3339, or an age such as `1h` (as `agentcron runs --since`).
fn since(text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    crate::ops::report::since_ms(text).ok_or_else(|| {
        ApiError::BadRequest("since: expected unix ms, RFC 3339 or an age such as 1h".to_owned())
    })
}

/// The 404 of a run that does not exist.
fn no_run(id: &str) -> ApiError {
    ApiError::NotFound(format!("no run {id:?}"))
}

/// `id` as a run id; an invalid one names no run, so it is a 404 like a missing one.
fn known_run_id(id: &str) -> Result<RunId, ApiError> {
    RunId::parse(id).map_err(|_| no_run(id))
}

pub(super) async fn run(
    State(state): State<OpsState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run_id = known_run_id(&id)?;
    let mut conn = state.redis.clone();
    let detail = report::run(&mut conn, &state.keys, &run_id).await?;
    let detail = detail.ok_or_else(|| no_run(&id))?;
    Ok(state.json(&detail))
}

/// The transcript's lines, oldest first; 404 when neither the run nor a transcript exists.
pub(super) async fn run_transcript(
    State(state): State<OpsState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run_id = known_run_id(&id)?;
    let mut conn = state.redis.clone();
    let lines = transcript::lines(&mut conn, &state.keys, &run_id).await?;
    if lines.is_empty() && report::run(&mut conn, &state.keys, &run_id).await?.is_none() {
        return Err(no_run(&id));
    }
    Ok(state.json(&lines))
}

/// `?all=true` includes resolved notices.
pub(super) async fn notices(
    State(state): State<OpsState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    if let Some(name) = params.keys().find(|name| *name != "all") {
        return Err(ApiError::BadRequest(format!("unknown parameter {name:?}")));
    }
    let all = match params.get("all").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(_) => return Err(ApiError::BadRequest("all: expected true or false".to_owned())),
    };
    let mut conn = state.redis.clone();
    let notices = report::notices(&mut conn, &state.keys, all).await?;
    Ok(state.json(&notices))
}

/// A failed request, answered as JSON `{"error": "..."}`.
#[derive(Debug)]
pub(super) enum ApiError {
    BadRequest(String),
    Unauthorized,
    /// A cross-origin action.
    Forbidden(String),
    NotFound(String),
    /// Redis failed; logged here, not shown (its text may name hosts).
    Unavailable,
    Internal,
}

impl From<crate::records::RecordsError> for ApiError {
    fn from(error: crate::records::RecordsError) -> Self {
        tracing::warn!(message = "Ops request failed on Redis.", %error);
        Self::Unavailable
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, message),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable".to_owned()),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned()),
        };
        let mut response = (code, Json(json!({"error": message}))).into_response();
        if code == StatusCode::UNAUTHORIZED {
            let challenge = header::HeaderValue::from_static("Bearer");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ms_rfc3339_and_ages() {
        assert_eq!(since("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(since("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert!(since("1h").unwrap() < crate::records::now_ms());
        assert!(since("yesterday-ish").is_err());
    }
}
