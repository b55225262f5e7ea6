//! One run in detail: its record with the phase timeline (`agentcron run`, `/api/runs/<id>`),
//! and how one of its transcript lines reads in the guide's output. Reads only.

use std::collections::BTreeMap;

use crate::config::RedisConn;
use serde::Serialize;
use serde_json::Value;

use crate::ids::RunId;
use crate::keys::Keys;
use crate::records::{self, Phase, RecordsError};

/// One run with its phase timeline.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// Every field of the record (in JSON with their types: `report::typed`).
    #[serde(serialize_with = "super::typed::serialize")]
    pub record: BTreeMap<String, String>,
    /// Phases reached, in order, with when each started and how long it took (until the next
    /// phase or the end).
    pub timeline: Vec<PhaseSpan>,
}

/// One phase of a run's timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PhaseSpan {
    /// The phase.
    pub phase: String,
    /// When it started (unix ms).
    pub at_ms: i64,
    /// How long it lasted, when it ended.
    pub duration_ms: Option<i64>,
}

/// The run record and its timeline; `None` when the run does not exist.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn run(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
) -> Result<Option<RunDetail>, RecordsError> {
    let Some(fields) = records::load_run(conn, keys, run_id).await? else { return Ok(None) };
    let int = |name: &str| fields.get(name).and_then(|v| v.parse::<i64>().ok());
    let starts: Vec<(Phase, i64)> = Phase::ALL
        .iter()
        .filter_map(|phase| int(&format!("{phase}_at_ms")).map(|at| (*phase, at)))
        .collect();
    let end = int("ended_at_ms");
    let timeline = starts
        .iter()
        .enumerate()
        .map(|(i, (phase, at))| {
            let next = starts.get(i + 1).map(|(_, at)| *at).or(end);
            PhaseSpan {
                phase: phase.as_str().to_owned(),
                at_ms: *at,
                duration_ms: next.map(|n| n - at),
            }
        })
        .collect();
    Ok(Some(RunDetail { record: fields.0.into_iter().collect(), timeline }))
}

/// How one transcript line reads in the guide's output (its `print(block.text, end="")` and
/// `print(f"\n→ {event.name}")`); `None` for lines the guide does not print. A pure text view,
/// shared by `agentcron transcript` and the demo so that both read exactly like the guide.
pub fn render_line(line: &Value) -> Option<String> {
    match line["type"].as_str()? {
        "agent.message" => {
            let blocks = line["data"]["content"].as_array()?;
            Some(
                blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect(),
            )
        }
        "agent.mcp_tool_use" | "agent.tool_use" => {
            Some(format!("\n→ {}\n", line["data"]["name"].as_str()?))
        }
        _ => None,
    }
}
