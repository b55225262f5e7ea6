//! The entry points: which file to load, and loading it under an environment snapshot, with
//! the warnings logged ([`load`], for every command) or returned ([`check`], for
//! `config check`). This module only reads the file and the `.env` beside it; the layers are
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

/// Loads and validates the configuration at `path` under `env`, and logs each [`Warning`].
///
/// The `.env` file beside `path` is consulted for variables `env` lacks.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read; [`ConfigError::Invalid`] with every
/// problem found otherwise.
pub fn load(path: &Path, env: &Env) -> Result<Config> {
    let checked = check(path, env);
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
    let mut env = env.clone();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        env.merge_dotenv(&dir.join(".env"));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
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
            Checked { config: validate::validate(path, layers, &env), warnings }
        }
        Err((error, warnings)) => Checked { config: Err(error), warnings },
    }
}
