//! The Anthropic client's vault and credential calls: create, retrieve and delete vaults, and
//! create, update, retrieve and delete their `static_bearer` credentials.
//!
//! Owns the credential request body. It must not decide which token a vault holds or when it
//! is refreshed; callers pass the token.

use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};

use super::types::BearerAuth;
use super::{Body, Client, Credential, Page, Vault};
use crate::api::{ApiError, path_segment};
use reqwest::Method;

impl Client {
    /// `vaults.create`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn create_vault(
        &self,
        display_name: &str,
        metadata: Option<serde_json::Map<String, Value>>,
    ) -> Result<Vault, ApiError> {
        let mut body = json!({"display_name": display_name});
        if let Some(metadata) = metadata {
            body["metadata"] = Value::Object(metadata);
        }
        self.call("vaults.create", Method::POST, "/v1/vaults", &[], Body::Json(&body)).await
    }

    /// `vaults.list`, one page of up to 100, in the API's order.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_vaults(&self, page: Option<&str>) -> Result<Page<Vault>, ApiError> {
        let mut query = vec![("limit", "100")];
        query.extend(super::page_query(page));
        self.call("vaults.list", Method::GET, "/v1/vaults", &query, Body::None).await
    }

    /// `vaults.credentials.list`: the vault's credentials, first page of up to 100 (an
    /// agentcron vault holds one).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn list_credentials(&self, vault_id: &str) -> Result<Page<Credential>, ApiError> {
        let path = format!("/v1/vaults/{}/credentials", path_segment(vault_id));
        let query = [("limit", "100")];
        self.call("vaults.credentials.list", Method::GET, &path, &query, Body::None).await
    }

    /// `vaults.retrieve`.
    ///
    /// # Errors
    /// [`ApiError`]; a missing vault is a permanent 404.
    pub async fn get_vault(&self, vault_id: &str) -> Result<Vault, ApiError> {
        let path = format!("/v1/vaults/{}", path_segment(vault_id));
        self.call("vaults.retrieve", Method::GET, &path, &[], Body::None).await
    }

    /// `vaults.delete`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn delete_vault(&self, vault_id: &str) -> Result<(), ApiError> {
        let path = format!("/v1/vaults/{}", path_segment(vault_id));
        self.call::<Value>("vaults.delete", Method::DELETE, &path, &[], Body::Empty).await.map(drop)
    }

    /// `vaults.credentials.create` with a `static_bearer` token for `mcp_server_url`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn create_credential(
        &self,
        vault_id: &str,
        display_name: &str,
        mcp_server_url: &str,
        token: &SecretString,
    ) -> Result<Credential, ApiError> {
        let auth =
            BearerAuth { kind: "static_bearer", mcp_server_url: Some(mcp_server_url), token };
        let body = CredentialBody { auth, display_name: Some(display_name) };
        let path = format!("/v1/vaults/{}/credentials", path_segment(vault_id));
        self.call("vaults.credentials.create", Method::POST, &path, &[], Body::Json(&body)).await
    }

    /// `vaults.credentials.update`: replaces the bearer token (the URL cannot change).
    ///
    /// # Errors
    /// [`ApiError`]; a missing credential is a permanent 404.
    pub async fn update_credential_token(
        &self,
        vault_id: &str,
        credential_id: &str,
        token: &SecretString,
    ) -> Result<Credential, ApiError> {
        let auth = BearerAuth { kind: "static_bearer", mcp_server_url: None, token };
        let body = CredentialBody { auth, display_name: None };
        let path = credential_path(vault_id, credential_id);
        self.call("vaults.credentials.update", Method::POST, &path, &[], Body::Json(&body)).await
    }

    /// `vaults.credentials.retrieve`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn get_credential(
        &self,
        vault_id: &str,
        credential_id: &str,
    ) -> Result<Credential, ApiError> {
        let path = credential_path(vault_id, credential_id);
        self.call("vaults.credentials.retrieve", Method::GET, &path, &[], Body::None).await
    }

    /// `vaults.credentials.delete`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn delete_credential(
        &self,
        vault_id: &str,
        credential_id: &str,
    ) -> Result<(), ApiError> {
        let path = credential_path(vault_id, credential_id);
        let endpoint = "vaults.credentials.delete";
        self.call::<Value>(endpoint, Method::DELETE, &path, &[], Body::Empty).await.map(drop)
    }
}

#[derive(Serialize)]
struct CredentialBody<'a> {
    auth: BearerAuth<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
}

fn credential_path(vault_id: &str, credential_id: &str) -> String {
    format!("/v1/vaults/{}/credentials/{}", path_segment(vault_id), path_segment(credential_id))
}
