//! Layers the configuration file and the environment into one [`RawConfig`], with every problem
//! of syntax, type and name found on the way, and the warnings about variables.
//!
//! [`parse_layers`] parses the file's text exactly once, into a [`Document`] that keeps every
//! span; `read.rs` reads each key from it and from the environment's [`Overrides`] (the variable
//! wins), `unknown.rs` reports the file's keys that were never read, and `overrides.rs` warns
//! about the variables that set nothing. Only a syntax error stops the check early, as it
//! leaves no table to read. This module must not validate values or read files and the process
//! environment: `config.rs` hands it the text and an [`Env`] snapshot, and `validate.rs` checks
//! the values.

use std::collections::BTreeMap;
use std::path::Path;

use super::env::Env;
use super::locate::{self, Document};
use super::overrides::Overrides;
use super::raw::RawConfig;
use super::read::{Read, Reader};
use super::unknown;
use super::{ConfigError, Origin, Problem, Warning};

/// The file and the environment, read.
pub(super) struct Layers<'a> {
    /// The file, parsed once, for the lines of later problems.
    pub(super) document: Document<'a>,
    pub(super) raw: RawConfig,
    /// Problems of syntax, type and unknown keys, in the order found.
    pub(super) problems: Vec<Problem>,
    /// Key → the variable whose value it took, for the origin of later problems.
    pub(super) env_origins: BTreeMap<String, String>,
    pub(super) warnings: Vec<Warning>,
}

/// Parses `text` once and reads every key from it and from `env`.
///
/// # Errors
/// [`ConfigError::Invalid`] with the syntax error that stopped parsing, beside the warnings
/// about the environment (checked against an empty file).
pub(super) fn parse_layers<'a>(
    path: &Path,
    text: &'a str,
    env: &Env,
) -> Result<Layers<'a>, (ConfigError, Vec<Warning>)> {
    let overrides = Overrides::from_env(env);
    let document = match Document::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let problem = syntax_problem(path, text, &error);
            let warnings = Document::parse("")
                .map(|empty| read_all(path, &empty, &overrides).2)
                .unwrap_or_default();
            return Err((ConfigError::Invalid(vec![problem]), warnings));
        }
    };
    let (raw, read, warnings) = read_all(path, &document, &overrides);
    let mut problems = read.problems;
    problems.extend(unknown::problems(path, &document, &read.known));
    Ok(Layers { document, raw, problems, env_origins: read.env_origins, warnings })
}

fn read_all(
    path: &Path,
    document: &Document<'_>,
    overrides: &Overrides,
) -> (RawConfig, Read, Vec<Warning>) {
    let mut reader = Reader::new(path, document, overrides);
    let raw = RawConfig::read(&mut reader);
    let read = reader.finish();
    let warnings = overrides.warnings(&read.known);
    (raw, read, warnings)
}

/// The syntax error that stopped the parse, at its line.
fn syntax_problem(path: &Path, text: &str, error: &toml::de::Error) -> Problem {
    let line = error.span().map(|span| locate::line_at(text, span.start));
    Problem {
        origin: Origin::File { path: path.to_path_buf(), line },
        key: "(file)".to_owned(),
        message: error.message().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers_of(text: &str, env: &[(&str, &str)]) -> Layers<'static> {
        let text = Box::leak(text.to_owned().into_boxed_str());
        let env = Env::from_pairs(env.iter().copied());
        parse_layers(Path::new("jobs.toml"), text, &env).map_err(|(error, _)| error).unwrap()
    }

    #[test]
    fn an_unknown_key_names_its_line_and_reading_goes_on() {
        let layers = layers_of("[worker]\nconcurrency = 3\ncolour = \"blue\"\nlease = 5\n", &[]);
        let shown: Vec<String> = layers.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "jobs.toml:4: `worker.lease`: invalid type: expected a string, found integer 5",
                "jobs.toml:3: `worker.colour`: unknown key; expected one of concurrency, \
                 finish_linger, heartbeat, lease, max_attempts, run_timeout, shutdown_grace",
            ]
        );
        assert_eq!(layers.raw.worker.concurrency, Some(3));
    }

    #[test]
    fn the_variable_wins_and_is_remembered() {
        let env = [("AGENTCRON__WORKER__CONCURRENCY", "7"), ("REDIS_URL", "redis://r:1")];
        let layers = layers_of("[worker]\nconcurrency = 3\n", &env);
        assert_eq!(layers.raw.worker.concurrency, Some(7));
        assert_eq!(layers.raw.redis.url.as_deref(), Some("redis://r:1"));
        let var = layers.env_origins.get("worker.concurrency").map(String::as_str);
        assert_eq!(var, Some("AGENTCRON__WORKER__CONCURRENCY"));
        assert!(layers.problems.is_empty() && layers.warnings.is_empty());
    }

    #[test]
    fn variables_are_parsed_as_their_key_requires() {
        let env = [
            ("AGENTCRON__ANTHROPIC__AGENT__TOOLSETS", "a, b,,"),
            ("AGENTCRON__SETUP__AUTO", "TRUE"),
            ("AGENTCRON__RETRY__JITTER", "0"),
            ("AGENTCRON__RETRY__MULTIPLIER", "1.5"),
            ("AGENTCRON__LIMITS__CREATES_PER_MINUTE", "30"),
        ];
        let raw = layers_of("", &env).raw;
        assert_eq!(raw.anthropic.agent.toolsets, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!((raw.setup.auto, raw.retry.jitter), (Some(true), Some(false)));
        assert_eq!(raw.retry.multiplier, Some(1.5));
        assert_eq!(raw.limits.creates_per_minute, Some(30.0));
    }

    #[test]
    fn a_syntax_error_still_warns_about_the_environment() {
        let env = Env::from_pairs([("AGENTCRON_REDIS__URL", "redis://r:1")]);
        let Err((error, warnings)) = parse_layers(Path::new("jobs.toml"), "[ops", &env) else {
            panic!("a syntax error stops the check")
        };
        assert_eq!(error.problems()[0].key, "(file)");
        assert_eq!(warnings[0].var, "AGENTCRON_REDIS__URL");
    }
}
