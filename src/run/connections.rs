//! Phase `checking`: every mapped connection must have an ACTIVE account (case-insensitive;
//! no account counts as inactive). For each inactive one, fetch an auth link and open or
//! refresh its notice; for each active one, resolve its open notice.

use redis::aio::ConnectionManager;

use super::{Context, Run, RunError};
use crate::backoff::RetryPolicy;
use crate::records::notice::{self, NoticeEvent};
use crate::records::webhook;

/// Returns the names of the inactive connections (empty when all are active).
///
/// # Errors
/// [`RunError`] when Scalekit or Redis fails.
pub async fn check(
    ctx: &Context,
    conn: &mut ConnectionManager,
    run: &Run,
) -> Result<Vec<String>, RunError> {
    let connections = &ctx.config.scalekit.connections;
    let names: Vec<&str> = connections.iter().map(|c| c.name.as_str()).collect();
    // Side by side: the Redis read hides behind the remote call.
    let (states, noticed) = tokio::join!(
        ctx.scalekit.list_connected_accounts(&ctx.setup.mcp_config_id, run.user.as_str(), false),
        notice::open_among(conn, &ctx.keys, &run.user, &names)
    );
    let (states, noticed) = (states?, noticed?);
    let mut inactive = Vec::new();
    for (connection, noticed) in connections.iter().zip(noticed) {
        let state =
            states.iter().find(|s| s.connection_name.eq_ignore_ascii_case(&connection.name));
        if state.is_some_and(|state| state.is_active()) {
            if noticed
                && let Some(event) =
                    notice::resolve(conn, &ctx.keys, &run.user, &connection.name, &run.id).await?
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
    Ok(inactive)
}

/// Sends the notice to the webhook, when one is configured. A few quick attempts only: the
/// notice is on the Redis stream either way, and the run must not wait on a dead endpoint.
async fn notify(ctx: &Context, event: &NoticeEvent) {
    let Some(url) = &ctx.config.notices.webhook_url else { return };
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::from(&ctx.config.retry) };
    webhook::deliver(&ctx.http, url, ctx.config.notices.webhook_secret.as_ref(), policy, event)
        .await;
}
