//! Records in Redis: run records, transcripts (also as JSONL files), notices and the per-user
//! vault map, all under the configured prefix, readable with `redis-cli`.
//!
//! Run record (`HGETALL <prefix>:run:<id>`): `run_id`, `user`, `schedule`, `prompt` (with
//! `timezone`, `local_time`, `rendered` for a scheduled run), `state`,
//! `phase`, `attempts`, `session_id`, `message_sent_at_ms`, `<phase>_at_ms` for each phase
//! reached, `last_error`, `error_class`, `worker`, `fence` (one more at every start), the
//! queue's timestamps, and once a turn has ended its result and usage (`result_text`,
//! `stop_reason`, `tool_calls`, `model`, `tokens_*`, `cost_usd`; the counters in `tally.rs`),
//! and with traces on the last attempt's `trace_id`. The queue writes `state` and `fence`; the pipeline writes phases and ids,
//! only while its attempt's fence is current. User map (`<prefix>:user:<user>`): `vault_id`,
//! `credential_id`, `vault_requested_at_ms`. Secrets are never stored.
//!
//! This module owns the layout. It must not decide run outcomes.

pub mod lifecycle;
pub mod notice;
pub mod prune;
pub mod tally;
pub mod transcript;
pub mod usage;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::config::RedisConn;

use crate::ids::{RunId, UserId};
use crate::keys::Keys;
use crate::transient;

/// The run pipeline's phases, in order. Names are the `phase` field of the run record and
/// metric labels; `<phase>_at_ms` is when the phase was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Listing the user's connected accounts.
    Checking,
    /// Minting the user-scoped session token.
    Minting,
    /// Putting the token in the user's vault.
    Vault,
    /// Creating (or finding) the session.
    Session,
    /// Sending the one `user.message`.
    Message,
    /// Following the event stream to the end of the turn.
    Streaming,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Self; 6] =
        [Self::Checking, Self::Minting, Self::Vault, Self::Session, Self::Message, Self::Streaming];

    /// The record and label name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checking => "checking",
            Self::Minting => "minting",
            Self::Vault => "vault",
            Self::Session => "session",
            Self::Message => "message",
            Self::Streaming => "streaming",
        }
    }

    /// The record field holding when the phase was entered: `<phase>_at_ms`.
    pub fn at_field(self) -> &'static str {
        match self {
            Self::Checking => "checking_at_ms",
            Self::Minting => "minting_at_ms",
            Self::Vault => "vault_at_ms",
            Self::Session => "session_at_ms",
            Self::Message => "message_at_ms",
            Self::Streaming => "streaming_at_ms",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A transcript file could not be written.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// A record could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(String),
}

impl RecordsError {
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), message: error.to_string() }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The fields of a record hash, as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub HashMap<String, String>);

impl Fields {
    /// One field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str).filter(|value| !value.is_empty())
    }
}

/// Reads a run record; `None` when it does not exist.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn load_run(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
) -> Result<Option<Fields>, RecordsError> {
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.run(run_id)).query_async(conn).await?;
    Ok((!fields.is_empty()).then_some(Fields(fields)))
}

/// Sets fields of a run record; with `fence`, only while the record's `fence` is that value
/// (returns false, writing nothing, when a later attempt of the run started since).
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn set_run(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
    fence: Option<u64>,
    fields: &[(&str, String)],
) -> Result<bool, RecordsError> {
    // Both writes are idempotent, so passing trouble (a dropped connection) is retried.
    let Some(fence) = fence else {
        let mut hset = redis::cmd("HSET");
        hset.arg(keys.run(run_id)).arg(fields);
        transient::retry(|| {
            let (hset, mut conn) = (hset.clone(), conn.clone());
            async move { hset.query_async::<()>(&mut conn).await }
        })
        .await?;
        return Ok(true);
    };
    let key = keys.run(run_id);
    let written: i64 = transient::retry(|| {
        let mut conn = conn.clone();
        let mut invocation = SET_FENCED.key(&key);
        invocation.arg(fence).arg(fields);
        async move { invocation.invoke_async(&mut conn).await }
    })
    .await?;
    Ok(written == 1)
}

/// `HSET` of ARGV[2..] into the record KEYS[1] only while its `fence` is ARGV[1].
static SET_FENCED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 0 end \
         redis.call('HSET', KEYS[1], unpack(ARGV, 2)) return 1",
    )
});

/// Removes fields of a run record and sets others, in one step; with `fence`, only while the
/// record's `fence` is that value (as [`set_run`]).
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn replace_run_fields(
    conn: &mut RedisConn,
    keys: &Keys,
    run_id: &RunId,
    fence: Option<u64>,
    (remove, set): (&[&str], &[(&str, String)]),
) -> Result<bool, RecordsError> {
    let key = keys.run(run_id);
    let Some(fence) = fence else {
        redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(&key)
            .arg(remove)
            .ignore()
            .cmd("HSET")
            .arg(&key)
            .arg(set)
            .ignore()
            .query_async::<()>(conn)
            .await?;
        return Ok(true);
    };
    let written: i64 = REPLACE_FENCED
        .key(key)
        .arg(fence)
        .arg(remove.len())
        .arg(remove)
        .arg(set)
        .invoke_async(conn)
        .await?;
    Ok(written == 1)
}

/// `HDEL` of the ARGV[2] fields after it, then `HSET` of the pairs after those, into the record
/// KEYS[1], only while its `fence` is ARGV[1].
static REPLACE_FENCED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 0 end \
         local n = tonumber(ARGV[2]) \
         if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 3, 2 + n)) end \
         if #ARGV > 2 + n then redis.call('HSET', KEYS[1], unpack(ARGV, 3 + n)) end \
         return 1",
    )
});

/// The user's vault map.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn load_user(
    conn: &mut RedisConn,
    keys: &Keys,
    user: &UserId,
) -> Result<Fields, RecordsError> {
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.user(user)).query_async(conn).await?;
    Ok(Fields(fields))
}

/// Sets fields of the user's vault map.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn set_user(
    conn: &mut RedisConn,
    keys: &Keys,
    user: &UserId,
    fields: &[(&str, String)],
) -> Result<(), RecordsError> {
    redis::cmd("HSET").arg(keys.user(user)).arg(fields).query_async::<()>(conn).await?;
    Ok(())
}
