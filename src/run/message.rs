//! Phase `message`: open the event stream, then send exactly one `user.message` with the
//! prompt, marked sent only after a 2xx.
//!
//! Sending is not retried blindly: a POST whose answer was lost may have been accepted, so
//! after a transient failure the session's history is read and the message is sent again only
//! if it is not there. A resumed run whose mark is missing reads the history first too.

use crate::ids::SessionId;
use std::pin::Pin;

use chrono::Utc;
use futures::Stream;

use super::context::{pause_before_retry, single_attempts};
use super::{Context, Facts, FailPoint, Run, RunError, fence, hook};
use crate::api::ApiError;
use crate::api::anthropic::{EventKind, OutgoingEvent, SessionEvent};
use crate::config::RedisConn;
use crate::records::now_ms;
use crate::template::{LOCAL_TIME_FORMAT, Template};
use crate::users::{self, Profile};

/// The session's event stream, opened before the message was sent.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<SessionEvent, ApiError>> + Send>>;

/// The prompt when neither the run nor its schedule gives one.
const DEFAULT_PROMPT: &str = "It is {local_time}. Triage my inbox.";

/// Sends the message unless it was sent; returns the stream opened before sending, or `None`
/// when an earlier attempt sent it (the caller resumes from the history), and the sent mark
/// to persist with the next phase marker when this attempt learnt it.
///
/// # Errors
/// [`RunError`] when Anthropic fails.
pub async fn ensure_sent(
    ctx: &Context,
    run: &Run,
    session_id: &SessionId,
) -> Result<(Option<EventStream>, Facts), RunError> {
    if run.message_sent {
        return Ok((None, Facts::new()));
    }
    let session_existed = run.session_id.is_some() || run.session_requested_at_ms.is_some();
    if session_existed && was_accepted(ctx, session_id).await? {
        return Ok((None, sent_mark()));
    }
    let stream = ctx.anthropic.stream_events(session_id.as_str()).await?;
    // Opening the stream can take long; the worker may have been frozen meanwhile and another
    // attempt taken over and sent the message: the send checks the fence as it leaves.
    send_once(ctx, run, session_id, &run.message).await?;
    hook(ctx, FailPoint::MessageSent)?;
    Ok((Some(Box::pin(stream)), sent_mark()))
}

async fn was_accepted(ctx: &Context, session_id: &SessionId) -> Result<bool, RunError> {
    let history = ctx.anthropic.list_all_events(session_id.as_str()).await?;
    Ok(history.iter().any(|event| event.kind == EventKind::UserMessage))
}

/// Sends with single attempts; between them, checks whether the last one landed after all.
async fn send_once(
    ctx: &Context,
    run: &Run,
    session_id: &SessionId,
    prompt: &str,
) -> Result<(), RunError> {
    let (policy, once) = single_attempts(ctx, run);
    let event = [OutgoingEvent::user_text(prompt)];
    let mut retry = 0;
    loop {
        let Err(error) = once.send_events(session_id.as_str(), &event).await else { return Ok(()) };
        fence::check(ctx, run).await?;
        pause_before_retry(&policy, retry, error, "sessions.events.send").await?;
        if was_accepted(ctx, session_id).await? {
            return Ok(());
        }
        retry += 1;
    }
}

fn sent_mark() -> Facts {
    vec![("message_sent_at_ms", now_ms().to_string())]
}

/// The text of the run's `user.message`. A prompt rendered when the run was enqueued is sent
/// as it is; otherwise (a run enqueued by hand, or a value missing at the tick) the template is
/// rendered now: `{user}`, `{run_id}`, `{local_time}` (the scheduled time, else now, in the
/// run's zone, else UTC), then the user's profile values, read only when the template uses
/// one. A run recorded before runs carried their prompt takes its schedule's from this
/// worker's configuration.
///
/// # Errors
/// [`RunError::MissingValue`] naming a placeholder with no value and no default; Redis
/// errors reading the profile.
pub async fn prompt(ctx: &Context, conn: &mut RedisConn, run: &Run) -> Result<String, RunError> {
    if run.rendered
        && let Some(prompt) = &run.prompt
    {
        return Ok(prompt.clone());
    }
    let schedule = || {
        let name = run.schedule.as_deref()?;
        ctx.config.schedules.iter().find(|s| s.name == name)
    };
    let template = match (&run.prompt, run.local_time.is_some()) {
        (Some(prompt), _) => prompt.as_str(),
        (None, false) => schedule().map_or(DEFAULT_PROMPT, |s| s.prompt.as_str()),
        (None, true) => DEFAULT_PROMPT,
    };
    let template = Template::parse(template);
    let zone = match &run.timezone {
        Some(zone) => zone.parse().unwrap_or(chrono_tz::UTC),
        None => schedule().map_or(chrono_tz::UTC, |s| s.timezone),
    };
    let at = run
        .local_time
        .as_deref()
        .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
        .map_or_else(Utc::now, |time| time.with_timezone(&Utc));
    let local_time = at.with_timezone(&zone).format(LOCAL_TIME_FORMAT).to_string();
    let builtins = [
        ("user", run.user.as_str()),
        ("run_id", run.id.as_str()),
        ("local_time", local_time.as_str()),
    ];
    let profile = if template.profile_names().is_empty() {
        Profile::default()
    } else {
        users::read(conn, &ctx.keys, &[&run.user]).await?.pop().unwrap_or_default()
    };
    profile.render(&template, &builtins).map_err(|missing| RunError::MissingValue(missing.0))
}
