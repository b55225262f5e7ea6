//! The guide's build phase, idempotent: find the MCP config by name or create it with the
//! connection → tool mappings of `jobs.toml`; find the agent by name or create it with the
//! configured definition; use the configured environment or find or create one; store the ids
//! in `<prefix>:setup`. A second run creates nothing.
//!
//! This module must not run sessions.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::json;

use crate::api::ApiError;
use crate::api::anthropic::{
    self, AgentCreate, EnvironmentCreate, McpServer, Tool, ToolConfig, Typed,
};
use crate::api::scalekit::{self, NewMapping};
use crate::config::{Config, PermissionPolicy};
use crate::keys::Keys;

/// The ids every run needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setup {
    /// Scalekit MCP config id (`cfg_…`).
    pub mcp_config_id: String,
    /// The Virtual MCP Server URL (the audience of session tokens).
    pub mcp_server_url: String,
    /// Anthropic agent id.
    pub agent_id: String,
    /// Anthropic environment id.
    pub environment_id: String,
}

/// What `ensure` created (false = found).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Created {
    /// The MCP config was created.
    pub mcp_config: bool,
    /// The agent was created.
    pub agent: bool,
    /// The environment was created.
    pub environment: bool,
}

/// Why setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A remote call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The MCP config has no server URL (the feature is off for the environment).
    #[error(
        "the MCP config {0} has no mcp_server_url; enable Virtual MCP Servers for the environment"
    )]
    NoServerUrl(String),
    /// A credential the remote APIs need is not configured.
    #[error("{0} is not set: put it in the environment or a .env file")]
    Credentials(String),
    /// `agentcron setup` has not been run against this Redis prefix.
    #[error("setup has not run for this prefix: run `agentcron setup` first")]
    Missing,
}

/// Reads the ids stored by [`ensure`].
///
/// # Errors
/// [`SetupError::Missing`] when setup has not run; [`SetupError::Redis`] when Redis fails.
pub async fn load(conn: &mut ConnectionManager, keys: &Keys) -> Result<Setup, SetupError> {
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.setup()).query_async(conn).await?;
    let field = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
    match (
        field("mcp_config_id"),
        field("mcp_server_url"),
        field("agent_id"),
        field("environment_id"),
    ) {
        (Some(mcp_config_id), Some(mcp_server_url), Some(agent_id), Some(environment_id)) => {
            Ok(Setup { mcp_config_id, mcp_server_url, agent_id, environment_id })
        }
        _ => Err(SetupError::Missing),
    }
}

/// Finds or creates everything and stores the ids.
///
/// # Errors
/// [`SetupError`] when a call fails.
pub async fn ensure(
    config: &Config,
    scalekit: &scalekit::Client,
    anthropic: &anthropic::Client,
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> Result<(Setup, Created), SetupError> {
    let mut created = Created::default();
    let mcp = mcp_config(config, scalekit, &mut created.mcp_config).await?;
    if mcp.mcp_server_url.is_empty() {
        return Err(SetupError::NoServerUrl(mcp.id));
    }
    let agent_id = agent(config, anthropic, &mcp.mcp_server_url, &mut created.agent).await?;
    let environment_id = environment(config, anthropic, &mut created.environment).await?;
    let setup = Setup {
        mcp_config_id: mcp.id,
        mcp_server_url: mcp.mcp_server_url,
        agent_id,
        environment_id,
    };
    redis::cmd("HSET")
        .arg(keys.setup())
        .arg("mcp_config_id")
        .arg(&setup.mcp_config_id)
        .arg("mcp_server_url")
        .arg(&setup.mcp_server_url)
        .arg("agent_id")
        .arg(&setup.agent_id)
        .arg("environment_id")
        .arg(&setup.environment_id)
        .query_async::<()>(conn)
        .await?;
    Ok((setup, created))
}

async fn mcp_config(
    config: &Config,
    scalekit: &scalekit::Client,
    created: &mut bool,
) -> Result<scalekit::McpConfig, SetupError> {
    let name = &config.scalekit.mcp_config_name;
    if let Some(found) = scalekit.find_config_by_name(name).await? {
        return Ok(found);
    }
    let mappings: Vec<NewMapping<'_>> = config
        .scalekit
        .connections
        .iter()
        .map(|c| NewMapping { connection_name: &c.name, tools: &c.tools })
        .collect();
    match scalekit.create_config(name, &mappings).await {
        Ok(config) => {
            *created = true;
            Ok(config)
        }
        // Another setup created it between our lookup and create.
        Err(error) if error.status() == Some(409) => {
            scalekit.find_config_by_name(name).await?.ok_or(SetupError::Api(error))
        }
        Err(error) => Err(error.into()),
    }
}

async fn agent(
    config: &Config,
    anthropic: &anthropic::Client,
    server_url: &str,
    created: &mut bool,
) -> Result<String, SetupError> {
    let definition = &config.anthropic.agent;
    if let Some(found) = anthropic.find_agent_by_name(&definition.name).await? {
        return Ok(found.id);
    }
    let policy = match definition.permission_policy {
        PermissionPolicy::AlwaysAllow => "always_allow",
        PermissionPolicy::AlwaysAsk => "always_ask",
    };
    let mut tools: Vec<Tool> = definition
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
        mcp_server_name: Some(definition.mcp_server_name.clone()),
        default_config: Some(ToolConfig {
            enabled: Some(true),
            permission_policy: Some(Typed::new(policy)),
        }),
    });
    let request = AgentCreate {
        model: definition.model.clone(),
        name: definition.name.clone(),
        mcp_servers: vec![McpServer {
            kind: "url".to_owned(),
            name: definition.mcp_server_name.clone(),
            url: server_url.to_owned(),
        }],
        system: Some(definition.system.clone()),
        tools,
    };
    let agent = anthropic.create_agent(&request).await?;
    *created = true;
    Ok(agent.id)
}

async fn environment(
    config: &Config,
    anthropic: &anthropic::Client,
    created: &mut bool,
) -> Result<String, SetupError> {
    if let Some(id) = &config.anthropic.environment_id {
        return Ok(anthropic.get_environment(id).await?.id);
    }
    let name = &config.anthropic.environment_name;
    let mut page = None;
    loop {
        let list = anthropic.list_environments(page.as_deref()).await?;
        if let Some(found) = list.data.iter().find(|e| &e.name == name && e.archived_at.is_none()) {
            return Ok(found.id.clone());
        }
        match list.next_page {
            Some(next) if !next.is_empty() => page = Some(next),
            _ => break,
        }
    }
    let request = EnvironmentCreate {
        name: name.clone(),
        config: json!({"type": "cloud", "networking": {"type": "unrestricted"}}),
    };
    let environment = anthropic.create_environment(&request).await?;
    *created = true;
    Ok(environment.id)
}
