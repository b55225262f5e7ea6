//! Sessions: create, retrieve, update, list, delete, archive. A session snapshots
//! its agent (with any overrides) at creation. Its user and run id for the audit come from
//! metadata `user` (or `identifier`) and `run_id`, else from the title: a run id
//! `<schedule>:<user>:<tick>` in the title gives the user, otherwise a word containing `@`.
//! An unknown vault id is a 404 `not_found_error` and an audit violation. Deleted sessions are
//! kept for the audit but answer 404.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};

use super::events::{EventsOrigin, send_events};
use super::{Page, Shared, archive_object, fields, metadata, object_body, patch_metadata};
use crate::sim::agent::TurnFaults;
use crate::sim::audit;
use crate::sim::error::AnthropicError;
use crate::sim::ids;
use crate::sim::query::Params;
use crate::sim::session::SessionRt;
use crate::sim::state::{Session, SimState};

/// The wire form of a session.
pub(crate) fn session_json(session: &Session) -> Value {
    let (status, updated_at) = {
        let live = session.rt.lock();
        (live.status, live.updated_at.clone())
    };
    json!({
        "type": "session", "id": session.id, "agent": *session.agent,
        "environment_id": session.environment_id, "title": session.title,
        "metadata": session.metadata, "vault_ids": session.vault_ids, "resources": [],
        "outcome_evaluations": [], "status": status,
        "stats": {"active_seconds": 0.0, "duration_seconds": 0.0},
        "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                  "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0}},
        "budget": null, "deployment_id": null,
        "created_at": session.created_at, "updated_at": updated_at, "archived_at": session.archived_at,
    })
}

/// `POST /v1/sessions`.
pub(super) async fn create(
    State(state): Shared,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::session_create(&body)?;
    let agent = snapshot(&state, body.get("agent"))?;
    let environment_id = super::required_str(&body, "environment_id")?;
    let vault_ids = vault_ids(body.get("vault_ids"))?;
    let title = body.get("title").and_then(Value::as_str).map(str::to_owned);
    let metadata = match metadata(&body)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let now = ids::now();
    let id = state.ids.anthropic("sesn");
    let mut store = state.store();
    if !store.environments.contains_key(&environment_id) {
        return Err(AnthropicError::not_found("environment", &environment_id));
    }
    if let Some(unknown) = vault_ids.iter().find(|vault| !store.vaults.contains_key(*vault)) {
        state.audit.violation(
            audit::UNKNOWN_VAULT,
            Some(&id),
            format!("sessions.create referenced unknown vault {unknown}"),
        );
        return Err(AnthropicError::not_found("vault", unknown));
    }
    let (user, run_id) = identify(&metadata, title.as_deref());
    let session = Session {
        id: id.clone(),
        agent: Arc::new(agent),
        environment_id,
        title,
        metadata,
        vault_ids,
        created_at: now.clone(),
        archived_at: None,
        run_id,
        user,
        rt: Arc::new(SessionRt::new(&now)),
    };
    let wire = session_json(&session);
    store.sessions.insert(id.clone(), session);
    drop(store);
    if let Some(Value::Array(initial)) = body.get("initial_events") {
        send_events(&state, &id, initial, EventsOrigin::Initial, TurnFaults::default())?;
    }
    Ok(Json(wire))
}

/// The agent snapshot: the agent without timestamps and metadata, overrides applied.
fn snapshot(state: &SimState, agent: Option<&Value>) -> Result<Value, AnthropicError> {
    let (id, version, overrides) = match agent {
        Some(Value::String(id)) => (id.clone(), None, None),
        Some(object @ Value::Object(_)) => {
            let id = object["id"]
                .as_str()
                .ok_or_else(|| AnthropicError::invalid("agent.id: Field required"))?;
            let overrides = (object["type"] == "agent_with_overrides").then_some(object);
            (id.to_owned(), object["version"].as_u64(), overrides)
        }
        _ => return Err(AnthropicError::invalid("agent: Field required")),
    };
    let agent = super::agents::find(state, &id, version)?;
    if !agent["archived_at"].is_null() {
        return Err(AnthropicError::invalid(format!("agent {id} is archived")));
    }
    let mut snapshot = agent.as_ref().clone();
    if let Some(map) = snapshot.as_object_mut() {
        for field in ["created_at", "updated_at", "archived_at", "metadata"] {
            map.remove(field);
        }
    }
    for field in ["model", "system", "tools", "mcp_servers", "skills"] {
        if let Some(value) = overrides.and_then(|o| o.get(field)) {
            snapshot[field] = value.clone();
        }
    }
    Ok(snapshot)
}

fn vault_ids(value: Option<&Value>) -> Result<Vec<String>, AnthropicError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| AnthropicError::invalid("vault_ids: must be strings"))
            })
            .collect(),
        Some(_) => Err(AnthropicError::invalid("vault_ids: must be a list")),
    }
}

/// `(user, run_id)` of a session, for the audit.
fn identify(
    metadata: &Map<String, Value>,
    title: Option<&str>,
) -> (Option<String>, Option<String>) {
    let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
    let words: Vec<&str> =
        title.map(|title| title.split_whitespace().collect()).unwrap_or_default();
    let run_word = words.iter().copied().find(|word| word.matches(':').count() >= 2);
    let run_id =
        text("run_id").or_else(|| run_word.map(str::to_owned)).or_else(|| title.map(str::to_owned));
    let title_user = run_word
        .map(|run| {
            let parts: Vec<&str> = run.split(':').collect();
            parts[1..parts.len() - 1].join(":")
        })
        .or_else(|| words.iter().find(|word| word.contains('@')).map(|word| (*word).to_owned()));
    (text("user").or_else(|| text("identifier")).or(title_user), run_id)
}

/// Looks a live session up and applies `f` to it.
pub(super) fn with_session<T>(
    state: &SimState,
    id: &str,
    f: impl FnOnce(&mut Session) -> Result<T, AnthropicError>,
) -> Result<T, AnthropicError> {
    let mut store = state.store();
    match store.sessions.get_mut(id) {
        Some(session) if !session.rt.lock().closed => f(session),
        _ => Err(AnthropicError::not_found("session", id)),
    }
}

/// `GET /v1/sessions/{session_id}`.
pub(super) async fn retrieve(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    with_session(&state, &id, |session| Ok(Json(session_json(session))))
}

/// `POST /v1/sessions/{session_id}`: title and metadata; `vault_ids` is rejected as the docs say.
pub(super) async fn update(
    State(state): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AnthropicError> {
    let body = object_body(&body)?;
    fields::session_update(&body)?;
    if body.contains_key("vault_ids") {
        return Err(AnthropicError::invalid("vault_ids: updating vault_ids is not yet supported"));
    }
    with_session(&state, &id, |session| {
        if let Some(title) = body.get("title") {
            session.title = title.as_str().map(str::to_owned);
        }
        let mut metadata = Value::Object(std::mem::take(&mut session.metadata));
        let patched = patch_metadata(&mut metadata, body.get("metadata"));
        session.metadata = match metadata {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        patched?;
        session.rt.lock().updated_at = ids::now();
        Ok(Json(session_json(session)))
    })
}

/// `GET /v1/sessions` (newest first by default; `next_page` and `prev_page`).
pub(super) async fn list(
    State(state): Shared,
    params: Params,
) -> Result<Json<Value>, AnthropicError> {
    let page = Page::from(&params, 20, 100, true)?;
    let statuses = params.all("statuses[]");
    let store = state.store();
    let items: Vec<Value> = store
        .sessions
        .values()
        .filter(|s| {
            !s.rt.lock().closed && (s.archived_at.is_none() || params.flag("include_archived"))
        })
        .filter(|s| params.get("agent_id").is_none_or(|agent| s.agent["id"] == agent))
        .map(session_json)
        .filter(|s| statuses.is_empty() || statuses.iter().any(|status| s["status"] == *status))
        .collect();
    drop(store);
    Ok(page.reply(items, true))
}

/// `DELETE /v1/sessions/{session_id}`: ends its streams; the audit keeps it.
pub(super) async fn delete(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    with_session(&state, &id, |session| {
        session.rt.close();
        Ok(Json(json!({"id": session.id, "type": "session_deleted"})))
    })
}

/// `POST /v1/sessions/{session_id}/archive`.
pub(super) async fn archive(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, AnthropicError> {
    with_session(&state, &id, |session| {
        if session.archived_at.is_none() {
            let mut wire = session_json(session);
            archive_object(&mut wire);
            session.archived_at = wire["archived_at"].as_str().map(str::to_owned);
        }
        Ok(Json(session_json(session)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_run_come_from_metadata_then_title() {
        let mut metadata = Map::new();
        assert_eq!(
            identify(&metadata, Some("agentcron morning:alice@x.com:1767254400")),
            (Some("alice@x.com".into()), Some("morning:alice@x.com:1767254400".into()))
        );
        assert_eq!(identify(&metadata, Some("run for bob@x.com")).0, Some("bob@x.com".into()));
        assert_eq!(identify(&metadata, None), (None, None));
        metadata.insert("user".into(), json!("carol"));
        metadata.insert("run_id".into(), json!("r1"));
        assert_eq!(identify(&metadata, Some("t")), (Some("carol".into()), Some("r1".into())));
    }
}
