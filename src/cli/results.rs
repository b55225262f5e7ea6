//! What a run produced: `agentcron run <id>` (every field of the record, its result text under
//! its own heading, the phase timeline) and `agentcron result <id>` (the result text alone, for
//! pipes). The data comes from `ops::report::run`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::report::{Style, connect, print_json, table, time};
use super::{RunIdArgs, exit};
use crate::ops::report;
use crate::telemetry::Redactor;

/// The record field holding the result text, printed apart from the others.
const TEXT: &str = "result_text";

/// The run `args.id`, or `None` once `agentcron <command>` has said there is no such run.
async fn load(
    flag: Option<&Path>,
    args: &RunIdArgs,
    redactor: &Redactor,
    command: &str,
) -> anyhow::Result<Option<report::RunDetail>> {
    let (_, mut conn, keys) = connect(flag, redactor).await?;
    let detail = report::run(&mut conn, &keys, &args.id).await.context("reading the run")?;
    if detail.is_none() {
        eprintln!("agentcron {command}: no run {:?}", args.id);
    }
    Ok(detail)
}

/// `agentcron run <id>`: exit 1 when the run does not exist.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &RunIdArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let Some(detail) = load(flag, args, redactor, "run").await? else {
        return Ok(ExitCode::from(exit::FAILURE));
    };
    if args.json {
        print_json(&detail, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    let style = Style::detect();
    for (field, value) in detail.record.iter().filter(|(field, _)| *field != TEXT) {
        println!("{:<22} {}", style.bold(field), redactor.redact(value));
    }
    if let Some(text) = detail.record.get(TEXT) {
        println!("\n{}\n{}", style.bold("Result"), redactor.redact(text));
    }
    println!("\n{}", style.bold("Timeline"));
    let rows: Vec<Vec<String>> = detail
        .timeline
        .iter()
        .map(|span| {
            vec![
                span.phase.clone(),
                time(Some(span.at_ms)),
                span.duration_ms.map_or("-".to_owned(), |ms| format!("{ms} ms")),
            ]
        })
        .collect();
    table(&mut std::io::stdout(), &style, &["PHASE", "STARTED", "DURATION"], &rows)?;
    Ok(ExitCode::from(exit::OK))
}

/// `agentcron result <id>`: the agent's final text and nothing else (with `--json`, the text,
/// whether it was cut, and its whole size); exit 1 with a message when the run does not exist
/// or has no result yet.
pub(super) async fn result(
    flag: Option<&Path>,
    args: &RunIdArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let Some(detail) = load(flag, args, redactor, "result").await? else {
        return Ok(ExitCode::from(exit::FAILURE));
    };
    let Some(text) = detail.record.get(TEXT) else {
        let state = detail.record.get("state").map_or("unknown", String::as_str);
        eprintln!("agentcron result: run {:?} has no result (state {state})", args.id);
        return Ok(ExitCode::from(exit::FAILURE));
    };
    if args.json {
        let field = |name: &str| detail.record.get(name).cloned();
        let value = serde_json::json!({
            "run_id": args.id,
            "text": text,
            "truncated": field("result_truncated").as_deref() == Some("true"),
            "bytes": field("result_bytes").and_then(|bytes| bytes.parse::<u64>().ok()),
            "stop_reason": field("stop_reason"),
        });
        print_json(&value, redactor)?;
    } else {
        println!("{}", redactor.redact(text));
    }
    Ok(ExitCode::from(exit::OK))
}
