//! The demo's Redis: the one the user already runs (`$REDIS_URL`, else 127.0.0.1:6379) when it
//! answers a PING, else a private `redis-server` child on a free loopback port, with no
//! persistence, in a temporary directory that goes away with it.
//!
//! Owns the child's whole life: it is killed when the demo stops, on error paths too (the guard's
//! `Drop`). It must not touch a Redis it did not start beyond the PING.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::DemoError;

/// The Redis tried first when `$REDIS_URL` is unset.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// How long a PING may take before the Redis counts as absent.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a private `redis-server` gets to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child started by the demo. Dropping it kills the child and removes its
/// directory; [`PrivateRedis::stop`] also waits for the child to exit.
#[derive(Debug)]
pub struct PrivateRedis {
    /// The child; `kill_on_drop`, so even a panic does not leave it running.
    child: Child,
    /// Its working directory (log, and nothing else: persistence is off).
    dir: PathBuf,
    url: String,
}

impl PrivateRedis {
    /// Starts `redis-server` from `PATH` on a free port and waits until it answers.
    ///
    /// # Errors
    /// [`DemoError::RedisServerMissing`] when `redis-server` is not on `PATH`;
    /// [`DemoError::RedisServer`] when it cannot be started or does not answer in time.
    pub async fn start() -> Result<Self, DemoError> {
        let binary = find_on_path("redis-server").ok_or(DemoError::RedisServerMissing)?;
        let failed =
            |what: &str, error: std::io::Error| DemoError::RedisServer(format!("{what}: {error}"));
        let port = free_port().map_err(|e| failed("finding a free port", e))?;
        let dir = std::env::temp_dir().join(format!("agentcron-demo-redis-{port}-{}", short_id()));
        std::fs::create_dir_all(&dir).map_err(|e| failed("creating its directory", e))?;
        let log = std::fs::File::create(dir.join("redis.log"))
            .map_err(|e| failed("creating its log file", e))?;
        let log_err = log.try_clone().map_err(|e| failed("opening its log file", e))?;
        let child = Command::new(&binary)
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(&format!("starting {}", binary.display()), e))?;
        let mut server = Self { child, dir, url: format!("redis://127.0.0.1:{port}") };
        server.wait_until_ready().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its directory (where `redis.log` is).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the child and waits for it; the directory goes with the guard.
    pub async fn stop(mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::debug!(message = "Private redis-server already stopped.", %error);
        }
    }

    async fn wait_until_ready(&mut self) -> Result<(), DemoError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if answers(&self.url).await {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                let why =
                    exited.map_or("did not answer in time".to_owned(), |s| format!("exited ({s})"));
                return Err(DemoError::RedisServer(format!("{why}; its log:\n{}", log.trim_end())));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // Already exited after `stop`: nothing to kill, which is fine.
        if let Err(error) = self.child.start_kill() {
            tracing::debug!(message = "Private redis-server already stopped.", %error);
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(message = "Could not remove the private Redis directory.", %error);
        }
    }
}

/// Whether a Redis at `url` answers PING within a second.
pub(super) async fn answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(PING_TIMEOUT))
        .set_response_timeout(Some(PING_TIMEOUT));
    let Ok(mut conn) = client.get_multiplexed_async_connection_with_config(&config).await else {
        return false;
    };
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
}

/// The first executable file called `name` in `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// A port free right now. Another process could take it before redis-server binds it; then
/// redis-server exits and the error shows its log.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Eight hex digits, for names that must not collide between runs.
pub(super) fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}
