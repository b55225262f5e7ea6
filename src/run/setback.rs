//! Failures the pipeline answers itself before the outcome table sees them, so that a run never
//! burns its attempts on what only the user can fix, and never resumes a turn that failed:
//!
//! - **A connection lapsed** (minting refused with `FAILED_PRECONDITION`, at the start or at the
//!   mid-session refresh) **or the MCP server refused the user's credentials**
//!   (`mcp_authentication_failed_error`): the run needs the user. The connections are checked
//!   again, which opens a notice with a fresh link for each inactive one; when all look active
//!   the MCP refusal gets a notice of its own. A session still working is stopped first.
//! - **A session error that a fresh session may get past** (an overloaded model, an MCP server
//!   out of reach): the failed session is archived and the run's session facts cleared, so the
//!   retry starts a new turn in a new session instead of re-attaching to the failed one (whose
//!   history ends in an idle, and would read as done).
//!
//! This module must not decide retries: what it returns goes through the outcome table.

use crate::config::RedisConn;

use super::{Context, Finish, Run, RunError, connections, fence, session};
use crate::ids::SessionId;
use crate::outcome::ErrorClass;
use crate::records;

/// The record fields that tie a run to its session and turn.
const SESSION_FACTS: [&str; 3] = ["session_id", "message_sent_at_ms", "session_requested_at_ms"];

/// Answers `error`, which ended the attempt at the phase that had `session_id` (if any).
///
/// # Errors
/// The failure to record (`error` itself, or one met while answering it).
pub(super) async fn settle(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
    session_id: Option<&SessionId>,
    error: RunError,
) -> Result<Finish, RunError> {
    let lapsed = matches!(&error, RunError::Api(api) if api.is_lapsed_connection());
    let refused = match &error {
        RunError::SessionFailed { class: ErrorClass::Auth, error_type, .. } => Some(error_type),
        _ => None,
    };
    if lapsed || refused.is_some() {
        if lapsed && let Some(session_id) = session_id {
            // The turn is still going on a token that is about to lapse: the run ends here, and
            // the agent must not go on working on the user's behalf without it.
            fence::check(ctx, run).await?;
            session::stop(ctx, session_id).await?;
        }
        let checked = connections::check(ctx, conn, run).await?;
        if !checked.inactive.is_empty() {
            return Ok(Finish::NeedsAuth { connections: checked.inactive });
        }
        return match refused {
            Some(error_type) => {
                let name = connections::notice_mcp_refusal(ctx, conn, run, error_type).await?;
                Ok(Finish::NeedsAuth { connections: vec![name] })
            }
            // Active again since the mint was refused: worth another attempt.
            None => Err(RunError::Again(format!("a connection lapsed and came back: {error}"))),
        };
    }
    if let (RunError::SessionFailed { class, .. }, Some(session_id)) = (&error, session_id)
        && class.is_retryable()
    {
        abandon(ctx, conn, run, session_id).await?;
    }
    Err(error)
}

/// Archives the failed session and clears the run's session facts (keeping the session's id
/// as `abandoned_session_id` for the operator).
async fn abandon(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
    session_id: &SessionId,
) -> Result<(), RunError> {
    fence::check(ctx, run).await?;
    match ctx.anthropic.archive_session(session_id.as_str()).await {
        Ok(_) => {}
        Err(error) if matches!(error.status(), Some(404 | 409)) => {}
        Err(error) => return Err(error.into()),
    }
    let keep = [("abandoned_session_id", session_id.as_str().to_owned())];
    let facts = (&SESSION_FACTS[..], &keep[..]);
    if !records::replace_run_fields(conn, &ctx.keys, &run.id, run.fence, facts).await? {
        return Err(fence::fenced(run, None));
    }
    tracing::info!(message = "The session failed; the next attempt starts a new one.", run_id = %run.id, session_id = %session_id);
    Ok(())
}
