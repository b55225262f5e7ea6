//! A Sentinel group of a test's own: a primary, a replica and three `redis-server --sentinel`
//! processes watching them as `mymaster` (down after 1 s, so a failover is quick), all on spare
//! ports and killed at the end.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::poll::poll_until;
use super::private_redis::PrivateRedis;

pub const MASTER: &str = "mymaster";
/// The sentinels' own password (`requirepass` in each sentinel's configuration).
pub const PASSWORD: &str = "s3ntinel-pass-41c8";

pub struct SentinelGroup {
    pub primary: PrivateRedis,
    pub replica: PrivateRedis,
    sentinels: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl SentinelGroup {
    pub async fn start() -> Self {
        let primary = PrivateRedis::start(false).await;
        let replica = PrivateRedis::start_replica_of(&primary).await;
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = spare_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 5000\n\
                 requirepass {PASSWORD}\n",
                dir.path().display(),
                primary.port()
            );
            std::fs::write(&conf, text).unwrap();
            let child = Command::new("/usr/bin/redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            sentinels.push((port, child));
        }
        let group = Self { primary, replica, sentinels, _dir: dir };
        poll_until("the sentinels know the replica", Duration::from_secs(30), || async {
            group.sentinels_see_replica().await
        })
        .await;
        group
    }

    /// `host:port,…` of the sentinels.
    pub fn nodes(&self) -> String {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn ask(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let (port, _) = &self.sentinels[0];
        let client = redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{port}"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL").arg(args).query_async(&mut conn).await
    }

    async fn sentinels_see_replica(&self) -> bool {
        let Ok(redis::Value::Array(replicas)) = self.ask(&["replicas", MASTER]).await else {
            return false;
        };
        let Ok(mut conn) = self.replica.conn().await else { return false };
        let info: String =
            redis::cmd("INFO").arg("replication").query_async(&mut conn).await.unwrap_or_default();
        !replicas.is_empty() && info.contains("master_link_status:up")
    }

    /// Connections the first sentinel has accepted so far (`INFO stats`), this call's included.
    pub async fn connections_received(&self) -> u64 {
        let (port, _) = &self.sentinels[0];
        let client = redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await.unwrap();
        let line = info.lines().find_map(|line| line.strip_prefix("total_connections_received:"));
        line.unwrap().trim().parse().unwrap()
    }

    /// `SENTINEL FAILOVER`: the replica becomes the master.
    pub async fn failover(&self) {
        self.ask(&["failover", MASTER]).await.unwrap();
    }

    /// Where the sentinels say the master is.
    pub async fn master_port(&self) -> u16 {
        let value = self.ask(&["get-master-addr-by-name", MASTER]).await.unwrap();
        let (_, port): (String, u16) = redis::from_redis_value(value).unwrap();
        port
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            // Best effort in a destructor.
            child.kill().ok();
            child.wait().ok();
        }
    }
}
