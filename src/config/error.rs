//! Why a configuration failed to load: the error type and the problems it lists.
//!
//! Each [`Problem`] names where the value came from (the file and line, or the variable), the
//! dotted key and what was expected; each [`Warning`] names a variable that sets nothing. This
//! module only describes and displays them; it must not find them (that is `read.rs`,
//! `overrides.rs` and `validate.rs`) and must never print a secret value.

use std::fmt;
use std::path::PathBuf;

/// Crate-wide result for configuration loading.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file that was tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more values are wrong; every problem found is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems, empty for I/O errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            Self::Read { .. } => &[],
        }
    }
}

/// One invalid value: where it came from, which key, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value was set.
    pub origin: Origin,
    /// The dotted key, such as `schedule[0].cron`.
    pub key: String,
    /// What is wrong and what was expected. Never contains a secret value.
    pub message: String,
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file, with the line when the file sets the key.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
    },
    /// An environment variable (or `.env`).
    Env(String),
}

/// A variable that looks meant for the configuration but sets nothing, such as
/// `AGENTCRON_REDIS__URL` (one underscore after the prefix). Warnings never make a
/// configuration invalid: start-up logs them and `config check` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The variable, as written.
    pub var: String,
    /// Why it sets nothing, and the variable that would. Never contains its value.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {}: {}", self.var, self.message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line: Some(line) } => write!(f, "{}:{line}: ", path.display())?,
            Origin::File { path, line: None } => write!(f, "{}: ", path.display())?,
            Origin::Env(var) => write!(f, "environment variable {var}: ")?,
        }
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n_problems = self.0.len();
        let noun = if n_problems == 1 { "problem" } else { "problems" };
        write!(f, "invalid configuration ({n_problems} {noun})")?;
        for problem in self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}
