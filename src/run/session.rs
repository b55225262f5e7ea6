//! Phase `session`: `sessions.create(agent, environment_id, vault_ids=[the user's vault])` with
//! the run id and user in title and metadata; the id is persisted with the next phase marker,
//! before anything else happens. If an earlier attempt asked for a session and died before
//! persisting its id, the session is found again by its `run_id` metadata instead of creating
//! a second one. An operator's cancel reaches the session too: [`stop_if_cancelled`]
//! interrupts its turn and archives it.

use crate::config::RedisConn;
use serde_json::json;

use super::context::{pause_before_retry, single_attempts, throttle};
use super::{Context, Facts, FailPoint, Run, RunError, fence, hook};
use crate::api::anthropic::{OutgoingEvent, Session, SessionCreate};
use crate::ids::{RunId, SessionId, VaultId};
use crate::records::now_ms;

/// How far before the recorded request a lost session may have been created (clock skew).
const SKEW_MS: i64 = 5 * 60 * 1000;
/// Pages of the agent's sessions (20 each, newest first) a lost session is looked for in.
const MAX_LOOKUP_PAGES: usize = 10;

/// The request mark the `session` phase marker carries when this attempt may ask for a
/// session: where the search for a lost creation starts. Empty when the run has a session, or
/// when an earlier attempt's mark stands (it is older than any creation since, so it stays).
pub fn request_mark(run: &Run) -> Facts {
    if run.session_id.is_some() || run.session_requested_at_ms.is_some() {
        return Facts::new();
    }
    vec![("session_requested_at_ms", now_ms().to_string())]
}

/// When an operator asked to cancel the run and it has a session, stops the agent working on
/// the user's mailbox: interrupts the turn (`user.interrupt`), then archives the session. A
/// session already archived (by an earlier attempt) is left alone.
///
/// # Errors
/// [`RunError`] when Redis or Anthropic fails; the attempt is then retried, and the next one
/// stops the agent before it does anything else.
pub async fn stop_if_cancelled(
    ctx: &Context,
    conn: &mut RedisConn,
    run_id: &RunId,
) -> Result<(), RunError> {
    let (requested, session_id): (Option<String>, Option<SessionId>) = redis::cmd("HMGET")
        .arg(ctx.keys.run(run_id))
        .arg("cancel_requested_at_ms")
        .arg("session_id")
        .query_async(conn)
        .await?;
    let (Some(_), Some(session_id)) = (requested, session_id) else { return Ok(()) };
    if stop(ctx, &session_id).await? {
        tracing::info!(message = "Cancelled: the session was interrupted and archived.", run_id = %run_id, session_id = %session_id);
    }
    Ok(())
}

/// Stops the agent working in `session_id`: interrupts its turn (`user.interrupt`), then
/// archives it. Returns false when there was nothing to stop (archived or deleted already).
///
/// # Errors
/// [`RunError`] when Anthropic fails.
pub async fn stop(ctx: &Context, session_id: &SessionId) -> Result<bool, RunError> {
    let session = match ctx.anthropic.get_session(session_id.as_str()).await {
        Ok(session) => session,
        // Deleted at the vendor: there is no agent left to stop.
        Err(error) if error.status() == Some(404) => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    if session.archived_at.is_some() {
        return Ok(false);
    }
    ctx.anthropic.send_events(session_id.as_str(), &[OutgoingEvent::Interrupt]).await?;
    ctx.anthropic.archive_session(session_id.as_str()).await?;
    Ok(true)
}

/// The run's session id, creating the session when the run has none, and the facts to persist
/// with the next phase marker (the id, when this attempt learnt it).
///
/// # Errors
/// [`RunError`] when Anthropic fails.
pub async fn ensure(
    ctx: &Context,
    run: &Run,
    vault_id: &VaultId,
) -> Result<(SessionId, Facts), RunError> {
    if let Some(session_id) = &run.session_id {
        return Ok((session_id.clone(), Facts::new()));
    }
    if let Some(requested_at) = run.session_requested_at_ms
        && let Some(found) = find_lost(ctx, &run.id, requested_at).await?
    {
        tracing::info!(message = "Found the session an earlier attempt created.", session_id = %found.id);
        return Ok(learnt(SessionId::from(found.id)));
    }
    let requested_at = run.session_requested_at_ms.unwrap_or_else(now_ms);
    let session = create_once(ctx, run, vault_id, requested_at).await?;
    hook(ctx, FailPoint::SessionCreated)?;
    Ok(learnt(SessionId::from(session.id)))
}

/// Creates the session with single attempts; after an ambiguous failure (a timeout, a dropped
/// connection, a 5xx or a 409: the server may have acted), looks the session up by its
/// `run_id` metadata before creating again, so a lost answer never leaves a second session.
async fn create_once(
    ctx: &Context,
    run: &Run,
    vault_id: &VaultId,
    requested_at: i64,
) -> Result<Session, RunError> {
    let (policy, once) = single_attempts(ctx, run);
    let mut retry = 0;
    loop {
        throttle(ctx, "sessions", ctx.config.limits.sessions_per_second).await?;
        // The fence is checked last, as the request leaves (`fence::Guard`).
        let error = match once.create_session(&request(ctx, run, vault_id)).await {
            Ok(session) => return Ok(session),
            Err(error) => error,
        };
        fence::check(ctx, run).await?;
        pause_before_retry(&policy, retry, error, "sessions.create").await?;
        if let Some(found) = find_lost(ctx, &run.id, requested_at).await? {
            tracing::info!(message = "The failed create had made the session; using it.", session_id = %found.id);
            return Ok(found);
        }
        retry += 1;
    }
}

fn learnt(session_id: SessionId) -> (SessionId, Facts) {
    let facts = vec![("session_id", session_id.as_str().to_owned())];
    (session_id, facts)
}

fn request(ctx: &Context, run: &Run, vault_id: &VaultId) -> SessionCreate {
    let mut metadata = serde_json::Map::new();
    metadata.insert("run_id".to_owned(), json!(run.id));
    metadata.insert("user".to_owned(), json!(run.user));
    if let Some(schedule) = &run.schedule {
        metadata.insert("schedule".to_owned(), json!(schedule));
    }
    SessionCreate {
        agent: ctx.setup.get().agent_id.clone(),
        environment_id: ctx.setup.get().environment_id.clone(),
        title: Some(format!("agentcron {}", run.id)),
        metadata: Some(metadata),
        vault_ids: vec![vault_id.as_str().to_owned()],
    }
}

/// Pages through the agent's sessions, newest first, back to shortly before `requested_at`,
/// at most [`MAX_LOOKUP_PAGES`] pages: a tick of thousands of users creates sessions of one
/// agent faster than one run could page through them, and an unbounded search by every run
/// whose id was lost is a storm against the vendor's rate limit. Not found within the bound
/// counts as not created.
async fn find_lost(
    ctx: &Context,
    run_id: &RunId,
    requested_at: i64,
) -> Result<Option<Session>, RunError> {
    let oldest = requested_at - SKEW_MS;
    let mut page = None;
    for _ in 0..MAX_LOOKUP_PAGES {
        // Each page takes from the vendor's request bucket (the client's pacer) and from the
        // operator's own sessions cap: a tick of many lost ids must not become a storm.
        throttle(ctx, "sessions", ctx.config.limits.sessions_per_second).await?;
        let agent_id = ctx.setup.get().agent_id.clone();
        let batch = ctx.anthropic.list_sessions(&agent_id, page.as_deref()).await?;
        let mut past_window = false;
        for session in batch.data {
            // An archived session of the run is one an earlier attempt gave up (see `setback`).
            let ours =
                session.metadata.get("run_id").and_then(|v| v.as_str()) == Some(run_id.as_str());
            if ours && session.archived_at.is_none() {
                return Ok(Some(session));
            }
            let created = session
                .created_at
                .as_deref()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
            past_window |= created.is_some_and(|at| at.timestamp_millis() < oldest);
        }
        match batch.next_page {
            Some(next) if !next.is_empty() && !past_window => page = Some(next),
            _ => return Ok(None),
        }
    }
    tracing::warn!(message = "Gave up looking for a lost session after the page limit; a new one is created.", run_id = %run_id, pages = MAX_LOOKUP_PAGES);
    Ok(None)
}
