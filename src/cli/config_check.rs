//! `agentcron config check`: validate and print the effective configuration, secrets redacted.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{ConfigCheckArgs, exit};
use crate::config::{self, ConfigError, Env, Origin};
use crate::telemetry::Redactor;

/// Prints the configuration (TOML, or JSON with `--json`) and returns 0, or prints every
/// problem and returns 1.
pub(super) fn run(
    flag: Option<&Path>,
    args: &ConfigCheckArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let res = config::load(&path, &env).and_then(|config| {
        if args.secrets { config.require_secrets().map(|()| config) } else { Ok(config) }
    });
    match res {
        Ok(config) => {
            for secret in config.secret_values() {
                redactor.add(secret);
            }
            let text = if args.json {
                serde_json::to_string_pretty(&json!({"valid": true, "config": config}))?
            } else {
                toml::to_string_pretty(&config).context("rendering the configuration as TOML")?
            };
            println!("{}", redactor.redact(&text));
            eprintln!("configuration OK: {}", path.display());
            Ok(ExitCode::from(exit::OK))
        }
        Err(error) => {
            if args.json {
                println!(
                    "{}",
                    redactor.redact(&serde_json::to_string_pretty(&problems_json(&error))?)
                );
            }
            eprintln!("{}", redactor.redact(&error.to_string()));
            Ok(ExitCode::from(exit::FAILURE))
        }
    }
}

fn problems_json(error: &ConfigError) -> serde_json::Value {
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
    json!({"valid": false, "error": error.to_string(), "problems": problems})
}
