//! Notices as listed by `agentcron notices` and `/api/notices`: open ones from the index, or
//! every one by scanning their keys. Reads only.

use std::collections::BTreeMap;

use crate::config::RedisConn;
use redis::AsyncCommands;
use serde::Serialize;

use crate::ids::UserId;
use crate::keys::Keys;
use crate::records::{RecordsError, notice};

/// A notice, as listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notice {
    /// The user.
    pub user: UserId,
    /// The connection.
    pub connection: String,
    /// Every field of the notice hash (in JSON with their types: `report::typed`).
    #[serde(serialize_with = "super::typed::serialize")]
    pub fields: BTreeMap<String, String>,
}

/// Open notices, oldest first; with `all`, resolved ones too.
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn notices(
    conn: &mut RedisConn,
    keys: &Keys,
    all: bool,
) -> Result<Vec<Notice>, RecordsError> {
    // The users were validated when their notices were opened.
    let pairs: Vec<(UserId, String)> = if all {
        let pattern = keys.notice_pattern();
        let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(pattern).await?;
        let mut found = Vec::new();
        while let Some(key) = futures::StreamExt::next(&mut iter).await {
            found.push(key?);
        }
        drop(iter);
        let prefix = keys.notice_prefix();
        found
            .iter()
            .filter_map(|key| key.strip_prefix(prefix.as_str()))
            .filter_map(notice::split_member)
            .map(|(u, c)| (UserId::trusted(u), c.to_owned()))
            .collect()
    } else {
        let members: Vec<String> =
            redis::cmd("ZRANGE").arg(keys.notice_index()).arg(0).arg(-1).query_async(conn).await?;
        members
            .iter()
            .filter_map(|m| notice::split_member(m))
            .map(|(u, c)| (UserId::trusted(u), c.to_owned()))
            .collect()
    };
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (user, connection) in &pairs {
        pipe.cmd("HGETALL").arg(keys.notice(user, connection));
    }
    let hashes: Vec<BTreeMap<String, String>> = pipe.query_async(conn).await?;
    let mut out: Vec<Notice> = pairs
        .into_iter()
        .zip(hashes)
        .filter(|(_, fields)| !fields.is_empty())
        .map(|((user, connection), fields)| Notice { user, connection, fields })
        .collect();
    out.sort_by_key(|n| {
        n.fields.get("first_seen_ms").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
    });
    Ok(out)
}
