//! A snapshot of the environment the configuration reads: the process environment over the
//! `.env` file, the way the vendor guide's `python-dotenv` layers them (a variable already set
//! in the process wins).
//!
//! Tests build their own snapshot instead of mutating the process environment, so they can run
//! in parallel. This module must not read any key of `jobs.toml`.

use std::collections::BTreeMap;
use std::path::Path;

/// Variables this crate reads, by name.
pub const SCALEKIT_ENV_URL: &str = "SCALEKIT_ENV_URL";
/// Scalekit client id (the guide's name).
pub const SCALEKIT_CLIENT_ID: &str = "SCALEKIT_CLIENT_ID";
/// Scalekit client secret (the guide's name).
pub const SCALEKIT_CLIENT_SECRET: &str = "SCALEKIT_CLIENT_SECRET";
/// Anthropic API key (the guide's name).
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// Anthropic environment id (the guide's name).
pub const ANTHROPIC_ENVIRONMENT_ID: &str = "ANTHROPIC_ENVIRONMENT_ID";
/// The official Anthropic SDK's base URL override.
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// The conventional Redis URL variable.
pub const REDIS_URL: &str = "REDIS_URL";
/// Path of the configuration file when `--config` is not given.
pub const AGENTCRON_CONFIG: &str = "AGENTCRON_CONFIG";
/// Prefix of `AGENTCRON__SECTION__KEY` overrides.
pub const OVERRIDE_PREFIX: &str = "AGENTCRON__";
/// Variables with the `AGENTCRON_` prefix that are not configuration keys, so never warned
/// about: the file's path, the log format (read by the command line), the env file of
/// `deploy/docker-compose.yml`, and the Redis of the test suite.
pub(crate) const NOT_KEYS: [&str; 4] =
    [AGENTCRON_CONFIG, "AGENTCRON_LOG_FORMAT", "AGENTCRON_ENV_FILE", "AGENTCRON_TEST_REDIS_URL"];

/// Conventional variables and the configuration key each one sets. `AGENTCRON__…` still wins.
pub(crate) const CONVENTIONAL: [(&str, &str); 6] = [
    (REDIS_URL, "redis.url"),
    ("REDIS_USERNAME", "redis.username"),
    ("REDIS_PASSWORD", "redis.password"),
    (ANTHROPIC_BASE_URL, "anthropic.base_url"),
    (SCALEKIT_ENV_URL, "scalekit.env_url"),
    (ANTHROPIC_ENVIRONMENT_ID, "anthropic.environment_id"),
];

/// An immutable set of environment variables.
#[derive(Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl std::fmt::Debug for Env {
    // Values may be secrets: only the names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Env {
    /// The process environment over `.env` in the current directory, when one exists.
    pub fn from_process() -> Self {
        let mut env = Self::default();
        env.merge_dotenv(Path::new(".env"));
        env.0.extend(std::env::vars());
        env
    }

    /// Exactly these variables, for tests and embedding.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(pairs.into_iter().map(|(key, value)| (key.into(), value.into())).collect())
    }

    /// Adds the variables of a dotenv file that are not set yet. A missing file is not an error.
    pub fn merge_dotenv(&mut self, path: &Path) {
        let Ok(iter) = dotenvy::from_path_iter(path) else { return };
        for (key, value) in iter.flatten() {
            self.0.entry(key).or_insert(value);
        }
    }

    /// One variable; empty values count as unset, as they do for the guide's `os.environ` checks.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }

    /// Every variable, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// This machine's name, for worker ids: `$HOSTNAME`, else the kernel's hostname, else `host`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}
