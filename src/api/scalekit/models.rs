//! The Scalekit client's wire types: the public results (configs, connection states, session
//! tokens, magic links, connected accounts) and the private envelopes and error bodies they
//! arrive in.
//!
//! Responses are read leniently: missing fields default, unknown fields are ignored, statuses
//! are kept as strings. This module must not make requests or classify errors.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// A Virtual MCP Server configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct McpConfig {
    /// `cfg_…`.
    pub id: String,
    /// Unique name, `^[a-z0-9_-]+$`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Connection → tools.
    pub connection_tool_mappings: Vec<ToolMapping>,
    /// The URL agents use; the audience of session tokens.
    pub mcp_server_url: String,
}

/// One connection of a config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ToolMapping {
    /// `conn_…`.
    pub connection_id: String,
    /// The connection's key, such as `gmail`.
    pub connection_name: String,
    /// Provider name.
    pub provider: String,
    /// Tool names; empty means all.
    pub tools: Vec<String>,
}

/// A user's account on one connection of a config (`McpConnectionAuthState`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectionState {
    /// `conn_…`.
    pub connection_id: String,
    /// The connection's key, such as `gmail`.
    pub connection_name: String,
    /// Provider name.
    pub provider: String,
    /// `ca_…`, absent when the user has no account.
    pub connected_account_id: Option<String>,
    /// `ACTIVE`, `EXPIRED`, … (kept as sent); absent when the user has no account.
    pub connected_account_status: Option<String>,
    /// Auth link, only when asked for.
    pub authentication_link: String,
}

impl ConnectionState {
    /// Whether the account exists and is `ACTIVE` (any case).
    pub fn is_active(&self) -> bool {
        self.connected_account_status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("ACTIVE"))
    }
}

/// A minted user-scoped MCP session token.
#[derive(Debug, Clone)]
pub struct SessionToken {
    /// The bearer token. Never printed.
    pub token: SecretString,
    /// When it stops working, when the server said.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An authorization link for one connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MagicLink {
    /// The link to send to the user.
    pub link: String,
    /// When the link expires, as sent.
    pub expiry: Option<String>,
}

/// A connected account without credentials (`/connected_accounts/details`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectedAccount {
    /// `ca_…`.
    pub id: String,
    /// The user.
    pub identifier: String,
    /// Provider name.
    pub provider: String,
    /// Connection name.
    pub connector: String,
    /// `conn_…`.
    pub connection_id: String,
    /// `ACTIVE`, `EXPIRED`, … (kept as sent).
    pub status: String,
    /// `OAUTH`, … (kept as sent).
    pub authorization_type: String,
    /// RFC 3339, as sent.
    pub token_expires_at: Option<String>,
    /// RFC 3339, as sent.
    pub updated_at: Option<String>,
    /// RFC 3339, as sent.
    pub last_used_at: Option<String>,
}

/// A connection and its tools, for [`Client::create_config`](super::Client::create_config).
#[derive(Debug, Clone, Serialize)]
pub struct NewMapping<'a> {
    /// Connection key.
    pub connection_name: &'a str,
    /// Tool names.
    pub tools: &'a [String],
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ErrorBody {
    pub(super) code: Option<i64>,
    pub(super) message: Option<String>,
    pub(super) details: Vec<serde_json::Value>,
    pub(super) error: Option<String>,
    pub(super) error_description: Option<String>,
}

impl ErrorBody {
    /// `error_code` of the first `ErrorInfo` detail.
    pub(super) fn error_code(&self) -> Option<String> {
        self.details
            .iter()
            .filter(|d| d["@type"].as_str().is_some_and(|t| t.ends_with("ErrorInfo")))
            .find_map(|d| d["error_code"].as_str().map(str::to_owned))
    }
}

#[derive(Deserialize)]
pub(super) struct OauthToken {
    #[serde(default)]
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) expires_in: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ConfigList {
    pub(super) configs: Vec<McpConfig>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ConfigEnvelope {
    pub(super) config: McpConfig,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct AccountList {
    pub(super) connected_accounts: Vec<ConnectionState>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct AccountEnvelope {
    pub(super) connected_account: ConnectedAccount,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct TokenWire {
    pub(super) token: String,
    pub(super) expires_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_compare_case_insensitively_and_absence_is_inactive() {
        let state = |status: Option<&str>| ConnectionState {
            connected_account_status: status.map(str::to_owned),
            ..ConnectionState::default()
        };
        assert!(state(Some("ACTIVE")).is_active());
        assert!(state(Some("active")).is_active());
        assert!(!state(Some("EXPIRED")).is_active());
        assert!(!state(Some("SOMETHING_NEW")).is_active());
        assert!(!state(None).is_active());
    }

    #[test]
    fn error_bodies_of_both_shapes() {
        let grpc: ErrorBody = serde_json::from_str(
            r#"{"code":16,"message":"Token empty","details":[{"@type":"type.googleapis.com/scalekit.v1.errdetails.ErrorInfo","error_code":"UNAUTHENTICATED"}]}"#,
        )
        .unwrap();
        assert_eq!(grpc.error_code().as_deref(), Some("UNAUTHENTICATED"));
        assert_eq!(grpc.code, Some(16));
        let oauth: ErrorBody =
            serde_json::from_str(r#"{"error":"invalid_client","error_description":"bad"}"#)
                .unwrap();
        assert_eq!(oauth.error.as_deref(), Some("invalid_client"));
    }

    #[test]
    fn lenient_responses() {
        let list: AccountList = serde_json::from_str(
            r#"{"connected_accounts":[{"connection_name":"gmail","connected_account_status":"ACTIVE","surprise":1},{"connection_name":"googlecalendar"}]}"#,
        )
        .unwrap();
        assert_eq!(list.connected_accounts.len(), 2);
        assert!(list.connected_accounts[0].is_active());
        assert!(list.connected_accounts[1].connected_account_id.is_none());
        assert_eq!(crate::api::path_segment("cfg 1/2"), "cfg%201%2F2");
    }
}
