//! Each test's own Redis namespace: a unique key prefix on the shared server, deleted when the
//! test ends, so tests run in parallel under nextest without seeing each other's keys.

use redis::aio::MultiplexedConnection;

/// The Redis every test uses: `AGENTCRON_TEST_REDIS_URL`, else 127.0.0.1:6379. Never skipped:
/// `.ci/run` starts Redis when it is down.
pub fn redis_url() -> String {
    std::env::var("AGENTCRON_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A unique key prefix and a connection; every key under the prefix is deleted on drop.
pub struct TestRedis {
    /// The prefix to put in `[redis] prefix`, such as `agentcron-test-3f2a…`.
    pub prefix: String,
    /// The server URL.
    pub url: String,
    /// A connection for assertions.
    pub conn: MultiplexedConnection,
}

impl TestRedis {
    /// Connects and reserves a fresh prefix.
    pub async fn new() -> Self {
        let url = redis_url();
        let client = redis::Client::open(url.as_str()).expect("AGENTCRON_TEST_REDIS_URL parses");
        let conn = client.get_multiplexed_async_connection().await.unwrap_or_else(|error| {
            panic!("Redis at {url} must be running (bash .ci/run starts it): {error}")
        });
        let prefix = format!("agentcron-test-{}", uuid::Uuid::new_v4().simple());
        Self { prefix, url, conn }
    }

    /// Every key under this test's prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.prefix);
        let mut iter: redis::AsyncIter<'_, String> =
            conn.scan_match(pattern).await.expect("SCAN works");
        let mut keys = Vec::new();
        while let Some(key) = futures::StreamExt::next(&mut iter).await {
            keys.push(key.expect("SCAN yields keys"));
        }
        keys
    }
}

impl Drop for TestRedis {
    // Drop cannot await, so cleanup uses a short blocking connection of its own.
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = match conn.scan_match(&pattern) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            // Best effort: a leftover key under a random prefix harms no other test.
            if redis::cmd("DEL").arg(chunk).query::<()>(&mut conn).is_err() {
                return;
            }
        }
    }
}

use redis::{AsyncCommands, Commands};
