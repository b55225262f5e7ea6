//! `agentcron config check`: validate and print the effective configuration, secrets redacted,
//! and warn about variables that set nothing.
//!
//! Exit 0 when the configuration is valid, warnings or not (a worker would start with it and
//! log the same warnings); 1 when it is invalid, or with `--strict` when there is a warning, or
//! with `--redis` when a worker would refuse the server (a `maxmemory-policy` that drops keys)
//! or it cannot be reached.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{ConfigCheckArgs, exit};
use crate::config::{self, ConfigError, Env, Origin, Warning};
use crate::telemetry::Redactor;

mod templates;

/// Prints the configuration (TOML, or JSON with `--json`) and returns 0, or prints every
/// problem and returns 1; warnings go to stderr (and into the JSON) either way.
pub(super) async fn run(
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
    let mut strict_fails = args.strict && !warnings.is_empty();
    let code = match res {
        Ok(config) if args.redis && !redis_accepted(&config, args.json).await => exit::FAILURE,
        Ok(config) => {
            if args.redis {
                let missing = templates::missing_values(&config).await;
                let lines = missing.unwrap_or_else(|error| vec![format!("redis: {error}")]);
                for line in &lines {
                    eprintln!("warning: {}", redactor.redact(line));
                }
                strict_fails |= args.strict && !lines.is_empty();
            }
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

/// Whether a worker would accept the Redis at `config.redis.url`; prints why not.
async fn redis_accepted(config: &crate::config::Config, json: bool) -> bool {
    let read = async {
        // The connection a worker makes: through the sentinels, or to the cluster's slot.
        let manager_config = redis::aio::ConnectionManagerConfig::new().set_number_of_retries(1);
        let mut conn = config.redis.connect(manager_config).await?;
        crate::queue::read_policy(&mut conn).await.map_err(|e| e.to_string())
    };
    let problem = match tokio::time::timeout(REDIS_CHECK, read).await {
        Ok(Ok(Some(policy)))
            if policy != crate::queue::SAFE_POLICY && !config.redis.allow_eviction =>
        {
            format!(
                "redis: maxmemory-policy is `{policy}`, which drops keys under memory pressure; \
                 set `maxmemory-policy noeviction` on the server, or redis.allow_eviction = true"
            )
        }
        Ok(Ok(_)) => return true,
        Ok(Err(error)) => format!("redis: cannot check the server: {error}"),
        Err(_) => format!("redis: no answer within {}s", REDIS_CHECK.as_secs()),
    };
    if json {
        println!(
            "{}",
            json!({"valid": false, "error": problem, "problems": [{"key": "redis.url", "message": problem}]})
        );
    }
    eprintln!("{problem}");
    false
}

/// How long `--redis` waits for the server.
const REDIS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

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
