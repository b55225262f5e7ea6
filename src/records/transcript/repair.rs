//! Rebuilding a transcript file from its Redis stream, whole: the lines go to a temporary file
//! beside it, which then replaces it (a rename), so a reader never sees a partial line and a
//! failed rebuild leaves the old file as it was. A file that cannot be rebuilt yet (the disk
//! still full) is noted in `<prefix>:transcripts:repair`, and the worker's retention loop tries
//! again; a note whose stream has expired is dropped (nothing is left to rebuild from).

use std::path::{Path, PathBuf};

use crate::config::RedisConn;

use crate::ids::RunId;
use crate::keys::Keys;
use crate::records::RecordsError;

/// Rebuilds the file at `path` from the stream `key`; when that fails, notes it in `repairs`.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub(super) async fn rebuild_or_note(
    conn: &mut RedisConn,
    (key, repairs): (&str, &str),
    run_id: &RunId,
    path: &Path,
) -> Result<(), RecordsError> {
    if rebuild(conn, key, path).await? {
        tracing::info!(message = "Rebuilt a transcript file from Redis.", run_id = %run_id);
        return Ok(());
    }
    let path = path.to_string_lossy().into_owned();
    redis::cmd("HSET").arg(repairs).arg(run_id).arg(path).query_async::<()>(conn).await?;
    Ok(())
}

/// Tries up to `budget` noted rebuilds. Returns how many were rebuilt and how many are left.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn repair_pending(
    conn: &mut RedisConn,
    keys: &Keys,
    budget: usize,
) -> Result<(usize, usize), RecordsError> {
    let repairs = keys.transcript_repairs();
    let (_, pending): (u64, Vec<(String, String)>) =
        redis::cmd("HSCAN").arg(&repairs).arg(0).arg("COUNT").arg(budget).query_async(conn).await?;
    let mut rebuilt = 0;
    for (run_id, path) in pending.into_iter().take(budget) {
        let key = keys.transcript(&RunId::trusted(run_id.as_str()));
        let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(conn).await?;
        let done = !exists || rebuild(conn, &key, &PathBuf::from(path)).await?;
        if done {
            redis::cmd("HDEL").arg(&repairs).arg(&run_id).query_async::<()>(conn).await?;
            rebuilt += usize::from(exists);
        }
    }
    let left: usize = redis::cmd("HLEN").arg(&repairs).query_async(conn).await?;
    Ok((rebuilt, left))
}

/// Writes every line of the stream `key` to `path`, whole or not at all. Returns whether it
/// was written.
async fn rebuild(conn: &mut RedisConn, key: &str, path: &Path) -> Result<bool, RecordsError> {
    let mut text = String::new();
    for line in super::raw_lines(conn, key).await? {
        text.push_str(&line);
        text.push('\n');
    }
    let path = path.to_owned();
    let written = tokio::task::spawn_blocking(move || write_whole(&path, text.as_bytes())).await;
    match written {
        Ok(Ok(())) => Ok(true),
        Ok(Err(error)) => {
            tracing::warn!(message = "Could not rebuild a transcript file yet; will try again.", %error);
            Ok(false)
        }
        Err(_) => Ok(false),
    }
}

/// `bytes` into `path` by way of a temporary file and a rename.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("jsonl.rebuild");
    let written = std::fs::write(&temporary, bytes).and_then(|()| {
        std::fs::OpenOptions::new().write(true).open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, path)
    });
    if written.is_err() {
        // Whatever part of it was written only takes space the disk needs.
        std::fs::remove_file(&temporary).ok();
    }
    written
}
