//! Phase `streaming`: record every event to the transcript, answer `requires_action` by
//! policy, keep the user's token fresh, and stop at the end of the turn (`verdict` says when
//! that is, and whether the turn did the work). A dropped or
//! idle stream is re-attached (history first, events already recorded skipped). Once the turn
//! has ended, `result` sums its recorded events onto the run record.

use crate::config::RedisConn;
use crate::ids::SessionId;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::message::EventStream;
use super::vault::VaultIds;
use super::{Context, Run, RunError, token, vault};
use crate::api::anthropic::OutgoingEvent;
use crate::api::wait;
use crate::backoff::RetryPolicy;
use crate::config::ActionPolicy;
use crate::outcome::ErrorClass;
use crate::records::transcript::Transcript;

pub mod result;
mod verdict;

use self::verdict::{Step, TurnState};

/// What the stream keeps fresh: the token in the user's vault. (The user's lease is kept by
/// the worker's heartbeat for every run it holds, whatever the run is waiting on.)
#[derive(Debug)]
pub struct TokenState {
    /// When the token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where it is stored.
    pub vault: VaultIds,
}

/// Follows the session until the turn ends.
///
/// # Errors
/// [`RunError`] when the stream keeps failing, the session ends abnormally, or Redis fails.
///
/// # Cancel safety
/// On cancellation the transcript is flushed and [`RunError::Cancelled`] returned; the events
/// recorded so far let a later attempt resume.
pub async fn follow(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
    session_id: &SessionId,
    opened: Option<EventStream>,
    mut tokens: TokenState,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let started = Utc::now();
    let redactor = ctx.redactor.clone();
    let config = &ctx.config.transcripts;
    // Events are recorded only after the message is marked sent, so a run whose record did
    // not say so at the start of this attempt has recorded none.
    let resuming = run.message_sent;
    // Boxed here and below: what a streaming run holds for hours is this function's state,
    // one per session; futures of rare or finished steps (opening, resuming, refreshing the
    // token, answering) would otherwise each take room in it for the whole stream.
    let mut transcript = Box::pin(Transcript::open(
        conn,
        &ctx.keys,
        config,
        redactor,
        (&run.id, &run.user, started),
        resuming,
    ))
    .await?;
    let res = pump(ctx, conn, run, session_id, opened, &mut tokens, &mut transcript, cancel).await;
    transcript.close(conn).await?;
    res
}

#[allow(clippy::too_many_arguments)] // The loop's state, passed once; grouping it would only rename it.
async fn pump(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
    session_id: &SessionId,
    opened: Option<EventStream>,
    tokens: &mut TokenState,
    transcript: &mut Transcript,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let policy = RetryPolicy::from(&ctx.config.retry);
    // A message sent by an earlier attempt was echoed then; a stream opened just before this
    // attempt's send may carry an idle from before it (see `verdict`).
    let mut state = TurnState::new(session_id.clone(), opened.is_none());
    let mut stream = match opened {
        Some(stream) => stream,
        None => match Box::pin(resume(ctx, conn, session_id, transcript, &mut state)).await? {
            Some(stream) => stream,
            None => return Ok(()),
        },
    };
    // The first tick one period from now, not at once: the token was just minted, so an
    // immediate tick would have nothing to do.
    let period = ctx.config.worker.heartbeat;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut n_reconnects = 0_u32;
    loop {
        // Each arm is cancel-safe: `cancelled`, `tick` and `StreamExt::next` lose nothing when
        // another arm wins, so no event is dropped between iterations.
        tokio::select! {
            () = cancel.cancelled() => return Err(RunError::Cancelled),
            _ = tick.tick() => Box::pin(keep_fresh(ctx, run, tokens)).await?,
            item = wait::waiting(stream.next()) => match item {
                Some(Ok(event)) => {
                    n_reconnects = 0;
                    transcript.append(conn, session_id, &event.raw).await?;
                    if event.is_turn_end() {
                        // Recorded before it is acted on, so a resumed run sees it.
                        transcript.settle().await?;
                        super::hook(ctx, super::FailPoint::TurnEndRecorded)?;
                    }
                    if Box::pin(act(ctx, session_id, state.observe(&event))).await? {
                        return Ok(());
                    }
                }
                other => {
                    let error = match other {
                        Some(Err(error)) => error,
                        _ => stream_closed(),
                    };
                    if error.class() != ErrorClass::Transient || n_reconnects + 1 >= policy.max_attempts {
                        return Err(error.into());
                    }
                    tracing::warn!(message = "Event stream dropped; re-attaching.", %error, attempt = n_reconnects + 1);
                    wait::waiting(tokio::time::sleep(policy.delay(n_reconnects, fastrand::f64())))
                        .await;
                    n_reconnects += 1;
                    stream = match Box::pin(resume(ctx, conn, session_id, transcript, &mut state)).await? {
                        Some(stream) => stream,
                        None => return Ok(()),
                    };
                }
            },
        }
    }
}

fn stream_closed() -> crate::api::ApiError {
    crate::api::ApiError::Transport {
        api: crate::api::Api::Anthropic,
        endpoint: "sessions.events.stream",
        message: "the stream ended before the turn did".to_owned(),
        class: ErrorClass::Transient,
    }
}

/// Re-attaches to the session: history first, events already recorded skipped. Returns
/// `None` when the turn is already over (and did the work).
///
/// The turn's state is rebuilt from the events already recorded, in the history's order; the
/// rest arrive on the stream. An earlier attempt may have recorded the session's last event —
/// an idle or terminated status — and died before acting on it. That event is "seen", so the
/// resumed stream would never yield it again and the run would wait for a session that has
/// stopped: so the step it gives is acted on here. (The history is read a second time for
/// this; resuming is rare.)
async fn resume(
    ctx: &Context,
    conn: &mut RedisConn,
    session_id: &SessionId,
    transcript: &mut Transcript,
    state: &mut TurnState,
) -> Result<Option<EventStream>, RunError> {
    let seen = transcript.seen(conn).await?;
    let stream = ctx.anthropic.resume_events(session_id.as_str(), seen.clone()).await?;
    let history = ctx.anthropic.list_all_events(session_id.as_str()).await?;
    *state = TurnState::new(session_id.clone(), false);
    let mut last = Step::Continue;
    for event in history.iter().filter(|event| event.id().is_some_and(|id| seen.contains(id))) {
        last = state.observe(event);
    }
    let stopped = history
        .last()
        .is_some_and(|event| event.is_turn_end() && event.id().is_some_and(|id| seen.contains(id)));
    if stopped && act(ctx, session_id, last).await? {
        return Ok(None);
    }
    Ok(Some(Box::pin(stream)))
}

/// Acts on a step of the turn; returns whether the turn is over.
async fn act(ctx: &Context, session_id: &SessionId, step: Step) -> Result<bool, RunError> {
    match step {
        Step::Continue => Ok(false),
        Step::Answer(event_ids) => {
            answer(ctx, session_id, &event_ids).await?;
            Ok(false)
        }
        Step::Done => Ok(true),
        Step::Failed(error) => Err(error),
    }
}

async fn answer(
    ctx: &Context,
    session_id: &SessionId,
    event_ids: &[String],
) -> Result<(), RunError> {
    let (result, deny_message) = match ctx.config.anthropic.requires_action {
        ActionPolicy::AutoConfirm => ("allow", None),
        ActionPolicy::Deny => ("deny", Some("Denied by agentcron policy.".to_owned())),
    };
    let events: Vec<_> = event_ids
        .iter()
        .map(|id| OutgoingEvent::ToolConfirmation {
            tool_use_id: id.clone(),
            result,
            deny_message: deny_message.clone(),
        })
        .collect();
    ctx.anthropic.send_events(session_id.as_str(), &events).await?;
    Ok(())
}

/// At each heartbeat: replaces the token before it expires. (An operator's cancel request
/// arrives on `cancel`, and the user's lease is renewed, through the worker's own heartbeat:
/// one Redis call per worker, not one per streaming run.)
async fn keep_fresh(ctx: &Context, run: &Run, tokens: &mut TokenState) -> Result<(), RunError> {
    let margin = chrono::TimeDelta::from_std(ctx.config.scalekit.token_refresh_margin)
        .unwrap_or(chrono::TimeDelta::zero());
    if tokens.expires_at.is_some_and(|at| at - margin <= Utc::now()) {
        let fresh = token::mint(ctx, &run.user).await?;
        vault::update(ctx, &tokens.vault, &fresh.token).await?;
        tracing::info!(message = "Token refreshed mid-session.", user = %run.user);
        tokens.expires_at = fresh.expires_at;
    }
    Ok(())
}
