//! Notices: a user's connection that needs re-authorisation, opened or refreshed when a run
//! finds it inactive and resolved when a later run finds it active. Each change is also an
//! event on the `<prefix>:notices` stream for follow-up consumers, and optionally a signed
//! webhook POST.
//!
//! Layout: hash `<prefix>:notice:<user>:<connection>` (`user`, `connection`, `status` open or
//! resolved, `connection_status`, `auth_link`, `first_seen_ms`, `last_seen_ms`, `count`,
//! `resolved_at_ms`) and the sorted set `<prefix>:notices:open` of open notice keys by last
//! seen. This module must not decide when a connection is inactive.

use crate::config::RedisConn;
use serde::Serialize;

use super::{RecordsError, now_ms};
use crate::ids::{RunId, UserId};
use crate::keys::Keys;

/// Entries kept on the notices stream.
const STREAM_MAXLEN: usize = 100_000;

/// One notice event, as put on the stream and sent to the webhook.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NoticeEvent {
    /// `opened`, `refreshed` or `resolved`.
    pub event: &'static str,
    /// The user.
    pub user: UserId,
    /// The connection, such as `googlecalendar`.
    pub connection: String,
    /// The account status seen (`EXPIRED`, `none` when there is no account, `ACTIVE` when
    /// resolved).
    pub connection_status: String,
    /// Where the user re-authorises; empty when resolved.
    pub auth_link: String,
    /// How many runs have seen it inactive.
    pub count: u64,
    /// The run that saw it.
    pub run_id: RunId,
    /// When, in unix milliseconds.
    pub at_ms: i64,
}

/// Opens the notice for (user, connection), or refreshes it if open. Returns the event.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn open(
    conn: &mut RedisConn,
    keys: &Keys,
    (user, connection, status, link): (&UserId, &str, &str, &str),
    run_id: &RunId,
) -> Result<NoticeEvent, RecordsError> {
    let key = keys.notice(user, connection);
    let now = now_ms();
    let (was_open, count): (Option<String>, u64) = redis::pipe()
        .atomic()
        .cmd("HGET")
        .arg(&key)
        .arg("status")
        .cmd("HINCRBY")
        .arg(&key)
        .arg("count")
        .arg(1)
        .cmd("HSET")
        .arg(&key)
        .arg("user")
        .arg(user)
        .arg("connection")
        .arg(connection)
        .arg("status")
        .arg("open")
        .arg("connection_status")
        .arg(status)
        .arg("auth_link")
        .arg(link)
        .arg("last_seen_ms")
        .arg(now)
        .arg("last_run_id")
        .arg(run_id)
        .ignore()
        .cmd("HSETNX")
        .arg(&key)
        .arg("first_seen_ms")
        .arg(now)
        .ignore()
        .cmd("HDEL")
        .arg(&key)
        .arg("resolved_at_ms")
        .ignore()
        // A notice resolved earlier had a lifetime; an open one is kept until resolved.
        .cmd("PERSIST")
        .arg(&key)
        .ignore()
        .cmd("ZADD")
        .arg(keys.notice_index())
        .arg("NX")
        .arg(now)
        .arg(member(user.as_str(), connection))
        .ignore()
        .query_async(conn)
        .await?;
    let event = if was_open.as_deref() == Some("open") { "refreshed" } else { "opened" };
    let notice = NoticeEvent {
        event,
        user: user.clone(),
        connection: connection.to_owned(),
        connection_status: status.to_owned(),
        auth_link: link.to_owned(),
        count,
        run_id: run_id.clone(),
        at_ms: now,
    };
    publish(conn, keys, &notice).await?;
    Ok(notice)
}

/// Resolves the notice for (user, connection) if one is open, keeping the resolved notice for
/// `keep` (the retention); a notice opened again meanwhile is kept until resolved. Returns the
/// event if it was open.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn resolve(
    conn: &mut RedisConn,
    keys: &Keys,
    (user, connection): (&UserId, &str),
    run_id: &RunId,
    keep: std::time::Duration,
) -> Result<Option<NoticeEvent>, RecordsError> {
    let key = keys.notice(user, connection);
    let now = now_ms();
    // Only an open notice is resolved; the script makes check-and-set atomic across workers.
    let script = redis::Script::new(
        r"if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return false end
          redis.call('HSET', KEYS[1], 'status', 'resolved', 'resolved_at_ms', ARGV[1], 'connection_status', 'ACTIVE', 'auth_link', '')
          redis.call('ZREM', KEYS[2], ARGV[2])
          redis.call('PEXPIRE', KEYS[1], ARGV[3])
          return redis.call('HGET', KEYS[1], 'count')",
    );
    let count: Option<u64> = script
        .key(&key)
        .key(keys.notice_index())
        .arg(now)
        .arg(member(user.as_str(), connection))
        .arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX))
        .invoke_async(conn)
        .await?;
    let Some(count) = count else { return Ok(None) };
    let notice = NoticeEvent {
        event: "resolved",
        user: user.clone(),
        connection: connection.to_owned(),
        connection_status: "ACTIVE".to_owned(),
        auth_link: String::new(),
        count,
        run_id: run_id.clone(),
        at_ms: now,
    };
    publish(conn, keys, &notice).await?;
    Ok(Some(notice))
}

/// Which of `user`'s `connections` have an open notice, in one command (`ZMSCORE` on the
/// open-notice index): a run of a user with no open notice then costs no resolve call.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn open_among(
    conn: &mut RedisConn,
    keys: &Keys,
    user: &UserId,
    connections: &[&str],
) -> Result<Vec<bool>, RecordsError> {
    if connections.is_empty() {
        return Ok(Vec::new());
    }
    let members: Vec<String> = connections.iter().map(|c| member(user.as_str(), c)).collect();
    let scores: Vec<Option<f64>> =
        redis::cmd("ZMSCORE").arg(keys.notice_index()).arg(&members).query_async(conn).await?;
    Ok(scores.iter().map(Option::is_some).collect())
}

/// The member of the open-notice index for (user, connection).
pub fn member(user: &str, connection: &str) -> String {
    Keys::notice_member(user, connection)
}

/// Splits an index member back into (user, connection).
pub fn split_member(member: &str) -> Option<(&str, &str)> {
    member.rsplit_once(':')
}

async fn publish(
    conn: &mut RedisConn,
    keys: &Keys,
    notice: &NoticeEvent,
) -> Result<(), RecordsError> {
    let json = serde_json::to_string(notice).map_err(|e| RecordsError::Encode(e.to_string()))?;
    redis::cmd("XADD")
        .arg(keys.notices())
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_MAXLEN)
        .arg("*")
        .arg("event")
        .arg(notice.event)
        .arg("user")
        .arg(&notice.user)
        .arg("connection")
        .arg(&notice.connection)
        .arg("json")
        .arg(json)
        .query_async::<()>(conn)
        .await?;
    Ok(())
}
