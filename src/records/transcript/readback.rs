//! Reading a transcript back from its Redis stream: its lines for reports and for rebuilding
//! the file, and the event ids already recorded for a resumed stream. This module must not
//! write.

use std::collections::{HashMap, HashSet};

use crate::config::RedisConn;
use serde_json::Value;

use crate::ids::RunId;
use crate::keys::Keys;
use crate::records::RecordsError;

/// The lines of a transcript in Redis, oldest first.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn lines(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
) -> Result<Vec<Value>, RecordsError> {
    let lines = raw_lines(conn, &keys.transcript(run_id)).await?;
    Ok(lines.iter().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

/// The lines of the stream `key` as written, oldest first; an event written twice (a retried
/// write whose first reply was lost) once.
pub(super) async fn raw_lines(
    conn: &mut RedisConn,
    key: &str,
) -> Result<Vec<String>, RecordsError> {
    let entries: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(conn).await?;
    let mut seen = HashSet::new();
    Ok(entries
        .into_iter()
        .filter(|(_, fields)| {
            fields.get("event_id").is_none_or(|id| id.is_empty() || seen.insert(id.clone()))
        })
        .filter_map(|(_, mut fields)| fields.remove("line"))
        .collect())
}

/// The event ids recorded in the stream `key`.
pub(super) async fn recorded_ids(
    conn: &mut RedisConn,
    key: &str,
) -> Result<HashSet<String>, RecordsError> {
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(conn).await?;
    Ok(entries
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter(|(name, value)| name == "event_id" && !value.is_empty())
        .map(|(_, value)| value)
        .collect())
}
