//! The agent `setup` keeps: its definition built from `jobs.toml` and the MCP server URL, how a
//! found agent differs from it (model, system prompt, MCP servers, tools), and the update that
//! makes it a new version of itself. It must not decide whether to apply a change: `setup` does.

use serde::Serialize;
use serde_json::Value;

use crate::api::anthropic::{
    self, Agent, AgentCreate, AgentUpdate, McpServer, Tool, ToolConfig, Typed,
};
use crate::config::{AgentConfig, PermissionPolicy};

use super::SetupError;

/// One difference between a setup object and the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `agent`, `environment` or `mcp config`.
    pub object: &'static str,
    /// What differs: `model`, `system`, `mcp_servers`, `tools`, or `exists`.
    pub field: &'static str,
    /// What the vendor has.
    pub found: String,
    /// What the configuration asks for.
    pub wanted: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {} → {}", self.object, self.field, self.found, self.wanted)
    }
}

/// The agent the configuration describes, attached to the MCP server at `server_url`.
pub(super) fn definition(agent: &AgentConfig, server_url: &str) -> AgentCreate {
    let policy = match agent.permission_policy {
        PermissionPolicy::AlwaysAllow => "always_allow",
        PermissionPolicy::AlwaysAsk => "always_ask",
    };
    let mut tools: Vec<Tool> = agent
        .toolsets
        .iter()
        .map(|kind| Tool {
            kind: kind.clone(),
            mcp_server_name: None,
            default_config: Some(ToolConfig { enabled: Some(true), permission_policy: None }),
        })
        .collect();
    tools.push(Tool {
        kind: "mcp_toolset".to_owned(),
        mcp_server_name: Some(agent.mcp_server_name.clone()),
        default_config: Some(ToolConfig {
            enabled: Some(true),
            permission_policy: Some(Typed::new(policy)),
        }),
    });
    AgentCreate {
        model: agent.model.clone(),
        name: agent.name.clone(),
        mcp_servers: vec![McpServer {
            kind: "url".to_owned(),
            name: agent.mcp_server_name.clone(),
            url: server_url.to_owned(),
        }],
        system: Some(agent.system.clone()),
        tools,
    }
}

/// How `found` differs from `wanted`, field by field.
pub(super) fn drift(found: &Agent, wanted: &AgentCreate) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut differs = |field: &'static str, found: String, wanted: String| {
        if found != wanted {
            changes.push(Change { object: "agent", field, found, wanted });
        }
    };
    differs("model", found.model_id().to_owned(), wanted.model.clone());
    differs(
        "system",
        found.system.clone().unwrap_or_default(),
        wanted.system.clone().unwrap_or_default(),
    );
    differs("mcp_servers", servers(&found.mcp_servers), servers(&wanted.mcp_servers));
    let wanted_tools: Vec<String> = wanted.tools.iter().map(wanted_tool).collect();
    differs("tools", listed(found.tools.iter().map(found_tool).collect()), listed(wanted_tools));
    changes
}

/// Makes `agent` a new version with the `wanted` definition.
///
/// # Errors
/// [`SetupError::Api`] when the update fails (409 when someone else changed it meanwhile).
pub(super) async fn update(
    anthropic: &anthropic::Client,
    agent: &Agent,
    wanted: AgentCreate,
) -> Result<Agent, SetupError> {
    let update = AgentUpdate {
        version: agent.version,
        model: wanted.model,
        mcp_servers: wanted.mcp_servers,
        system: wanted.system,
        tools: wanted.tools,
    };
    Ok(anthropic.update_agent(&agent.id, &update).await?)
}

fn servers(servers: &[McpServer]) -> String {
    listed(servers.iter().map(|s| format!("{}={}", s.name, s.url)).collect())
}

fn listed(mut items: Vec<String>) -> String {
    items.sort();
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

/// A toolset as `type`, or `type(server, policy)` for an MCP toolset: what `setup` sets. (The
/// vendor expands every toolset with defaults; only what the configuration decides counts.)
fn wanted_tool(tool: &Tool) -> String {
    let policy = tool.default_config.as_ref().and_then(|c| c.permission_policy.as_ref());
    toolset(&tool.kind, tool.mcp_server_name.as_deref(), policy.map(|p| p.kind.as_str()))
}

fn found_tool(tool: &Value) -> String {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
    let server = tool.get("mcp_server_name").and_then(Value::as_str);
    let policy = tool.pointer("/default_config/permission_policy/type").and_then(Value::as_str);
    toolset(kind, server, policy)
}

fn toolset(kind: &str, server: Option<&str>, policy: Option<&str>) -> String {
    match server {
        Some(server) => format!("{kind}({server}, {})", policy.unwrap_or("default")),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent_config() -> AgentConfig {
        AgentConfig {
            name: "triage".into(),
            model: "claude-sonnet-4-6".into(),
            system: "Triage.".into(),
            mcp_server_name: "mcp".into(),
            toolsets: vec!["agent_toolset_20260401".into()],
            permission_policy: PermissionPolicy::AlwaysAllow,
        }
    }

    /// The agent as the vendor answers for `wanted`: model an object, toolsets expanded.
    fn as_found(wanted: &AgentCreate) -> Agent {
        Agent {
            id: "agent_1".into(),
            name: wanted.name.clone(),
            version: 1,
            model: json!({"id": wanted.model, "speed": "standard"}),
            system: wanted.system.clone(),
            mcp_servers: wanted.mcp_servers.clone(),
            tools: vec![
                json!({"type": "agent_toolset_20260401", "default_config": {"enabled": true,
                    "permission_policy": {"type": "always_allow"}}, "configs": []}),
                json!({"type": "mcp_toolset", "mcp_server_name": "mcp", "default_config":
                    {"enabled": true, "permission_policy": {"type": "always_allow"}}, "configs": []}),
            ],
            archived_at: None,
        }
    }

    #[test]
    fn the_agent_setup_made_has_no_drift() {
        let wanted = definition(&agent_config(), "https://mcp/1");
        assert_eq!(drift(&as_found(&wanted), &wanted), []);
    }

    #[test]
    fn each_field_that_differs_is_named() {
        let found = as_found(&definition(&agent_config(), "https://mcp/1"));
        let mut config = agent_config();
        config.model = "claude-opus-4-6".into();
        config.system = "Triage, politely.".into();
        config.permission_policy = PermissionPolicy::AlwaysAsk;
        config.toolsets.clear();
        let changes = drift(&found, &definition(&config, "https://mcp/2"));
        let fields: Vec<&str> = changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["model", "system", "mcp_servers", "tools"]);
        assert_eq!(changes[0].to_string(), "agent model: claude-sonnet-4-6 → claude-opus-4-6");
        assert_eq!(changes[3].wanted, "mcp_toolset(mcp, always_ask)");
    }
}
