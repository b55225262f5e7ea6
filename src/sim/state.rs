//! Everything the simulator remembers, in memory: Scalekit configs, users (connected accounts,
//! mailbox, calendar), Anthropic resources and sessions. One std `Mutex` guards the store; every
//! critical section is short and never spans an `.await` (clippy's `await_holding_lock` checks).
//! Per-session hot state lives in [`SessionRt`](super::session::SessionRt) with its own lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::audit::Audit;
use super::faults::Faults;
use super::fixtures::{self, CONNECTIONS, Mail};
use super::ids::IdGen;
use super::jwt;
use super::session::SessionRt;
use crate::sim::SimConfig;

/// The connected-account statuses Scalekit has (`ConnectorStatus` names).
pub(crate) const STATUSES: [&str; 5] =
    ["ACTIVE", "EXPIRED", "PENDING_AUTH", "PENDING_VERIFICATION", "DISCONNECTED"];

/// Shared by every handler and task.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    /// `http://host:port`, the base URL of both APIs and of the MCP servers.
    pub(crate) base_url: String,
    pub(crate) key: jwt::Key,
    pub(crate) ids: IdGen,
    store: Mutex<Store>,
    pub(crate) faults: Faults,
    pub(crate) audit: Audit,
    /// Cancelled on shutdown: streams, hanging requests and agent tasks stop at their next await.
    pub(crate) cancel: CancellationToken,
    /// Owns the agent tasks, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
}

impl SimState {
    pub(crate) fn new(config: SimConfig, base_url: String, cancel: CancellationToken) -> Self {
        Self {
            key: jwt::Key::from_seed(config.seed),
            ids: IdGen::new(config.seed),
            faults: Faults::new(config.seed),
            audit: Audit::default(),
            store: Mutex::new(Store::default()),
            tasks: TaskTracker::new(),
            config,
            base_url,
            cancel,
        }
    }

    /// Locks the store; see the module doc for the rules. Poisoning is ignored: a panicking
    /// handler leaves consistent-enough data for a simulator, and tests then fail on their own.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The MCP server URL of a config: on this server, so the token audience is checkable.
    pub(crate) fn mcp_server_url(&self, server_uuid: &str) -> String {
        format!("{}/mcp/v3/servers/{server_uuid}", self.base_url)
    }
}

/// A Virtual MCP server config.
#[derive(Debug, Clone)]
pub(crate) struct McpConfig {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) mappings: Vec<Mapping>,
    /// Last path segment of `mcp_server_url`.
    pub(crate) server_uuid: String,
}

/// One connection of a config and the tools it exposes (empty = all).
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub(crate) connection_name: String,
    pub(crate) tools: Vec<String>,
}

impl Mapping {
    pub(crate) fn allows(&self, tool: &str) -> bool {
        self.tools.is_empty() || self.tools.iter().any(|allowed| allowed == tool)
    }
}

/// A user's connected account on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) updated_at: String,
}

/// Everything the simulator knows about one end user (Scalekit identifier).
#[derive(Debug, Default)]
pub(crate) struct User {
    pub(crate) accounts: BTreeMap<String, Account>,
    pub(crate) mailbox: Vec<Mail>,
    pub(crate) calendar: Vec<Value>,
}

/// An authorization link handed out by the magic-link endpoint; visiting it activates the
/// account (the demo's stand-in for the user completing OAuth).
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) identifier: String,
    pub(crate) connection: String,
}

/// An agent: every version's full response object, newest last.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) versions: Vec<Arc<Value>>,
}

impl Agent {
    pub(crate) fn latest(&self) -> &Arc<Value> {
        // Invariant: an agent is created with one version and versions are only appended.
        &self.versions[self.versions.len() - 1]
    }
}

/// A vault credential: the response object (no secret) and the secret kept aside.
#[derive(Debug)]
pub(crate) struct Credential {
    pub(crate) view: Value,
    pub(crate) vault_id: String,
    pub(crate) auth_type: String,
    pub(crate) mcp_server_url: String,
    /// `token` of a `static_bearer`, `access_token` of an `mcp_oauth`.
    pub(crate) secret: Option<String>,
}

/// A session: what was fixed at creation, plus its live part.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    /// The agent snapshot (shared between the sessions of one agent version).
    pub(crate) agent: Arc<Value>,
    pub(crate) environment_id: String,
    pub(crate) title: Option<String>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) vault_ids: Vec<String>,
    pub(crate) created_at: String,
    pub(crate) archived_at: Option<String>,
    /// From metadata `run_id`, else the title.
    pub(crate) run_id: Option<String>,
    /// From metadata `user`/`identifier`, else parsed from the title.
    pub(crate) user: Option<String>,
    pub(crate) rt: Arc<SessionRt>,
}

/// The store behind the lock.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) configs: BTreeMap<String, McpConfig>,
    pub(crate) users: HashMap<String, User>,
    pub(crate) links: HashMap<String, Link>,
    /// Bumped by `/_sim/scalekit/revoke`: client tokens of older generations stop working.
    pub(crate) token_generation: u64,
    pub(crate) agents: BTreeMap<String, Agent>,
    pub(crate) environments: BTreeMap<String, Value>,
    pub(crate) vaults: BTreeMap<String, Value>,
    pub(crate) credentials: BTreeMap<String, Credential>,
    pub(crate) sessions: BTreeMap<String, Session>,
}

impl Store {
    /// The user, created on first sight with the default accounts and the seeded mailbox.
    pub(crate) fn user(&mut self, config: &SimConfig, ids: &IdGen, identifier: &str) -> &mut User {
        self.users.entry(identifier.to_owned()).or_insert_with(|| {
            let mut user =
                User { mailbox: fixtures::mailbox(config.seed, identifier), ..User::default() };
            if let Some(status) = &config.default_connection_status {
                for connection in &CONNECTIONS {
                    let account = Account {
                        id: ids.scalekit("ca"),
                        status: status.clone(),
                        updated_at: super::ids::now(),
                    };
                    user.accounts.insert(connection.name.to_owned(), account);
                }
            }
            user
        })
    }

    /// The config whose MCP server URL ends in `server_uuid`.
    pub(crate) fn config_by_server(&self, server_uuid: &str) -> Option<&McpConfig> {
        self.configs.values().find(|config| config.server_uuid == server_uuid)
    }
}
