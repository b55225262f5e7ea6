//! The entry points: which file to load, and loading it under an environment snapshot, with
//! the warnings logged ([`load`] and [`load_for`], for every command) or returned ([`check`],
//! for `config check`). Commands that only reach Redis ([`Needs::Redis`]) run without the
//! default file, from the environment alone. This module only reads the file and the `.env` beside it; the layers are
//! `layers.rs`, the values' checks `validate.rs`.

use std::path::{Path, PathBuf};

use super::{AGENTCRON_CONFIG, Config, ConfigError, DEFAULT_PATH, Env, Result, Warning};
use super::{layers, validate};

/// The file to load: the `--config` flag, else `$AGENTCRON_CONFIG`, else `./jobs.toml`.
pub fn resolve_path(flag: Option<&Path>, env: &Env) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| env.get(AGENTCRON_CONFIG).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// What a command needs of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// All of it: the daemons, `setup`, `authorize`, `schedules`. The file must exist.
    All,
    /// Only Redis (the reports, `enqueue`, `requeue`, `cancel`): the default `./jobs.toml` may
    /// be missing, and then the configuration is the defaults and the environment alone
    /// (`AGENTCRON__REDIS__URL`, `REDIS_URL`, `AGENTCRON__REDIS__PREFIX`, …); and
    /// `scalekit.env_url`, which these commands never use, may be unset.
    Redis,
}

/// Loads the configuration a command needs, from `--config` (`flag`), else
/// `$AGENTCRON_CONFIG`, else `./jobs.toml` (see [`Needs`] for when that file may be missing),
/// and logs each [`Warning`].
///
/// # Errors
/// As [`load`]. A file named by `--config` or `$AGENTCRON_CONFIG` must exist whatever the
/// command: [`ConfigError::Read`] names it.
pub fn load_for(flag: Option<&Path>, env: &Env, needs: Needs) -> Result<Config> {
    let path = resolve_path(flag, env);
    let named = flag.is_some() || env.get(AGENTCRON_CONFIG).is_some();
    let optional = needs == Needs::Redis && !named;
    log_warnings(check_for(&path, env, needs, optional))
}

/// Loads and validates the configuration at `path` under `env`, and logs each [`Warning`].
///
/// The `.env` file beside `path` is consulted for variables `env` lacks.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read; [`ConfigError::Invalid`] with every
/// problem found otherwise.
pub fn load(path: &Path, env: &Env) -> Result<Config> {
    log_warnings(check(path, env))
}

fn log_warnings(checked: Checked) -> Result<Config> {
    for warning in &checked.warnings {
        tracing::warn!(
            message = "An environment variable sets no configuration key.",
            var = %warning.var,
            warning = %warning.message,
        );
    }
    checked.config
}

/// What [`check`] found: the configuration or every problem, and the warnings either way.
#[derive(Debug)]
pub struct Checked {
    /// The validated configuration, or every problem found.
    pub config: Result<Config>,
    /// Variables with the `AGENTCRON_` prefix that set no key, in name order.
    pub warnings: Vec<Warning>,
}

/// Loads and validates the configuration at `path` under `env`, as [`load`] does, and returns
/// the warnings instead of logging them (for `config check`).
pub fn check(path: &Path, env: &Env) -> Checked {
    check_for(path, env, Needs::All, false)
}

/// [`check`] for a command that needs `needs`; with `optional`, a file that does not exist is
/// read as empty.
fn check_for(path: &Path, env: &Env, needs: Needs, optional: bool) -> Checked {
    let mut env = env.clone();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        env.merge_dotenv(&dir.join(".env"));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) if optional && source.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            // Without the file, the environment is still checked against the keys.
            let warnings = match layers::parse_layers(path, "", &env) {
                Ok(layers) => layers.warnings,
                Err((_, warnings)) => warnings,
            };
            let config = Err(ConfigError::Read { path: path.to_path_buf(), source });
            return Checked { config, warnings };
        }
    };
    match layers::parse_layers(path, &text, &env) {
        Ok(mut layers) => {
            let warnings = std::mem::take(&mut layers.warnings);
            Checked { config: validate::validate(path, layers, &env, needs), warnings }
        }
        Err((error, warnings)) => Checked { config: Err(error), warnings },
    }
}
