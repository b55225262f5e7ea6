//! A setup object gone at the vendor (the MCP config, the agent or the environment deleted or
//! archived): every run would die at once, burning its attempts, until someone reruns `setup`.
//! Instead the run that meets it reports it once (the `<prefix>:setup:missing` mark, which
//! makes `/readyz` not ready, a metric and a warning), and every run of the worker waits,
//! queued, without calling anything, until the ids are stored again: by an operator's `agentcron
//! setup`, or by one worker of the fleet itself when `setup.auto` is set. This module must not
//! decide how `setup` finds or creates things.

use crate::config::RedisConn;

use super::{Context, RunError};
use crate::api::{Api, ApiError};
use crate::setup::{self, SetupError};
use crate::telemetry::metrics;

/// Before a run calls anything: when the worker knows a setup object is missing, looks (at
/// most once a heartbeat) whether it is back, and otherwise defers the run.
///
/// # Errors
/// [`RunError::SetupMissing`] while it is missing; [`RunError`] when Redis or setup fails.
pub(super) async fn guard(ctx: &Context, conn: &mut RedisConn) -> Result<(), RunError> {
    let Some(object) = ctx.setup.missing() else { return Ok(()) };
    if ctx.setup.due_for_check(ctx.config.worker.heartbeat) && back(ctx, conn).await? {
        return Ok(());
    }
    Err(deferred(ctx, object))
}

/// After a failed attempt: when `error` says a setup object is missing, reports it and
/// returns [`RunError::SetupMissing`]; else returns `error`.
pub(super) async fn check(ctx: &Context, conn: &mut RedisConn, error: RunError) -> RunError {
    let Some(object) = missing_object(ctx, &error).await else { return error };
    ctx.setup.set_missing(object);
    metrics::setup_missing(object);
    let detail = ctx.redactor.redact(&error.to_string()).into_owned();
    match setup::report_missing(conn, &ctx.keys, object, &detail).await {
        Ok(true) => {
            tracing::error!(message = "A setup object is missing at the vendor; runs wait until `agentcron setup` runs (or setup.auto recreates it).", object, error = %detail);
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(message = "Could not record the missing setup object.", %error)
        }
    }
    deferred(ctx, object)
}

fn deferred(ctx: &Context, object: &'static str) -> RunError {
    RunError::SetupMissing { object, retry_after: ctx.config.worker.lease }
}

/// Whether the setup is usable again: the mark is gone (`setup` stored the ids; they are
/// reloaded), or this worker recreated it (`setup.auto`, one worker at a time).
async fn back(ctx: &Context, conn: &mut RedisConn) -> Result<bool, RunError> {
    if setup::reported_missing(conn, &ctx.keys).await?.is_none() {
        match setup::load(conn, &ctx.keys).await {
            Ok(ids) => {
                ctx.setup.replace(ids);
                tracing::info!(message = "The setup was stored again; runs go on.");
                return Ok(true);
            }
            // The mark went, but no ids came (it was removed by hand): mark it again.
            Err(SetupError::Missing) => {
                let detail = "no setup ids are stored for this prefix";
                setup::report_missing(conn, &ctx.keys, "setup", detail).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    if !ctx.config.setup.auto || !lock(ctx, conn).await? {
        return Ok(false);
    }
    let (ids, _) =
        setup::ensure(&ctx.config, &ctx.scalekit, &ctx.anthropic, conn, &ctx.keys).await?;
    ctx.setup.replace(ids);
    metrics::setup_recreated();
    tracing::warn!(message = "Recreated the missing setup objects (setup.auto); runs go on.");
    Ok(true)
}

/// Takes the fleet's recreate lock for a minute: one worker recreates, the others wait for the
/// mark to go.
async fn lock(ctx: &Context, conn: &mut RedisConn) -> Result<bool, RunError> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(ctx.keys.setup_lock())
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(60_000)
        .query_async(conn)
        .await?;
    Ok(taken.is_some())
}

/// Which setup object `error` says is missing: the MCP config when Scalekit does not know it;
/// the agent or the environment when creating or listing sessions failed and a look at each
/// shows it gone (or archived).
async fn missing_object(ctx: &Context, error: &RunError) -> Option<&'static str> {
    let RunError::Api(ApiError::Status { api, endpoint, status, .. }) = error else { return None };
    match (api, *endpoint, *status) {
        (Api::Scalekit, "mcp.list_connected_accounts" | "mcp.create_session_token", 404) => {
            Some("mcp config")
        }
        (Api::Anthropic, "sessions.create" | "sessions.list", 400 | 404) => {
            let ids = ctx.setup.get();
            let agent = ctx.anthropic.get_agent(&ids.agent_id).await;
            if gone(agent.map(|agent| agent.archived_at)) {
                return Some("agent");
            }
            let environment = ctx.anthropic.get_environment(&ids.environment_id).await;
            gone(environment.map(|environment| environment.archived_at)).then_some("environment")
        }
        _ => None,
    }
}

/// Whether a lookup found the object deleted (404) or archived.
fn gone(looked_up: Result<Option<String>, ApiError>) -> bool {
    match looked_up {
        Ok(archived_at) => archived_at.is_some(),
        Err(error) => error.status() == Some(404),
    }
}
