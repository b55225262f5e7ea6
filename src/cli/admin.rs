//! `agentcron requeue <id>` and `agentcron cancel <id>`: the operator's actions on one run.
//! Exit 0 when the action applied, 1 when the run is missing or in a state that does not allow
//! it (the message says which).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::setup::load_config;
use super::{RunIdArgs, exit};
use crate::queue::Action;
use crate::telemetry::Redactor;

/// Which action.
#[derive(Debug, Clone, Copy)]
pub(super) enum Verb {
    /// Back on the queue.
    Requeue,
    /// Stop it.
    Cancel,
}

/// Runs the action and reports it.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &RunIdArgs,
    verb: Verb,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let config = load_config(flag, redactor, crate::config::Needs::Redis)?;
    let queue = super::setup::queue(&config).await?;
    let action = match verb {
        Verb::Requeue => queue.requeue(&args.id).await,
        Verb::Cancel => queue.cancel(&args.id).await,
    }
    .context("updating the run")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&action)?);
    } else {
        println!("{}", describe(&action, verb));
    }
    Ok(ExitCode::from(if action.applied { exit::OK } else { exit::FAILURE }))
}

fn describe(action: &Action, verb: Verb) -> String {
    let id = &action.run_id;
    match (verb, action.found.as_str(), action.applied) {
        (_, "missing", _) => format!("no run {id:?}"),
        (Verb::Requeue, from, true) => format!("{id}: {from} → queued"),
        (Verb::Requeue, state, false) => {
            format!("{id} is {state}; only dead, failed, cancelled or skipped runs can be requeued")
        }
        (Verb::Cancel, "running", true) => {
            format!("{id}: running; asked to stop at its next safe point")
        }
        (Verb::Cancel, from, true) => format!("{id}: {from} → cancelled"),
        (Verb::Cancel, state, false) => format!("{id} is already {state}"),
    }
}
