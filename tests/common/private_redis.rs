//! A test-owned `redis-server` (a spare port, its own directory, killed at the end) for the
//! tests whose faults would disturb every other test on the shared Redis: killed connections,
//! restarts, paused writes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentcron::config::Config;

use super::app::TestApp;
use super::poll::poll_until;
use super::procs::kill9;
pub use super::tls::Pki;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` child on a free port; restarts reuse the port and the directory.
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    child: Option<Child>,
    /// TLS only, with these certificates; `require_client` asks clients for theirs.
    tls: Option<(Pki, bool)>,
    /// More `redis-server` arguments (`--replicaof`).
    extra: Vec<String>,
}

impl PrivateRedis {
    pub async fn start(aof: bool) -> Self {
        Self::start_with(aof, None).await
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by `pki.ca`;
    /// with `require_client`, clients must show a certificate signed by it too.
    pub async fn start_tls(pki: Pki, require_client: bool) -> Self {
        Self::start_with(false, Some((pki, require_client))).await
    }

    /// A replica of `primary`.
    pub async fn start_replica_of(primary: &Self) -> Self {
        let extra =
            vec!["--replicaof".to_owned(), "127.0.0.1".to_owned(), primary.port.to_string()];
        Self::start_full(false, None, extra).await
    }

    /// A node of a Redis Cluster still to be formed (`redis-cli --cluster create`).
    pub async fn start_cluster_node() -> Self {
        let extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
        let extra = [&extra[..], &["--cluster-node-timeout", "2000"]].concat();
        Self::start_full(false, None, extra.iter().map(|s| (*s).to_owned()).collect()).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    async fn start_with(aof: bool, tls: Option<(Pki, bool)>) -> Self {
        Self::start_full(aof, tls, Vec::new()).await
    }

    async fn start_full(aof: bool, tls: Option<(Pki, bool)>, extra: Vec<String>) -> Self {
        assert!(Path::new(REDIS_SERVER).exists(), "redis-server is installed (.ci/run needs it)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self { port, dir, aof, child: None, tls, extra };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The certificates of a TLS server.
    pub fn pki(&self) -> &Pki {
        &self.tls.as_ref().expect("a TLS server").0
    }

    fn tls_args(&self) -> Vec<String> {
        let Some((pki, require_client)) = &self.tls else {
            return vec!["--port".to_owned(), self.port.to_string()];
        };
        let path = |p: &Path| p.display().to_string();
        vec![
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            self.port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&pki.server_cert),
            "--tls-key-file".to_owned(),
            path(&pki.server_key),
            "--tls-ca-cert-file".to_owned(),
            path(&pki.ca),
            "--tls-auth-clients".to_owned(),
            (if *require_client { "yes" } else { "no" }).to_owned(),
        ]
    }

    pub async fn spawn(&mut self) {
        let persistence: &[&str] = if self.aof {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new(REDIS_SERVER)
            .args(self.tls_args())
            .args(&self.extra)
            .args(["--bind", "127.0.0.1", "--save", ""])
            // DEBUG SLEEP stands for a stall (a slow fork, a failover).
            .args(["--enable-debug-command", "local"])
            .args(persistence)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let what = format!("redis-server on {} to answer PING", self.port);
        poll_until(&what, Duration::from_secs(20), || async {
            match self.conn().await {
                Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }

    pub async fn conn(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        self.client()?.get_multiplexed_async_connection().await
    }

    /// A client of this server (with the CA and a client certificate when it speaks TLS).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let Some((pki, _)) = &self.tls else { return redis::Client::open(self.url()) };
        rustls::crypto::ring::default_provider().install_default().ok();
        let read = |path: &Path| std::fs::read(path).unwrap();
        let certificates = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read(&pki.client_cert),
                client_key: read(&pki.client_key),
            }),
            root_cert: Some(read(&pki.ca)),
        };
        redis::Client::build_with_tls(self.url(), certificates)
    }

    /// `CLIENT KILL TYPE normal`: every client connection but this one is closed.
    /// Kills every normal client connection; retries until it finds some, because a worker
    /// whose connections were just killed reconnects lazily, on its next command.
    pub async fn kill_clients(&self) -> i64 {
        poll_until("a worker connection to kill", Duration::from_secs(10), || async {
            let mut conn = self.conn().await.unwrap();
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query_async(&mut conn)
                .await
                .unwrap();
            (killed > 0).then_some(killed)
        })
        .await
    }

    /// `SHUTDOWN NOSAVE`, then waits for the process to exit.
    pub async fn shutdown_nosave(&mut self) {
        let mut conn = self.conn().await.unwrap();
        // The server closes the connection instead of answering.
        redis::cmd("SHUTDOWN").arg("NOSAVE").query_async::<()>(&mut conn).await.ok();
        let mut child = self.child.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    }

    pub fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill9(child);
        }
        self.child = None;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Best effort in a destructor: the process may have exited already.
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// The test's configuration pointed at `server`, with `setup` done there.
pub async fn setup_on(app: &TestApp, server: &PrivateRedis) -> Config {
    let mut config = (*app.config).clone();
    config.redis.url = server.url().parse().unwrap();
    if let Some((pki, _)) = &server.tls {
        config.redis.tls.ca_file = Some(pki.ca.clone());
        config.redis.tls.cert_file = Some(pki.client_cert.clone());
        config.redis.tls.key_file = Some(pki.client_key.clone());
    }
    let mut conn = config.redis.connect(Default::default()).await.unwrap();
    let keys = config.redis.keys();
    let (scalekit, anthropic, _) = agentcron::run::clients(&config).unwrap();
    agentcron::setup::ensure(&config, &scalekit, &anthropic, &mut conn, &keys).await.unwrap();
    config
}

/// A fleet test's parts: the simulator (`app`), a private `redis-server` with `setup` done
/// there, the configuration pointed at it, the test's key prefix, and a directory whose
/// `workers.log` collects the worker processes' logs.
pub struct Fleet {
    pub app: TestApp,
    pub server: PrivateRedis,
    pub config: Config,
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub log: std::path::PathBuf,
}

impl Fleet {
    pub async fn start() -> Self {
        let app = super::app::spawn_app().await;
        let server = PrivateRedis::start(false).await;
        let config = setup_on(&app, &server).await;
        let prefix = app.redis.prefix.clone();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("workers.log");
        Self { app, server, config, prefix, dir, log }
    }
}

/// `CLIENT PAUSE 3000 WRITE`, renewed, for `total`: every write (fetches, finishes, the
/// test's own enqueue) waits, and clients whose reply takes longer than their timeout give up
/// while Redis still holds their command, to run it when writes resume.
pub async fn pause_writes(server: &PrivateRedis, total: Duration) {
    let mut conn = server.conn().await.unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < total {
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(3000)
            .arg("WRITE")
            .query_async(&mut conn)
            .await
            .unwrap();
        // Renewed before it lapses, so that writes never resume in between.
        tokio::time::sleep(Duration::from_millis(2000)).await;
    }
    let () = redis::cmd("CLIENT").arg("UNPAUSE").query_async(&mut conn).await.unwrap();
}
