//! Phase `checking`: every mapped connection must have an ACTIVE account (case-insensitive;
//! no account counts as inactive). For each inactive one, fetch an auth link and open or
//! refresh its notice; for each active one, resolve its open notice.
//!
//! One more notice is kept under the name of the agent's MCP server: opened when the MCP
//! server refused the user's credentials though every connection looked active
//! ([`notice_mcp_refusal`]), resolved by the user's next run whose turn did the work
//! ([`resolve_mcp_refusal`]), since only a working turn shows that it passed.

use crate::config::RedisConn;

use super::{Context, Run, RunError};
use crate::backoff::RetryPolicy;
use crate::records::notice::{self, NoticeEvent};
use crate::records::webhook;
use crate::telemetry::metrics;

/// What the check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The names of the inactive connections (empty when all are active).
    pub inactive: Vec<String>,
    /// Whether the notice of an MCP refusal is open (see [`resolve_mcp_refusal`]).
    pub mcp_noticed: bool,
}

/// Checks the user's connections, opening and resolving their notices.
///
/// # Errors
/// [`RunError`] when Scalekit or Redis fails.
pub async fn check(ctx: &Context, conn: &mut RedisConn, run: &Run) -> Result<Checked, RunError> {
    let connections = &ctx.config.scalekit.connections;
    let mut names: Vec<&str> = connections.iter().map(|c| c.name.as_str()).collect();
    names.push(mcp_name(ctx));
    let setup = ctx.setup.get();
    // Side by side: the Redis read hides behind the remote call.
    let (states, noticed) = tokio::join!(
        ctx.scalekit.list_connected_accounts(&setup.mcp_config_id, run.user.as_str(), false),
        notice::open_among(conn, &ctx.keys, &run.user, &names)
    );
    let (states, noticed) = (states?, noticed?);
    let mcp_noticed = noticed.last().copied().unwrap_or(false);
    let keep = ctx.config.retention.runs;
    let mut inactive = Vec::new();
    for (connection, noticed) in connections.iter().zip(noticed) {
        let state =
            states.iter().find(|s| s.connection_name.eq_ignore_ascii_case(&connection.name));
        if state.is_some_and(|state| state.is_active()) {
            if noticed
                && let Some(event) =
                    notice::resolve(conn, &ctx.keys, (&run.user, &connection.name), &run.id, keep)
                        .await?
            {
                notify(ctx, &event).await;
            }
            continue;
        }
        let status = state
            .and_then(|s| s.connected_account_status.clone())
            .unwrap_or_else(|| "none".to_owned());
        let link = ctx.scalekit.magic_link(run.user.as_str(), &connection.name).await?;
        let fields = (&run.user, connection.name.as_str(), status.as_str(), link.link.as_str());
        let event = notice::open(conn, &ctx.keys, fields, &run.id).await?;
        tracing::info!(message = "Connection needs re-authorisation; notice opened.", user = %run.user, connection = %connection.name, status = %status);
        notify(ctx, &event).await;
        inactive.push(connection.name.clone());
    }
    Ok(Checked { inactive, mcp_noticed })
}

/// The name the MCP refusal's notice is kept under: the agent's MCP server.
fn mcp_name(ctx: &Context) -> &str {
    &ctx.config.anthropic.agent.mcp_server_name
}

/// Opens (or refreshes) the notice that the MCP server refused the user's credentials with
/// `error_type`. It has no auth link: no one connection is to blame. Returns its name.
///
/// # Errors
/// [`RunError`] when Redis fails.
pub async fn notice_mcp_refusal(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
    error_type: &str,
) -> Result<String, RunError> {
    let name = mcp_name(ctx);
    let event = notice::open(conn, &ctx.keys, (&run.user, name, error_type, ""), &run.id).await?;
    tracing::info!(message = "The MCP server refused the user's credentials; notice opened.", user = %run.user, mcp_server = %name, error_type = %error_type);
    notify(ctx, &event).await;
    Ok(name.to_owned())
}

/// Resolves the MCP refusal's notice after a turn that did the work.
///
/// # Errors
/// [`RunError`] when Redis fails.
pub async fn resolve_mcp_refusal(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
) -> Result<(), RunError> {
    let keep = ctx.config.retention.runs;
    if let Some(event) =
        notice::resolve(conn, &ctx.keys, (&run.user, mcp_name(ctx)), &run.id, keep).await?
    {
        notify(ctx, &event).await;
    }
    Ok(())
}

/// Sends the notice to the webhook, when one is configured. A few quick attempts only: the
/// notice is on the Redis stream either way, and the run must not wait on a dead endpoint.
pub(super) async fn notify(ctx: &Context, event: &NoticeEvent) {
    let Some(url) = &ctx.config.notices.webhook_url else { return };
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::from(&ctx.config.retry) };
    let Ok(body) = serde_json::to_vec(event) else { return };
    let (id, secret) = (webhook::message_id(), ctx.config.notices.webhook_secret.as_ref());
    let delivery = webhook::deliver(&ctx.http, url, secret, policy, (&id, &body)).await;
    metrics::webhook_delivered("notice", if delivery.delivered { "delivered" } else { "failed" });
    if let Some(error) = delivery.error {
        tracing::warn!(message = "Notice webhook failed; the notice stays on the stream.", user = %event.user, connection = %event.connection, %error);
    }
}
