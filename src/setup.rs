//! The guide's build phase, idempotent: find the MCP config by name or create it with the
//! connection → tool mappings of `jobs.toml`; find the agent by name or create it with the
//! configured definition, and when the one found differs from it (model, system prompt, MCP
//! server, tools) update it to a new version; use the configured environment or find or create
//! one; store the ids in `<prefix>:setup`. A second run creates nothing. [`check`] reports the
//! same differences without changing anything.
//!
//! This module must not run sessions.

mod agent;
mod current;

use std::collections::HashMap;

use crate::config::RedisConn;
use serde::Serialize;
use serde_json::json;

use crate::api::ApiError;
use crate::api::anthropic::{self, EnvironmentCreate};
use crate::api::scalekit::{self, NewMapping};
use crate::config::Config;
use crate::keys::Keys;

pub use self::agent::Change;
pub use self::current::Current;

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

/// What `ensure` created (false = found) or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Created {
    /// The MCP config was created.
    pub mcp_config: bool,
    /// The agent was created.
    pub agent: bool,
    /// The environment was created.
    pub environment: bool,
    /// How the agent found differed from the configuration; it was updated to match.
    pub changes: Vec<Change>,
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
    /// The environment `anthropic.environment_id` names does not exist (or is archived).
    #[error("environment {0} (anthropic.environment_id) not found: fix the id or unset it")]
    EnvironmentGone(String),
    /// `agentcron setup` has not been run against this Redis prefix.
    #[error("setup has not run for this prefix: run `agentcron setup` first")]
    Missing,
}

/// Reads the ids stored by [`ensure`].
///
/// # Errors
/// [`SetupError::Missing`] when setup has not run; [`SetupError::Redis`] when Redis fails.
pub async fn load(conn: &mut RedisConn, keys: &Keys) -> Result<Setup, SetupError> {
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

/// Records that a run found `object` missing; true only for the first report since the ids
/// were last stored (the mark stays until `setup` stores them again).
///
/// # Errors
/// [`SetupError::Redis`] when Redis fails.
pub async fn report_missing(
    conn: &mut RedisConn,
    keys: &Keys,
    object: &str,
    detail: &str,
) -> Result<bool, SetupError> {
    let mark = json!({"object": object, "detail": detail, "since_ms": chrono::Utc::now().timestamp_millis()});
    let set: Option<String> = redis::cmd("SET")
        .arg(keys.setup_missing())
        .arg(mark.to_string())
        .arg("NX")
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}

/// What a run reported missing (the JSON mark), if anything.
///
/// # Errors
/// [`SetupError::Redis`] when Redis fails.
pub async fn reported_missing(
    conn: &mut RedisConn,
    keys: &Keys,
) -> Result<Option<String>, SetupError> {
    Ok(redis::cmd("GET").arg(keys.setup_missing()).query_async(conn).await?)
}

/// Finds or creates everything and stores the ids.
///
/// # Errors
/// [`SetupError`] when a call fails.
pub async fn ensure(
    config: &Config,
    scalekit: &scalekit::Client,
    anthropic: &anthropic::Client,
    conn: &mut RedisConn,
    keys: &Keys,
) -> Result<(Setup, Created), SetupError> {
    let mut created = Created::default();
    let mcp = mcp_config(config, scalekit, &mut created.mcp_config).await?;
    if mcp.mcp_server_url.is_empty() {
        return Err(SetupError::NoServerUrl(mcp.id));
    }
    let agent_id = agent(config, anthropic, &mcp.mcp_server_url, &mut created).await?;
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
    // Whatever a run found missing has been found or made again: workers pick up the ids.
    redis::cmd("DEL").arg(keys.setup_missing()).query_async::<()>(conn).await?;
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
    created: &mut Created,
) -> Result<String, SetupError> {
    let wanted = agent::definition(&config.anthropic.agent, server_url);
    if let Some(found) = anthropic.find_agent_by_name(&wanted.name).await? {
        let changes = agent::drift(&found, &wanted);
        if !changes.is_empty() {
            let updated = agent::update(anthropic, &found, wanted).await?;
            tracing::info!(message = "The agent differed from the configuration; updated.", agent_id = %updated.id, version = updated.version, changes = %changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
            created.changes = changes;
        }
        return Ok(found.id);
    }
    let agent = anthropic.create_agent(&wanted).await?;
    created.agent = true;
    Ok(agent.id)
}

/// How the setup objects at the vendors differ from the configuration, changing nothing: a
/// missing object is a change (`exists`), as is every field of the agent that differs.
///
/// # Errors
/// [`SetupError`] when a lookup fails.
pub async fn check(
    config: &Config,
    scalekit: &scalekit::Client,
    anthropic: &anthropic::Client,
) -> Result<Vec<Change>, SetupError> {
    let missing = |object: &'static str, name: &str| Change {
        object,
        field: "exists",
        found: "missing".to_owned(),
        wanted: name.to_owned(),
    };
    let mut changes = Vec::new();
    let mcp = scalekit.find_config_by_name(&config.scalekit.mcp_config_name).await?;
    if mcp.is_none() {
        changes.push(missing("mcp config", &config.scalekit.mcp_config_name));
    }
    let definition = &config.anthropic.agent;
    match anthropic.find_agent_by_name(&definition.name).await? {
        None => changes.push(missing("agent", &definition.name)),
        Some(found) => {
            // Without the MCP config its URL is unknown: the agent's own is taken as wanted.
            let url = mcp.as_ref().map(|mcp| mcp.mcp_server_url.as_str());
            let url = url.or_else(|| found.mcp_servers.first().map(|s| s.url.as_str()));
            changes.extend(agent::drift(
                &found,
                &agent::definition(definition, url.unwrap_or_default()),
            ));
        }
    }
    if find_environment(config, anthropic).await?.is_none() {
        let name =
            config.anthropic.environment_id.as_ref().unwrap_or(&config.anthropic.environment_name);
        changes.push(missing("environment", name));
    }
    Ok(changes)
}

async fn environment(
    config: &Config,
    anthropic: &anthropic::Client,
    created: &mut bool,
) -> Result<String, SetupError> {
    if let Some(found) = find_environment(config, anthropic).await? {
        return Ok(found);
    }
    if let Some(id) = &config.anthropic.environment_id {
        // Configured by id and gone: not ours to recreate under another id.
        return Err(SetupError::EnvironmentGone(id.clone()));
    }
    let request = EnvironmentCreate {
        name: config.anthropic.environment_name.clone(),
        config: json!({"type": "cloud", "networking": {"type": "unrestricted"}}),
    };
    let environment = anthropic.create_environment(&request).await?;
    *created = true;
    Ok(environment.id)
}

/// The configured environment (by id, or the first unarchived one of the configured name).
async fn find_environment(
    config: &Config,
    anthropic: &anthropic::Client,
) -> Result<Option<String>, SetupError> {
    if let Some(id) = &config.anthropic.environment_id {
        return match anthropic.get_environment(id).await {
            Ok(found) if found.archived_at.is_none() => Ok(Some(found.id)),
            Ok(_) => Ok(None),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error.into()),
        };
    }
    let name = &config.anthropic.environment_name;
    let mut page = None;
    loop {
        let list = anthropic.list_environments(page.as_deref()).await?;
        if let Some(found) = list.data.iter().find(|e| &e.name == name && e.archived_at.is_none()) {
            return Ok(Some(found.id.clone()));
        }
        match list.next_page {
            Some(next) if !next.is_empty() => page = Some(next),
            _ => return Ok(None),
        }
    }
}
