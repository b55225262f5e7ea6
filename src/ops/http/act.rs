//! The operator actions under `/api/*`, POST only: requeue, cancel and retry a run (through the
//! queue's documented operator commands, [`crate::queue::Queue::requeue`], `cancel` and `retry`,
//! the only way ops changes run state), and the auth link of a notice (read, not minted: a new
//! link would need Scalekit). The guards (token, same origin) run before these handlers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::OpsState;
use super::json_api::ApiError;
use crate::ids::{RunId, UserId};
use crate::queue::{Action, QueueError};

/// Which operator command a POST names.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Requeue,
    Cancel,
    Retry,
}

pub(super) async fn requeue(
    state: State<OpsState>,
    id: Path<String>,
) -> Result<Response, ApiError> {
    act(state, id, Verb::Requeue).await
}

pub(super) async fn cancel(state: State<OpsState>, id: Path<String>) -> Result<Response, ApiError> {
    act(state, id, Verb::Cancel).await
}

pub(super) async fn retry(state: State<OpsState>, id: Path<String>) -> Result<Response, ApiError> {
    act(state, id, Verb::Retry).await
}

/// 200 with the [`Action`] when it took effect; 409 with it and why not when the run's state
/// does not allow it; 404 for no such run.
async fn act(
    State(state): State<OpsState>,
    Path(id): Path<String>,
    verb: Verb,
) -> Result<Response, ApiError> {
    let run_id = RunId::parse(&id).map_err(|_| ApiError::NotFound(format!("no run {id:?}")))?;
    let action = match verb {
        Verb::Requeue => state.queue.requeue(&run_id).await?,
        Verb::Cancel => state.queue.cancel(&run_id).await?,
        Verb::Retry => state.queue.retry(&run_id).await?,
    };
    tracing::info!(
        message = "Operator action from the ops server.",
        action = ?verb,
        run_id = %run_id,
        found = %action.found,
        applied = action.applied,
    );
    if action.found == "missing" {
        return Err(ApiError::NotFound(format!("no run {id:?}")));
    }
    if action.applied {
        return Ok(state.json(&action));
    }
    let mut response = state.json(&refusal(&action, verb));
    *response.status_mut() = StatusCode::CONFLICT;
    Ok(response)
}

/// The 409 body: the action and a sentence saying which states the command takes.
fn refusal(action: &Action, verb: Verb) -> serde_json::Value {
    let (found, id) = (&action.found, &action.run_id);
    let error = match verb {
        Verb::Requeue => {
            format!("{id} is {found}; only dead, failed, cancelled or skipped runs can be requeued")
        }
        Verb::Cancel => {
            format!("{id} is {found}; only queued, failed or running runs can be cancelled")
        }
        Verb::Retry if found == "due" => format!("{id}'s retry is already due"),
        Verb::Retry => {
            format!("{id} is {found}; only a failed run waiting for its retry can be retried now")
        }
    };
    json!({"error": error, "run_id": id, "found": found, "applied": false})
}

/// The notice's current auth link: `{"user","connection","auth_link","status"}`; 404 when
/// there is no such notice or it has no link (resolved).
pub(super) async fn notice_link(
    State(state): State<OpsState>,
    Path((user, connection)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::NotFound(format!("no open notice for {user:?} / {connection:?}"));
    let user_id = UserId::parse(&user).map_err(|_| missing())?;
    let mut conn = state.redis.clone();
    let (link, status): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(state.keys.notice(&user_id, &connection))
        .arg("auth_link")
        .arg("status")
        .query_async(&mut conn)
        .await
        .map_err(QueueError::from)?;
    let link = link.filter(|link| !link.is_empty()).ok_or_else(missing)?;
    Ok(state.json(&json!({
        "user": user_id, "connection": connection, "auth_link": link, "status": status,
    })))
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        tracing::warn!(message = "Ops action failed on Redis.", %error);
        Self::Unavailable
    }
}

/// A 405 for a GET of an action path, with the JSON error the API answers with.
pub(super) async fn post_only() -> Response {
    let message = "this action takes POST (with the token and no foreign Origin)";
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, "POST")],
        Json(json!({"error": message})),
    )
        .into_response()
}
