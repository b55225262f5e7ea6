//! The job queue on Redis (our own apalis backend), the redis-cli intake list and the rejected
//! list, retries with delay, dead letters, and the fleet-wide rate limiter.
//!
//! Owns every queue key and the delivery guarantees. It must not execute runs or call the
//! remote APIs. apalis types stay in `queue/backend.rs` and `worker/`, so that apalis API churn
//! touches two places.
//!
//! # Design
//!
//! A run is identified by its run id; the queue carries only that id (the "payload" is
//! `{run_id}`), and the run record `<p>:run:<id>` holds everything else. Creating the record is
//! the dedupe point: `enqueue.lua` creates it and queues the id only if it did not exist.
//!
//! Lists, not a Stream: a worker takes ids from `<p>:q:ready` with `LMOVE` (in a batch script,
//! or `BLMOVE` when idle) into its own `<p>:q:processing:<worker>` list, so that a run is always
//! in exactly one list and a killed worker's runs are findable by key. One lease per worker
//! (`<p>:q:leases`, renewed by the heartbeat) covers all its runs, so the heartbeat cost does not
//! grow with the number of in-flight runs; a Stream consumer group would need one `XCLAIM` per
//! in-flight message per heartbeat to keep long (15 min) runs from looking idle, `XDEL`
//! bookkeeping to bound memory, and it still needs a ZSET for delays. Every step is O(1) in the
//! backlog: the only `LREM` is on the worker's own processing list, bounded by its concurrency.
//! Redis round trips per run: one fetch per batch (up to 100 runs), one finish per run.
//!
//! Retries and `not_before` wait in `<p>:q:delayed` (scored by due time, unix ms) and are
//! promoted in batches of at most [`PROMOTE_BATCH`]. A reaper hands the processing lists of
//! workers whose lease expired back to `<p>:q:ready`. Times in scripts come from the Redis clock.
//!
//! # The run record (`HGETALL <p>:run:<id>`)
//!
//! Times are unix milliseconds in fields named `*_at_ms`. The queue writes `run_id`, `user`,
//! `schedule`, `prompt`, `source`, `state=queued`, `attempts=0`, `created_at_ms` and
//! `not_before_ms`, and for a scheduled run `timezone`, `local_time` and `rendered=1` (its
//! prompt is final, see [`Instructions`]); the worker writes `state` (`running`, `failed`, `dead` and the terminal
//! outcome), `worker`, `attempts` (attempts started), `started_at_ms`, `last_error`,
//! `error_class`, `next_attempt_at_ms`, `ended_at_ms`; the sweep writes `abandoned_at_ms` on a
//! run it returns (its last attempt never ended; the next start takes the mark away and counts
//! as a takeover). The run pipeline writes `phase`, `session_id` and per-phase times.

mod actions;
mod backend;
mod enqueue;
mod eviction;
mod expiry;
mod finish;
mod health;
mod held;
pub(crate) mod intake;
mod jobs;
mod outbox;
mod ownership;
mod script;
mod shards;
mod wake;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RedisConn;
use redis::aio::ConnectionManagerConfig;

pub use self::actions::Action;
pub(crate) use self::backend::{Backend, FetchConfig, Slots};
pub use self::enqueue::{Enqueued, Instructions, NewRun};
pub use self::eviction::{SAFE_POLICY, read_policy};
pub(crate) use self::finish::{Ended, Finished, Refill};
pub(crate) use self::health::Backoff;
pub use self::health::{Health, SETTLE};
pub use self::intake::{IntakeItem, Rejection};
pub(crate) use self::jobs::Job;
pub use self::outbox::Outbox;
pub(crate) use self::ownership::{Lease, Owner};
use crate::config::RedisConfig;
use crate::keys::Keys;

/// Result of queue operations.
pub type Result<T = (), E = QueueError> = std::result::Result<T, E>;

/// Runs taken (and due retries promoted) per script call: bounds the work Redis does per call.
pub const PROMOTE_BATCH: usize = 500;
/// Entries kept in the capped lists `<p>:q:dead` and `<p>:rejected`.
pub const LIST_CAP: usize = 10_000;
/// Responses slower than this are errors. The redis crate's 500 ms default fails under load.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A script answered something the queue does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// No connection could be made; the text names the host and why.
    #[error("{0}")]
    Connect(String),
    /// The queue in Redis has another shard count than `redis.shards`.
    #[error(
        "redis.shards is {configured}, but the queue in Redis was created with {stored} shards: \
         set redis.shards = {stored} (a queue cannot be resharded in place)"
    )]
    Layout {
        /// The count in `<p>:q:layout`.
        stored: usize,
        /// The count in the configuration.
        configured: usize,
    },
}

/// The ACL rules a Redis user needs besides its key pattern `~<prefix>:*`: read and write data,
/// run scripts, `PING`, `TIME` (inside scripts) and `INFO` (the eviction check); never the
/// dangerous commands. (The client's `CLIENT SETINFO` on connect may be refused: it is ignored.)
pub const ACL_RULES: &str =
    "resetchannels -@all +@read +@write +@scripting -@dangerous +info +ping +time";

/// What a Redis Cluster user needs besides [`ACL_RULES`] (its key patterns are `~{<prefix>}:*`
/// for the control slot and `~{<prefix>:*}:*` for the shards):
/// the client learns the slot map (`CLUSTER SLOTS`), and `status` names the masters and the
/// deployment's slot.
pub const CLUSTER_ACL_RULES: &str = "+cluster|slots +cluster|nodes +cluster|keyslot";

impl QueueError {
    /// True when Redis refused the user permission (`NOPERM`): a configuration problem that
    /// retrying does not fix.
    pub fn is_permission(&self) -> bool {
        matches!(self, Self::Redis(error) if error.code() == Some("NOPERM"))
    }
}

/// A handle on the queue: a reconnecting, multiplexed connection and the key layout. Cheap to
/// clone; clones share the connection.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    keys: Keys,
    health: Arc<Health>,
}

impl fmt::Debug for Queue {
    // The client holds the URL, which may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("prefix", &self.keys.prefix()).finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to `config.url`, once.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when the URL is invalid or Redis cannot be reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_max_delay(Duration::from_secs(2));
        let conn = config.connect(manager_config).await.map_err(QueueError::Connect)?;
        let keys = config.keys();
        Ok(Self { conn, keys, health: Arc::new(Health::default()) })
    }

    /// A handle on an existing connection (the ops server's, which connects lazily so that it
    /// starts while Redis is down).
    #[must_use]
    pub fn with_connection(conn: RedisConn, keys: Keys) -> Self {
        Self { conn, keys, health: Arc::new(Health::default()) }
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The shared connection, for callers that read records directly.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// What this handle's calls have seen of Redis's health.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The same handle reporting to `health`, shared with other handles of one worker (its
    /// heartbeat thread's, its ops server's), so that an outage is logged once per process.
    #[must_use]
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// A separate connection for one blocking command at a time (`BLMOVE`): a blocked command
    /// would stall every request multiplexed behind it on the shared connection.
    pub(crate) async fn blocking_connection(&self, block: Duration) -> Result<RedisConn> {
        Ok(self.conn.dedicated(block + RESPONSE_TIMEOUT).await?)
    }
}

/// Unix milliseconds of `time`, saturating (for `not_before`).
pub(crate) fn unix_ms(time: std::time::SystemTime) -> i64 {
    let ms = time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Deletes every key under `keys`' prefix with `SCAN` and `UNLINK`, `chunk` at a time, and
/// returns how many. Only for a private prefix the caller made (the demo's, a benchmark's):
/// never run it on an operator's prefix.
///
/// # Errors
/// Redis failed; keys already unlinked stay unlinked.
pub async fn remove_all_keys(
    conn: &mut RedisConn,
    keys: &Keys,
    chunk: usize,
) -> std::result::Result<usize, redis::RedisError> {
    let mut n_deleted = 0;
    for mut node in conn.data_nodes().await? {
        for pattern in keys.all() {
            let mut cursor = 0_u64;
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(chunk)
                    .query_async(&mut node)
                    .await?;
                // One UNLINK per key: on a cluster a node's keys are in several slots.
                let mut pipe = redis::pipe();
                for key in &found {
                    pipe.unlink(key).ignore();
                }
                if !found.is_empty() {
                    pipe.query_async::<()>(&mut node).await?;
                }
                n_deleted += found.len();
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    Ok(n_deleted)
}
