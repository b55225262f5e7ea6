//! Transcripts: every session event of a run as one JSON line `{ts, run_id, user, session_id,
//! event_id, type, data}`, appended to the Redis stream `<prefix>:transcript:<run_id>` (capped
//! and expiring) and to `<transcripts_dir>/<YYYY-MM-DD>/<user>/<run_id>.jsonl`.
//!
//! File and directory names are derived from user and run ids by an injective encoding, so no
//! id can escape the directory or collide with another. Lines are redacted before they are
//! written. The file is a copy: a file that cannot be written (a full disk) never fails the
//! run; the attempt stops writing it, and at its end the file is rebuilt whole from the Redis
//! stream (`repair.rs`), or, while the disk is still full, noted for the worker's retention loop
//! to rebuild later. This module must not interpret events.

mod readback;
mod repair;

pub use self::readback::lines;
use self::readback::{raw_lines, recorded_ids};
pub use self::repair::repair_pending;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::RedisConn;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::RecordsError;
use crate::config::TranscriptsConfig;
use crate::ids::{RunId, SessionId, UserId};
use crate::keys::Keys;
use crate::telemetry::Redactor;

/// Longest file or directory name written; longer ids are shortened and given a hash suffix.
const MAX_NAME: usize = 200;

/// One run's transcript, open for appending. Each event is written to Redis and to the file,
/// side by side and behind the run: the write overlaps the wait for the next event, and the
/// next write starts only after it ended, so the order holds. [`Transcript::settle`] waits for
/// it (before a run acts on an event); [`Transcript::close`] waits for it and fsyncs the file.
#[derive(Debug)]
pub struct Transcript {
    key: String,
    run_id: RunId,
    user: UserId,
    maxlen: usize,
    ttl_secs: i64,
    path: PathBuf,
    /// Whether this attempt appended to the JSONL copy (which `close` then fsyncs).
    written: bool,
    redactor: Redactor,
    /// Event ids already recorded, so a resumed stream never records one twice. Kept only
    /// once a stream is resumed: a first stream never repeats an event, and otherwise every
    /// session would hold a set growing with each event (60 KB at 1,000 events).
    seen: Option<HashSet<String>>,
    /// Whether this attempt has set the stream's lifetime.
    expiry_set: bool,
    /// The last event's write, while it may still be running; `Ok(false)` when the file
    /// write failed.
    writing: Option<tokio::task::JoinHandle<Result<bool, RecordsError>>>,
    /// Whether the file is whole so far; once a write failed, it is rebuilt at the end instead.
    file_ok: bool,
    /// Where files to rebuild later are noted (`<prefix>:transcripts:repair`).
    repairs: String,
    /// Bytes of lines this attempt recorded, and the most it may.
    bytes: usize,
    max_bytes: usize,
}

impl Transcript {
    /// Opens the transcript of `run_id`. With `resuming` (an earlier attempt may have
    /// recorded events), the ids already recorded in Redis are loaded; a first stream of a run
    /// has none, and skips that read (see [`Transcript::seen`]).
    ///
    /// # Errors
    /// [`RecordsError`] when Redis or the file system fails.
    pub async fn open(
        conn: &mut RedisConn,
        keys: &Keys,
        config: &TranscriptsConfig,
        redactor: Redactor,
        (run_id, user, started): (&RunId, &UserId, DateTime<Utc>),
        resuming: bool,
    ) -> Result<Self, RecordsError> {
        let key = keys.transcript(run_id);
        let path = file_path(&config.dir, started, user.as_str(), run_id.as_str());
        // Created now so that a permission problem shows before the stream starts; not kept
        // open: with 10,000 sessions streaming, an open file each (beside each one's socket)
        // ran a worker out of file descriptors.
        let owned = path.clone();
        let created = blocking(&path, move || {
            if let Some(dir) = owned.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new().create(true).append(true).open(owned).map(drop)
        })
        .await;
        let file_ok = file_written(created);
        let seen = if resuming { Some(recorded_ids(conn, &key).await?) } else { None };
        let ttl_secs = i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            key,
            run_id: run_id.clone(),
            user: user.clone(),
            maxlen: config.redis_maxlen,
            ttl_secs,
            path,
            written: false,
            redactor,
            seen,
            expiry_set: false,
            writing: None,
            file_ok,
            repairs: keys.transcript_repairs(),
            bytes: 0,
            max_bytes: config.max_run_mb.saturating_mul(1024 * 1024),
        })
    }

    /// The ids recorded so far; the first call of an attempt that did not open `resuming`
    /// settles the writes and reads them back from Redis, and from then on they are kept.
    ///
    /// # Errors
    /// [`RecordsError`] when the last write or the read failed.
    pub async fn seen(&mut self, conn: &mut RedisConn) -> Result<&HashSet<String>, RecordsError> {
        let seen = match self.seen.take() {
            Some(seen) => seen,
            None => {
                self.settle().await?;
                recorded_ids(conn, &self.key).await?
            }
        };
        Ok(self.seen.insert(seen))
    }

    /// Where the JSONL copy is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one event unless its id was recorded before. Returns whether it was new. The
    /// write runs behind the caller; see [`Transcript::settle`].
    ///
    /// # Errors
    /// [`RecordsError`] when the previous event's write failed.
    pub async fn append(
        &mut self,
        conn: &mut RedisConn,
        session_id: &SessionId,
        event: &Value,
    ) -> Result<bool, RecordsError> {
        let event_id = event.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(seen) = &mut self.seen
            && !event_id.is_empty()
            && !seen.insert(event_id.clone())
        {
            return Ok(false);
        }
        let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
        let envelope = |data: &Value| {
            json!({
                "ts": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "run_id": self.run_id,
                "user": self.user,
                "session_id": session_id,
                "event_id": event_id,
                "type": kind,
                "data": data,
            })
            .to_string()
        };
        let mut line = self.redactor.redact(&envelope(event)).into_owned();
        if self.bytes.saturating_add(line.len()) > self.max_bytes {
            // Over the cap: the event is recorded by its size, so the transcript still shows
            // every event in order and what was left out.
            let marker = json!({"type": kind, "id": event_id,
                "agentcron_truncated": {"bytes": line.len(), "reason": "transcripts.max_run_mb"}});
            line = self.redactor.redact(&envelope(&marker)).into_owned();
        }
        self.bytes = self.bytes.saturating_add(line.len());
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.maxlen)
            .arg("*")
            .arg("event_id")
            .arg(&event_id)
            .arg("line")
            .arg(&line)
            .ignore();
        // The lifetime is set once per attempt, with its first event, not once per event: the
        // TTL then counts from the start of the attempt, and a run saves a command per event.
        if !self.expiry_set {
            pipe.cmd("EXPIRE").arg(&self.key).arg(self.ttl_secs).ignore();
        }
        self.settle().await?;
        let (conn, path, to_file) = (conn.clone(), self.path.clone(), self.file_ok);
        self.writing = Some(tokio::spawn(async move {
            let bytes = format!("{line}\n").into_bytes();
            let file = async { if to_file { append_line(&path, bytes).await } else { Ok(()) } };
            // Retried through passing trouble; a reply lost after Redis acted can repeat the
            // event in the stream, which readers skip by its id.
            let write = crate::transient::retry(|| {
                let (pipe, mut conn) = (pipe.clone(), conn.clone());
                async move { pipe.query_async::<()>(&mut conn).await }
            });
            let (redis, file) = tokio::join!(write, file);
            redis?;
            Ok(to_file && file_written(file))
        }));
        self.expiry_set = true;
        self.written = true;
        Ok(true)
    }

    /// Waits until every event appended so far is recorded in Redis and in the file.
    ///
    /// # Errors
    /// [`RecordsError`] when the last write failed.
    pub async fn settle(&mut self) -> Result<(), RecordsError> {
        let Some(writing) = self.writing.take() else { return Ok(()) };
        let joined = writing.await;
        let file_ok =
            joined.unwrap_or_else(|join| Err(RecordsError::io(&self.path, &join.into())))?;
        self.file_ok &= file_ok;
        Ok(())
    }

    /// Settles the writes, sets the stream's lifetime again, then fsyncs the JSONL copy when
    /// this attempt wrote to it. The lifetime is set at the first event and again here: a stream
    /// that Redis lost mid-turn (a restart without persistence) is re-created by the next event
    /// without one, and must not stay forever. The fsync runs on its own, off the run's path
    /// (it is the slowest part of a short run's own time and the Redis copy is already
    /// complete); a failure is logged.
    ///
    /// # Errors
    /// [`RecordsError`] when the last write failed or Redis failed.
    pub async fn close(&mut self, conn: &mut RedisConn) -> Result<(), RecordsError> {
        self.settle().await?;
        if !std::mem::take(&mut self.written) {
            return Ok(());
        }
        redis::cmd("EXPIRE").arg(&self.key).arg(self.ttl_secs).query_async::<()>(conn).await?;
        if !self.file_ok {
            repair::rebuild_or_note(conn, (&self.key, &self.repairs), &self.run_id, &self.path)
                .await?;
            return Ok(());
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let synced = std::fs::OpenOptions::new().append(true).open(&path)?.sync_all();
            if let Err(error) = &synced {
                tracing::warn!(message = "Could not fsync a transcript file.", path = %path.display(), %error);
            }
            synced
        });
        Ok(())
    }
}

/// Appends `bytes` to the file at `path`, creating it: one open, write and close on the
/// blocking pool, so no descriptor is held between events.
async fn append_line(path: &Path, bytes: Vec<u8>) -> Result<(), RecordsError> {
    let owned = path.to_owned();
    blocking(path, move || {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(owned)?;
        std::io::Write::write_all(&mut file, &bytes)
    })
    .await
}

/// Whether a file write went through; a failure is counted and logged, never the run's.
fn file_written(result: Result<(), RecordsError>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            crate::telemetry::metrics::transcript_file_failed();
            tracing::warn!(message = "A transcript file write failed; the file will be rebuilt from Redis.", %error);
            false
        }
    }
}

/// Runs file I/O on the blocking pool; errors name `path`.
async fn blocking(
    path: &Path,
    io: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), RecordsError> {
    let res = tokio::task::spawn_blocking(io).await.unwrap_or_else(|join| Err(join.into()));
    res.map_err(|e| RecordsError::io(path, &e))
}

/// `<dir>/<YYYY-MM-DD>/<user>/<run_id>.jsonl`, with both ids made safe by [`safe_name`].
pub fn file_path(dir: &Path, started: DateTime<Utc>, user: &str, run_id: &str) -> PathBuf {
    let day = started.format("%Y-%m-%d").to_string();
    dir.join(day).join(safe_name(user)).join(format!("{}.jsonl", safe_name(run_id)))
}

/// A file name for any id: bytes outside `A-Z a-z 0-9 - _ @ .` are percent-encoded (so `/`,
/// NUL and `..` cannot escape, and distinct ids never share a name); a leading dot is encoded
/// too; names over 200 bytes keep a prefix and gain a hash of the whole id.
pub fn safe_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for (i, byte) in id.bytes().enumerate() {
        let plain = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'@')
            || (byte == b'.' && i > 0);
        if plain {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    if name.is_empty() {
        return "%".to_owned();
    }
    if name.len() <= MAX_NAME {
        return name;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let hash: String = digest.as_ref()[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    let mut cut = MAX_NAME - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        let check = |id: &str, expect: &str| assert_eq!(safe_name(id), expect, "{id:?}");
        check("alice@example.com", "alice@example.com");
        check("../etc/passwd", "%2E.%2Fetc%2Fpasswd");
        check("a/b", "a%2Fb");
        check("nul\0", "nul%00");
        check(".", "%2E");
        check("..", "%2E.");
        check("", "%");
        check("100%", "100%25");
        check("ü", "%C3%BC");
        check("sched:user:123", "sched%3Auser%3A123");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = "x".repeat(300);
        let b = format!("{}y", "x".repeat(299));
        assert!(safe_name(&a).len() <= MAX_NAME);
        assert_ne!(safe_name(&a), safe_name(&b));
    }

    #[test]
    fn paths_stay_inside_the_directory() {
        let dir = Path::new("/data/transcripts");
        let started =
            DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z").unwrap().with_timezone(&Utc);
        for user in ["../../etc", "/abs", "a/../../b", "..", "\0"] {
            let path = file_path(dir, started, user, "run/../x");
            assert!(path.starts_with(dir.join("2026-11-26")), "{path:?}");
            assert_eq!(path.components().count(), dir.components().count() + 3, "{path:?}");
        }
    }
}
