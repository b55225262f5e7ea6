//! Phase `minting`: a user-scoped session token for the MCP config, with the configured
//! expiry. The token is registered with the redactor at once (until it expires) and never
//! stored anywhere.

use crate::ids::UserId;
use secrecy::ExposeSecret;

use super::{Context, RunError};
use crate::api::scalekit::SessionToken;

/// Mints a token for `user`.
///
/// # Errors
/// [`RunError`] when Scalekit fails or the rate limiter's Redis does.
pub async fn mint(ctx: &Context, user: &UserId) -> Result<SessionToken, RunError> {
    super::throttle(ctx, "tokens", ctx.config.limits.tokens_per_second).await?;
    let expiry = ctx.config.scalekit.token_expiry;
    let config_id = ctx.setup.get().mcp_config_id.clone();
    let token = ctx.scalekit.create_session_token(&config_id, user.as_str(), expiry).await?;
    let expires_at = token.expires_at.unwrap_or_else(|| {
        chrono::Utc::now()
            + chrono::TimeDelta::from_std(expiry).unwrap_or(chrono::TimeDelta::zero())
    });
    ctx.redactor.add_expiring(token.token.expose_secret(), expires_at.into());
    Ok(SessionToken { token: token.token, expires_at: Some(expires_at) })
}
