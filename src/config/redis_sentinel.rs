//! Finding the master through Sentinel: ask the sentinels in turn (over connections kept open
//! in [`Sentinels`]) where the master is, and check with `ROLE` that a node they name is one
//! before moving to it. Used by `redis_conn` when it connects and when it follows a failover.
//!
//! This module must not retry: the connection asks again at its next error or heartbeat.

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::RedisConfig;

/// Open connections to sentinels, by `host:port`; one that fails is dropped and made again.
pub(super) type Sentinels =
    tokio::sync::Mutex<std::collections::HashMap<String, MultiplexedConnection>>;

/// How long one sentinel or one node may take to answer.
const SENTINEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl RedisConfig {
    /// Asks each sentinel in turn where the master is, and checks that it says so itself
    /// unless it is `known`, the master in use (answering since the last failover it followed).
    pub(super) async fn master_addr(
        &self,
        sentinels: &Sentinels,
        known: Option<&str>,
    ) -> Result<String, String> {
        let Some(sentinel) = &self.sentinel else { return Ok(self.host()) };
        let mut last = String::from("no sentinel configured");
        for node in &sentinel.nodes {
            let asked = self.ask_sentinel(sentinels, node, &sentinel.master);
            match tokio::time::timeout(SENTINEL_TIMEOUT, asked).await {
                Ok(Ok(addr)) if known == Some(addr.as_str()) => return Ok(addr),
                Ok(Ok(addr)) if self.is_master(&addr).await => return Ok(addr),
                Ok(Ok(addr)) => {
                    last = format!("{addr}, named by sentinel {node}, is not a master yet")
                }
                Ok(Err(error)) => {
                    sentinels.lock().await.remove(node);
                    last = format!("sentinel {node}: {error}");
                }
                Err(_) => {
                    sentinels.lock().await.remove(node);
                    last = format!("sentinel {node}: no answer");
                }
            }
        }
        Err(format!("cannot find the master `{}`: {last}", sentinel.master))
    }

    /// `SENTINEL get-master-addr-by-name` on `node`, over its kept connection.
    async fn ask_sentinel(
        &self,
        sentinels: &Sentinels,
        node: &str,
        master: &str,
    ) -> redis::RedisResult<String> {
        let kept = sentinels.lock().await.get(node).cloned();
        let mut conn = match kept {
            Some(conn) => conn,
            None => {
                let client = self.sentinel_client(node).map_err(|error| match error {
                    super::RedisClientError::Redis { error, .. } => error,
                    other => redis::RedisError::from(std::io::Error::other(other.to_string())),
                })?;
                let conn = client.get_multiplexed_async_connection().await?;
                sentinels.lock().await.insert(node.to_owned(), conn.clone());
                conn
            }
        };
        let (host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn)
            .await?;
        Ok(format!("{host}:{port}"))
    }

    /// Whether the node at `addr` says it is a master (`ROLE`).
    async fn is_master(&self, addr: &str) -> bool {
        let asked = async {
            let client = self.client_at(addr).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await.ok()?;
            let first: String = redis::from_redis_value(role.into_iter().next()?).ok()?;
            Some(first == "master")
        };
        tokio::time::timeout(SENTINEL_TIMEOUT, asked).await.ok().flatten().unwrap_or(false)
    }
}
