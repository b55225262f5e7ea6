//! Phase `vault`: one Anthropic vault and one `static_bearer` credential per user (the
//! guide's single shared credential would let concurrent users overwrite each other's token).
//! Created on the first run, updated afterwards, recreated when found missing (404). The ids
//! live in `<prefix>:user:<user>`; the per-user lease keeps two runs from racing here.

use redis::aio::ConnectionManager;
use secrecy::SecretString;
use serde_json::json;

use super::{Context, Run, RunError, fence};
use crate::ids::{CredentialId, UserId, VaultId};
use crate::records;

/// The user's vault and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultIds {
    /// `vlt_…`.
    pub vault_id: VaultId,
    /// `vcrd_…`.
    pub credential_id: CredentialId,
}

/// Puts `token` in the user's vault, creating what is missing.
///
/// # Errors
/// [`RunError`] when Anthropic or Redis fails.
pub async fn refresh(
    ctx: &Context,
    conn: &mut ConnectionManager,
    run: &Run,
    token: &SecretString,
) -> Result<VaultIds, RunError> {
    let user = &run.user;
    let map = records::load_user(conn, &ctx.keys, user).await?;
    if let (Some(vault_id), Some(credential_id)) = (map.get("vault_id"), map.get("credential_id")) {
        match ctx.anthropic.update_credential_token(vault_id, credential_id, token).await {
            Ok(_) => {
                return Ok(VaultIds {
                    vault_id: VaultId::from(vault_id),
                    credential_id: CredentialId::from(credential_id),
                });
            }
            Err(error) if error.status() == Some(404) => {
                tracing::info!(
                    message = "Vault credential missing; recreating.",
                    user = user.as_str(),
                    vault_id
                );
            }
            Err(error) => return Err(error.into()),
        }
    }
    // Creating a vault or a credential must not happen twice for one run.
    fence::check(ctx, run).await?;
    let vault_id = match map.get("vault_id") {
        Some(id) if vault_exists(ctx, id).await? => VaultId::from(id),
        _ => create_vault(ctx, user).await?,
    };
    let credential = ctx
        .anthropic
        .create_credential(vault_id.as_str(), "agentcron", &ctx.setup.mcp_server_url, token)
        .await?;
    let ids = VaultIds { vault_id, credential_id: CredentialId::from(credential.id) };
    let fields = [
        ("vault_id", ids.vault_id.as_str().to_owned()),
        ("credential_id", ids.credential_id.as_str().to_owned()),
    ];
    records::set_user(conn, &ctx.keys, user, &fields).await?;
    Ok(ids)
}

async fn vault_exists(ctx: &Context, vault_id: &str) -> Result<bool, RunError> {
    match ctx.anthropic.get_vault(vault_id).await {
        Ok(_) => Ok(true),
        Err(error) if error.status() == Some(404) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

async fn create_vault(ctx: &Context, user: &UserId) -> Result<VaultId, RunError> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("user".to_owned(), json!(user));
    metadata.insert("created_by".to_owned(), json!("agentcron"));
    let vault = ctx.anthropic.create_vault(&format!("agentcron {user}"), Some(metadata)).await?;
    Ok(VaultId::from(vault.id))
}

/// Replaces the token mid-session (the session outlives the first token).
///
/// # Errors
/// [`RunError`] when Anthropic fails.
pub async fn update(ctx: &Context, ids: &VaultIds, token: &SecretString) -> Result<(), RunError> {
    ctx.anthropic
        .update_credential_token(ids.vault_id.as_str(), ids.credential_id.as_str(), token)
        .await?;
    Ok(())
}
