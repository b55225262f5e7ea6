//! `agentcron config check`: validate and print the effective configuration, secrets redacted,
//! and warn about variables that set nothing.
//!
//! Exit 0 when the configuration is valid, warnings or not (a worker would start with it and
//! log the same warnings); 1 when it is invalid, or with `--strict` when there is a warning.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{ConfigCheckArgs, exit};
use crate::config::{self, ConfigError, Env, Origin, Warning};
use crate::telemetry::Redactor;

/// Prints the configuration (TOML, or JSON with `--json`) and returns 0, or prints every
/// problem and returns 1; warnings go to stderr (and into the JSON) either way.
pub(super) fn run(
    flag: Option<&Path>,
    args: &ConfigCheckArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let checked = config::check(&path, &env);
    let warnings = checked.warnings;
    let res = checked.config.and_then(|config| {
        if args.secrets { config.require_secrets().map(|()| config) } else { Ok(config) }
    });
    let strict_fails = args.strict && !warnings.is_empty();
    let code = match res {
        Ok(config) => {
            for secret in config.secret_values() {
                redactor.add(secret);
            }
            let text = if args.json {
                let report =
                    json!({"valid": true, "config": config, "warnings": warnings_json(&warnings)});
                serde_json::to_string_pretty(&report)?
            } else {
                toml::to_string_pretty(&config).context("rendering the configuration as TOML")?
            };
            println!("{}", redactor.redact(&text));
            eprintln!("configuration OK: {}", path.display());
            if strict_fails { exit::FAILURE } else { exit::OK }
        }
        Err(error) => {
            if args.json {
                let report = problems_json(&error, &warnings);
                println!("{}", redactor.redact(&serde_json::to_string_pretty(&report)?));
            }
            eprintln!("{}", redactor.redact(&error.to_string()));
            exit::FAILURE
        }
    };
    for warning in &warnings {
        eprintln!("warning: {}", redactor.redact(&warning.to_string()));
    }
    if strict_fails {
        eprintln!("--strict: warnings fail the check");
    }
    Ok(ExitCode::from(code))
}

fn warnings_json(warnings: &[Warning]) -> serde_json::Value {
    warnings.iter().map(|w| json!({"env": w.var, "message": w.message})).collect()
}

fn problems_json(error: &ConfigError, warnings: &[Warning]) -> serde_json::Value {
    let problems: Vec<_> = error
        .problems()
        .iter()
        .map(|problem| {
            let (file, line, env) = match &problem.origin {
                Origin::File { path, line } => (Some(path.display().to_string()), *line, None),
                Origin::Env(var) => (None, None, Some(var.clone())),
            };
            json!({"key": problem.key, "message": problem.message, "file": file, "line": line, "env": env})
        })
        .collect();
    json!({"valid": false, "error": error.to_string(), "problems": problems,
        "warnings": warnings_json(warnings)})
}
