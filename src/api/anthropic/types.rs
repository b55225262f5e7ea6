//! Request and response bodies of the Managed Agents API's resources (agents, environments,
//! vaults, credentials and sessions), as the official SDK sends and reads them. Requests
//! serialise only the fields that are set; responses read only what agentcron uses and default
//! the rest.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// `POST /v1/agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentCreate {
    /// Model id.
    pub model: String,
    /// Agent name.
    pub name: String,
    /// Attached MCP servers.
    pub mcp_servers: Vec<McpServer>,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Toolsets.
    pub tools: Vec<Tool>,
}

/// `{"type":"url","name","url"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServer {
    /// Always `url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name referenced by an `mcp_toolset`.
    pub name: String,
    /// Server URL; vault credentials are matched to it.
    pub url: String,
}

/// A toolset entry of `tools[]`.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// `agent_toolset_20260401`, `mcp_toolset`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// For `mcp_toolset`: the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_server_name: Option<String>,
    /// Defaults for every tool of the set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_config: Option<ToolConfig>,
}

/// `default_config` of a toolset.
#[derive(Debug, Clone, Serialize)]
pub struct ToolConfig {
    /// Whether the tools are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `{"type":"always_allow"|"always_ask"|"auto"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_policy: Option<Typed>,
}

/// An object that is only a `type`, such as a permission policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typed {
    /// The type name.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Typed {
    /// `{"type": kind}`.
    pub fn new(kind: &str) -> Self {
        Self { kind: kind.to_owned() }
    }
}

/// An agent as returned.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Agent {
    /// `agent_…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version, bumped by updates.
    pub version: u64,
    /// `{"id", "speed"}` (a bare id string in older answers).
    pub model: Value,
    /// System prompt.
    pub system: Option<String>,
    /// Attached MCP servers.
    pub mcp_servers: Vec<McpServer>,
    /// Toolsets, fully expanded.
    pub tools: Vec<Value>,
    /// Set when archived.
    pub archived_at: Option<String>,
}

impl Agent {
    /// The model's id.
    pub fn model_id(&self) -> &str {
        self.model.as_str().or_else(|| self.model.get("id")?.as_str()).unwrap_or_default()
    }
}

/// `POST /v1/agents/{agent_id}`: a new version with these fields (lists replaced).
#[derive(Debug, Clone, Serialize)]
pub struct AgentUpdate {
    /// The version this update is based on; a concurrent update makes it a 409.
    pub version: u64,
    /// Model id.
    pub model: String,
    /// Attached MCP servers.
    pub mcp_servers: Vec<McpServer>,
    /// System prompt.
    pub system: Option<String>,
    /// Toolsets.
    pub tools: Vec<Tool>,
}

/// `POST /v1/environments`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentCreate {
    /// Name.
    pub name: String,
    /// `{"type":"cloud","networking":{"type":"unrestricted"}}`.
    pub config: Value,
}

/// An environment as returned.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Environment {
    /// `env_…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Set when archived.
    pub archived_at: Option<String>,
}

/// A vault as returned.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Vault {
    /// `vlt_…`.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// String metadata.
    pub metadata: serde_json::Map<String, Value>,
}

/// A vault credential as returned (secrets are never echoed).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Credential {
    /// `vcrd_…`.
    pub id: String,
    /// The vault.
    pub vault_id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// `{"type","mcp_server_url"}`.
    pub auth: CredentialAuth,
}

/// The non-secret part of a credential's `auth`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CredentialAuth {
    /// `static_bearer`, `mcp_oauth`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The MCP server it authenticates to.
    pub mcp_server_url: String,
}

/// `auth` of a credential create or update with a bearer token.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BearerAuth<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mcp_server_url: Option<&'a str>,
    #[serde(serialize_with = "expose")]
    pub(crate) token: &'a SecretString,
}

fn expose<S: Serializer>(secret: &&SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Serialize)]
pub struct SessionCreate {
    /// `agent_…` (latest version).
    pub agent: String,
    /// `env_…`.
    pub environment_id: String,
    /// Title shown in the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// String metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Vaults whose credentials the session may use.
    pub vault_ids: Vec<String>,
}

/// A session as returned.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Session {
    /// `sesn_…`.
    pub id: String,
    /// `rescheduling`, `running`, `idle`, `terminated` (kept as sent).
    pub status: String,
    /// Title.
    pub title: Option<String>,
    /// String metadata.
    pub metadata: serde_json::Map<String, Value>,
    /// Vaults.
    pub vault_ids: Vec<String>,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// Set when archived.
    pub archived_at: Option<String>,
}

/// One page of a list (also the echo of `events.send`).
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    /// Items. `"data": null` reads as none: an accepted send may echo nothing.
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub data: Vec<T>,
    /// Cursor of the next page; none on the last.
    #[serde(default)]
    pub next_page: Option<String>,
}

/// An event to send to a session.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum OutgoingEvent {
    /// The user's message.
    #[serde(rename = "user.message")]
    UserMessage {
        /// Text blocks.
        content: Vec<TextBlock>,
    },
    /// An answer to `requires_action` for one tool use.
    #[serde(rename = "user.tool_confirmation")]
    ToolConfirmation {
        /// The `agent.(mcp_)tool_use` event id.
        tool_use_id: String,
        /// `allow` or `deny`.
        result: &'static str,
        /// Why, when denied.
        #[serde(skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
    },
    /// Stops the agent's turn: it goes idle without finishing.
    #[serde(rename = "user.interrupt")]
    Interrupt,
}

impl OutgoingEvent {
    /// A `user.message` with one text block.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self::UserMessage { content: vec![TextBlock { kind: "text", text: text.into() }] }
    }
}

/// `null` as an empty list.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `{"type":"text","text"}`.
#[derive(Debug, Clone, Serialize)]
pub struct TextBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The text.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_or_missing_page_is_empty() {
        let null: Page<Value> = serde_json::from_str(r#"{"data": null}"#).unwrap();
        assert!(null.data.is_empty());
        let missing: Page<Value> = serde_json::from_str("{}").unwrap();
        assert!(missing.data.is_empty());
        let one: Page<Value> = serde_json::from_str(r#"{"data": [{"id": "a"}]}"#).unwrap();
        assert_eq!(one.data.len(), 1);
    }
}
