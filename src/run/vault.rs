//! Phase `vault`: one Anthropic vault and one `static_bearer` credential per user (the
//! guide's single shared credential would let concurrent users overwrite each other's token).
//! Created on the first run, updated afterwards, recreated when found missing (404). The ids
//! live in `<prefix>:user:<user>`; the per-user lease keeps two runs from racing here.

use crate::config::RedisConn;
use secrecy::SecretString;
use serde_json::json;

use super::context::{pause_before_retry, single_attempts};
use super::{Context, Run, RunError, fence};
use crate::ids::{CredentialId, UserId, VaultId};
use crate::records;

/// The `created_by` metadata of our vaults, and our credentials' display name.
const CREATED_BY: &str = "agentcron";
/// Pages of up to 100 vaults a vault whose create answer was lost is looked for in.
const MAX_LOOKUP_PAGES: usize = 10;

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
    conn: &mut RedisConn,
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
    let (vault_id, created) = match map.get("vault_id") {
        Some(id) if vault_exists(ctx, id).await? => (VaultId::from(id), false),
        _ => ensure_vault(ctx, conn, run, map.get("vault_requested_at_ms").is_some()).await?,
    };
    // A vault that existed may hold our credential already (an earlier attempt created it and
    // died before the map was written); one this attempt created holds none.
    let adopted = if created { None } else { adopt_credential(ctx, &vault_id, token).await? };
    let credential_id = match adopted {
        Some(found) => found,
        None => create_credential(ctx, run, &vault_id, token).await?,
    };
    let ids = VaultIds { vault_id, credential_id };
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

/// The user's vault: found again when an earlier attempt asked for one and died before
/// recording its id (the request mark in the user map says so), else created; with whether
/// this attempt created it. The mark is written before the create, so that a crash between
/// the create and the map leaves a trace.
async fn ensure_vault(
    ctx: &Context,
    conn: &mut RedisConn,
    run: &Run,
    requested_before: bool,
) -> Result<(VaultId, bool), RunError> {
    let user = &run.user;
    if requested_before && let Some(found) = find_vault(ctx, user).await? {
        tracing::info!(message = "Found the vault an earlier attempt created.", user = user.as_str(), vault_id = %found);
        return Ok((found, false));
    }
    let mark = [("vault_requested_at_ms", records::now_ms().to_string())];
    records::set_user(conn, &ctx.keys, user, &mark).await?;
    Ok((create_vault(ctx, run).await?, true))
}

/// Creates the user's vault with single attempts; after an ambiguous failure (the vendor may
/// have acted), looks for it by its `user` metadata before creating again. The fence is checked
/// before each create (see [`create_credential`]).
async fn create_vault(ctx: &Context, run: &Run) -> Result<VaultId, RunError> {
    let user = &run.user;
    let mut metadata = serde_json::Map::new();
    metadata.insert("user".to_owned(), json!(user));
    metadata.insert("created_by".to_owned(), json!(CREATED_BY));
    let (policy, once) = single_attempts(ctx, run);
    let name = user.vault_display_name();
    let mut retry = 0;
    loop {
        // The fence is checked last, as the request leaves (`fence::Guard`).
        let error = match once.create_vault(&name, Some(metadata.clone())).await {
            Ok(vault) => return Ok(VaultId::from(vault.id)),
            Err(error) => error,
        };
        fence::check(ctx, run).await?;
        pause_before_retry(&policy, retry, error, "vaults.create").await?;
        if let Some(found) = find_vault(ctx, user).await? {
            return Ok(found);
        }
        retry += 1;
    }
}

/// The user's vault among the first [`MAX_LOOKUP_PAGES`] pages the API lists.
async fn find_vault(ctx: &Context, user: &UserId) -> Result<Option<VaultId>, RunError> {
    let mut page = None;
    for _ in 0..MAX_LOOKUP_PAGES {
        let batch = ctx.anthropic.list_vaults(page.as_deref()).await?;
        let text = |vault: &crate::api::anthropic::Vault, key: &str| {
            vault.metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned)
        };
        let mine = batch.data.iter().find(|vault| {
            text(vault, "user").as_deref() == Some(user.as_str())
                && text(vault, "created_by").as_deref() == Some(CREATED_BY)
        });
        if let Some(vault) = mine {
            return Ok(Some(VaultId::from(vault.id.as_str())));
        }
        match batch.next_page {
            Some(next) if !next.is_empty() => page = Some(next),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Creates the credential with single attempts; after an ambiguous failure, looks for it in
/// the vault (by its MCP server) before creating again, so the vault never holds two
/// credentials for one server (which would leave it to the vendor which token the agent uses).
/// The fence is checked as each create leaves (`fence::Guard`), after its rate-limit turn:
/// creating the vault can take long, and a worker frozen meanwhile (or waiting for its turn
/// while Redis was paused) may have been taken over by an attempt that created it already.
async fn create_credential(
    ctx: &Context,
    run: &Run,
    vault_id: &VaultId,
    token: &SecretString,
) -> Result<CredentialId, RunError> {
    let (policy, once) = single_attempts(ctx, run);
    let setup = ctx.setup.get();
    let url = &setup.mcp_server_url;
    let mut retry = 0;
    loop {
        let error = match once.create_credential(vault_id.as_str(), CREATED_BY, url, token).await {
            Ok(credential) => return Ok(CredentialId::from(credential.id)),
            Err(error) => error,
        };
        fence::check(ctx, run).await?;
        pause_before_retry(&policy, retry, error, "vaults.credentials.create").await?;
        if let Some(found) = adopt_credential(ctx, vault_id, token).await? {
            return Ok(found);
        }
        retry += 1;
    }
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

/// The vault's credential for our MCP server, if it has one, set to `token` (it may hold an
/// older token, or that of a create whose answer was lost).
async fn adopt_credential(
    ctx: &Context,
    vault_id: &VaultId,
    token: &SecretString,
) -> Result<Option<CredentialId>, RunError> {
    let listed = ctx.anthropic.list_credentials(vault_id.as_str()).await?;
    let setup = ctx.setup.get();
    let url = &setup.mcp_server_url;
    let Some(found) = listed.data.iter().find(|credential| &credential.auth.mcp_server_url == url)
    else {
        return Ok(None);
    };
    ctx.anthropic.update_credential_token(vault_id.as_str(), &found.id, token).await?;
    Ok(Some(CredentialId::from(found.id.as_str())))
}
