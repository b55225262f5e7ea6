//! `spawn_app()`: a simulator, a fresh Redis prefix, the shipped configuration pointed at both,
//! `setup` done, and a run [`Context`] ready — the whole product minus the queue, for tests of
//! the run pipeline and everything above it.

use std::path::PathBuf;
use std::sync::Arc;

use agentcron::config::RedisConn;
use agentcron::config::{self, Config, Env};
use agentcron::records;
use agentcron::run::{self, Context, Finish, RunError};
use agentcron::telemetry::Redactor;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::TestRedis;
use super::sim::{SimClient, SimConfig, SimHandle, spawn_sim_with};

/// Distinctive credentials, so that a leak is easy to find.
pub const CLIENT_SECRET: &str = "SECRET-scalekit-client-3b9f";
/// The Anthropic key the simulator accepts in tests.
pub const API_KEY: &str = "SECRET-anthropic-key-7c2e";

/// One test's product.
pub struct TestApp {
    pub sim: SimHandle,
    pub sim_client: SimClient,
    pub redis: TestRedis,
    pub config: Arc<Config>,
    pub ctx: Context,
    pub conn: RedisConn,
    pub transcripts: tempfile::TempDir,
}

/// The configuration of the shipped `jobs.toml`, pointed at `sim` and `redis`.
pub fn config_for(sim: &SimHandle, redis: &TestRedis, transcripts: PathBuf) -> Config {
    let env = Env::from_pairs([
        ("SCALEKIT_ENV_URL", sim.base_url()),
        ("ANTHROPIC_BASE_URL", sim.base_url()),
        ("SCALEKIT_CLIENT_ID", "sim-client-id"),
        ("SCALEKIT_CLIENT_SECRET", CLIENT_SECRET),
        ("ANTHROPIC_API_KEY", API_KEY),
        ("REDIS_URL", redis.url.as_str()),
    ]);
    let mut config = config::load(&super::shipped_config(), &env).unwrap();
    config.redis.prefix.clone_from(&redis.prefix);
    config.transcripts.dir = transcripts;
    config.worker.heartbeat = std::time::Duration::from_millis(200);
    config.retry.initial = std::time::Duration::from_millis(20);
    config.retry.max_interval = std::time::Duration::from_millis(200);
    config
}

/// Starts everything; `adjust` may change the configuration before setup.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let sim = spawn_sim_with(SimConfig {
        scalekit_client_secret: CLIENT_SECRET.to_owned(),
        anthropic_api_key: API_KEY.to_owned(),
        ..SimConfig::default()
    })
    .await;
    let redis = TestRedis::new().await;
    let transcripts = tempfile::tempdir().unwrap();
    let mut config = config_for(&sim, &redis, transcripts.path().to_path_buf());
    adjust(&mut config);
    let config = Arc::new(config);
    let mut conn = config.redis.connect(Default::default()).await.unwrap();
    let keys = config.redis.keys();
    let (scalekit, anthropic, _) = run::clients(&config).unwrap();
    agentcron::setup::ensure(&config, &scalekit, &anthropic, &mut conn, &keys).await.unwrap();
    let redactor = Redactor::new(config.secret_values());
    let ctx = Context::connect(config.clone(), redactor).await.unwrap();
    let sim_client = SimClient::new(&sim);
    TestApp { sim, sim_client, redis, config, ctx, conn, transcripts }
}

/// Starts everything with the shipped configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

impl TestApp {
    /// Writes a queued run record for `user`, as an enqueue would.
    pub async fn create_run(&self, run_id: &str, user: &str) {
        let mut conn = self.conn.clone();
        let fields = [
            ("run_id", run_id.to_owned()),
            ("user", user.to_owned()),
            ("state", "queued".to_owned()),
        ];
        records::set_run(&mut conn, &self.ctx.keys, &super::run_id(run_id), None, &fields)
            .await
            .unwrap();
    }

    /// Enqueues `(run_id, user)` runs, due now, as a producer would.
    pub async fn enqueue(&self, runs: &[(&str, &str)]) {
        let queue = agentcron::queue::Queue::connect(&self.config.redis).await.unwrap();
        let runs: Vec<agentcron::queue::NewRun> = runs
            .iter()
            .map(|(run_id, user)| agentcron::queue::NewRun {
                run_id: super::run_id(run_id),
                ..agentcron::queue::NewRun::now(super::user_id(user))
            })
            .collect();
        queue.enqueue(&runs, "test").await.unwrap();
    }

    /// Runs `run_id` with `ctx` to its end.
    pub async fn execute_with(&self, ctx: &Context, run_id: &str) -> Result<Finish, RunError> {
        let run_id = super::run_id(run_id);
        run::execute(
            ctx,
            &run_id,
            None,
            None,
            &CancellationToken::new(),
            &mut run::Timeline::default(),
        )
        .await
    }

    /// Runs `run_id` to its end.
    pub async fn execute(&self, run_id: &str) -> Result<Finish, RunError> {
        self.execute_with(&self.ctx, run_id).await
    }

    /// The run record.
    pub async fn record(&self, run_id: &str) -> records::Fields {
        let mut conn = self.conn.clone();
        let run_id = super::run_id(run_id);
        records::load_run(&mut conn, &self.ctx.keys, &run_id).await.unwrap().unwrap()
    }

    /// The simulator's audit.
    pub async fn audit(&self) -> Value {
        self.sim_client.audit().await
    }

    /// The run's transcript, as recorded in Redis.
    pub async fn transcript_lines(&self, run_id: &str) -> Vec<Value> {
        let mut conn = self.conn.clone();
        let run_id = super::run_id(run_id);
        agentcron::records::transcript::lines(&mut conn, &self.ctx.keys, &run_id).await.unwrap()
    }

    /// The audited sessions of one run.
    pub async fn sessions_of(&self, run_id: &str) -> Vec<Value> {
        let audit = self.audit().await;
        audit["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["run_id"] == run_id)
            .cloned()
            .collect()
    }
}

/// The names of the MCP tools the agent used, in order, from transcript `lines`.
pub fn tool_uses(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "agent.mcp_tool_use")
        .map(|l| l["data"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Captures log lines, unredacted, to prove secrets are never logged in the first place.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// A JSON subscriber at DEBUG writing here.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let sink = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || sink.clone())
            .finish()
    }

    /// Everything captured.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every key under the test's prefix with its value, as text.
pub async fn dump_redis(redis: &TestRedis) -> String {
    let mut conn = redis.conn.clone();
    let mut out = String::new();
    for key in redis.keys().await {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(),
            "list" => {
                redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap()
            }
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .unwrap(),
            "stream" => redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap(),
            other => panic!("unexpected type {other} of {key}"),
        };
        out.push_str(&format!("{key} = {value:?}\n"));
    }
    out
}

/// Runs the binary with `app`'s Redis prefix, off the runtime's threads: exit code, stdout,
/// stderr.
pub async fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let env = [
        ("REDIS_URL".to_owned(), app.redis.url.clone()),
        ("AGENTCRON__REDIS__PREFIX".to_owned(), app.redis.prefix.clone()),
    ];
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        super::agentcron(&args, &env, &super::repo_root())
    })
    .await
    .unwrap();
    let (stdout, stderr) = super::text(&output);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}
