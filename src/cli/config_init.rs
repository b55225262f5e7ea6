//! `agentcron config init [--dir DIR] [--force]`: writes a commented starting `jobs.toml` and
//! a `.env.example` listing the environment, so that a new deployment starts from a file that
//! passes `config check` as written (both APIs pointed at the local simulator, one schedule
//! with no users yet).
//!
//! Exit 0 when both files were written; 1 when one of them exists already (nothing is written
//! without `--force`) or cannot be written.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{ConfigInitArgs, exit};
use crate::config::DEFAULT_PATH;

/// The starting `jobs.toml`: real keys only, which `config check` proves (a test runs it).
const JOBS_TOML: &str = include_str!("config_init/jobs.toml.template");
/// The starting `.env.example`: placeholders, never a secret.
const ENV_EXAMPLE: &str = include_str!("config_init/env.example.template");
/// The example environment's file name, beside `jobs.toml`.
const ENV_EXAMPLE_NAME: &str = ".env.example";

/// Writes both files into `args.dir` (created when missing), or writes nothing when one
/// exists and `--force` is not given.
pub(super) fn run(args: &ConfigInitArgs) -> anyhow::Result<ExitCode> {
    let files: [(PathBuf, &str); 2] =
        [(args.dir.join(DEFAULT_PATH), JOBS_TOML), (args.dir.join(ENV_EXAMPLE_NAME), ENV_EXAMPLE)];
    let existing: Vec<String> =
        files.iter().filter(|(path, _)| path.exists()).map(|(path, _)| shown(path)).collect();
    if !existing.is_empty() && !args.force {
        let verb = if existing.len() == 1 { "exists" } else { "exist" };
        eprintln!(
            "agentcron config init: {} already {verb}; nothing written (--force overwrites)",
            existing.join(" and ")
        );
        return Ok(ExitCode::from(exit::FAILURE));
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for (path, text) in &files {
        write(path, text, args.force).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", shown(path));
    }
    let config = shown(&files[0].0);
    println!(
        "\nNext, to try it against the simulator (`agentcron sim --port 8787` in another terminal):\n  \
         agentcron --config {config} config check\n  \
         agentcron --config {config} setup\n  \
         agentcron --config {config} worker --schedule\n\
         For production, set the real URLs in {config}, copy .env.example to .env beside it and \
         fill it in."
    );
    Ok(ExitCode::from(exit::OK))
}

/// Writes `text` to `path`; without `overwrite`, fails rather than replace a file that
/// appeared since the check.
fn write(path: &std::path::Path, text: &str, overwrite: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path)?.write_all(text.as_bytes())
}

fn shown(path: &std::path::Path) -> String {
    path.display().to_string()
}
