//! `agentcron demo`: the whole flow on one machine, without credentials. It starts the
//! simulator in-process, finds or starts a Redis, runs `setup`, prepares three users (carol's
//! calendar connection EXPIRED), enqueues a run for each through the redis-cli intake list, runs
//! a worker until the three end, and writes each transcript the way the guide prints it, then
//! carol's notice with its auth link. `--follow` then keeps a 10-second schedule running.
//!
//! It sits at the very end of the flow and only drives the real stages (`setup::ensure`, the
//! intake, `worker::run`, `schedule::run`, `ops::report`). It must not depend on the user's
//! secrets or keys: it builds its own configuration from `jobs.toml` with the simulator's URL
//! and credentials and a fresh key prefix, so the user's own prefix is never touched.

mod failure;
mod options;
mod prepare;
mod redis_server;

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RedisConn;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::failure::DemoError;
pub use self::options::{DemoOptions, DemoReport};
pub use self::redis_server::{DEFAULT_URL, PrivateRedis};
use crate::config::{self, Config, Env};
use crate::ops::http::{self, OpsState};
use crate::ops::report::{self, Notice, RunFilter, RunSummary, Status};
use crate::outcome::RunState;
use crate::queue::Queue;
use crate::records::transcript;
use crate::schedule::ScheduleError;
use crate::sim::{self, SimConfig, SimHandle};
use crate::telemetry::Redactor;
use crate::worker::WorkerError;

/// The demo users, in the order they are run and printed.
pub const USERS: [&str; 3] = ["alice@example.com", "bob@example.com", "carol@example.com"];
/// The user whose calendar connection is EXPIRED, so that her run ends `needs_auth`.
pub const EXPIRED_USER: &str = "carol@example.com";
/// Carol's lapsed connection.
pub const EXPIRED_CONNECTION: &str = "googlecalendar";
/// The schedule `--follow` keeps running.
pub const SCHEDULE: &str = "demo";
/// Every 10 seconds (6-field cron, seconds first).
pub const SCHEDULE_CRON: &str = "*/10 * * * * *";
const POLL: Duration = Duration::from_millis(200);

/// A running demo: simulator, Redis, configuration and one worker. Dropping it stops the
/// worker, the simulator and a private Redis; [`Demo::stop`] also waits for them and removes
/// the demo's keys.
#[derive(Debug)]
pub struct Demo {
    /// The in-process simulator; `None` once stopped.
    sim: Option<SimHandle>,
    /// The private `redis-server`, when the demo had to start one.
    redis_server: Option<PrivateRedis>,
    config: Arc<Config>,
    /// The demo's own `jobs.toml` (what `schedule::run` reloads) and environment.
    config_path: PathBuf,
    env: Env,
    queue: Queue,
    /// Cancelled by `stop` (and on drop): ends the worker.
    shutdown: CancellationToken,
    /// The worker task, owned here and awaited by `stop`.
    worker: Option<JoinHandle<Result<(), WorkerError>>>,
    redactor: Redactor,
    deadline: Duration,
}

impl Demo {
    /// Finds or starts Redis, starts the simulator, writes the demo configuration, runs setup,
    /// prepares the users and starts a worker, telling `out` what it does.
    ///
    /// # Errors
    /// [`DemoError`] from any step; everything started so far is stopped.
    pub async fn start(opts: DemoOptions, out: &mut impl Write) -> Result<Self, DemoError> {
        let (redis_url, redis_server) = prepare::find_redis(opts.redis_url.as_deref(), out).await?;
        let sim = sim::serve(SimConfig::default()).await?;
        writeln!(
            out,
            "Simulator  {} (Scalekit and Anthropic APIs, in this process)",
            sim.base_url()
        )?;
        let prefix = format!("agentcron-demo-{}", redis_server::short_id());
        let workdir = std::env::temp_dir().join(&prefix);
        let file = |source| DemoError::File { path: workdir.clone(), source };
        std::fs::create_dir_all(workdir.join("transcripts")).map_err(file)?;
        let (config_path, env) = prepare::write_config(&opts, &sim, &redis_url, &prefix, &workdir)?;
        let config = Arc::new(config::load(&config_path, &env)?);
        for secret in config.secret_values() {
            opts.redactor.add(secret);
        }
        writeln!(out, "Key prefix {prefix}")?;
        writeln!(out, "Files      {} (jobs.toml, transcripts/)", workdir.display())?;
        let queue = Queue::connect(&config.redis).await?;
        prepare::run_setup(&config, &queue, out).await?;
        prepare::prepare_users(&config, sim.base_url(), out).await?;
        let shutdown = CancellationToken::new();
        let ctx = crate::run::Context::connect(Arc::clone(&config), opts.redactor.clone()).await?;
        let worker_config = Arc::clone(&config);
        let token = shutdown.child_token();
        let worker =
            tokio::spawn(async move { crate::worker::run(&worker_config, ctx, token).await });
        Ok(Self {
            sim: Some(sim),
            redis_server,
            config,
            config_path,
            env,
            queue,
            shutdown,
            worker: Some(worker),
            redactor: opts.redactor,
            deadline: opts.deadline,
        })
    }

    /// The configuration the demo runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Enqueues one run per user through the intake list, waits until all three end, and
    /// writes each transcript, its outcome and the open notices.
    ///
    /// # Errors
    /// [`DemoError::Timeout`] when a run has not ended by the deadline (the states are in it);
    /// [`DemoError::Interrupted`] when `cancel` fires first; Redis errors.
    pub async fn run_once(
        &mut self,
        out: &mut impl Write,
        cancel: &CancellationToken,
    ) -> Result<DemoReport, DemoError> {
        let mut conn = self.queue.connection();
        let intake = self.queue.keys().intake();
        writeln!(out, "\nEnqueueing through the intake list, as an operator would:")?;
        for user in USERS {
            let payload = serde_json::json!({ "user": user }).to_string();
            writeln!(out, "  redis-cli LPUSH {intake} '{payload}'")?;
            redis::cmd("LPUSH").arg(&intake).arg(&payload).query_async::<i64>(&mut conn).await?;
        }
        let runs = self.wait_for_runs(&mut conn, cancel).await?;
        for run in &runs {
            self.write_run(&mut conn, run, out).await?;
        }
        let notices = report::notices(&mut conn, self.queue.keys(), false).await?;
        write_notices(&notices, out)?;
        Ok(DemoReport { runs, notices })
    }

    /// The status screen's data.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn status(&self) -> Result<Status, DemoError> {
        let mut conn = self.queue.connection();
        Ok(report::status(&mut conn, self.queue.keys(), &self.config).await?)
    }

    /// Runs the scheduler with the 10-second demo schedule (armed only when
    /// [`DemoOptions::follow`] was set) and the ops server with its dashboard, and writes each
    /// finished run until `cancel` fires.
    ///
    /// # Errors
    /// [`DemoError::Schedule`] or [`DemoError::Ops`] when the scheduler or the ops server
    /// fails; Redis errors.
    pub async fn follow(
        &mut self,
        out: &mut impl Write,
        cancel: &CancellationToken,
    ) -> Result<(), DemoError> {
        let token = cancel.child_token();
        // The demo's own configuration binds a free port; `off` would come from a user's file.
        let (dashboard, ops) = match http::bind(&self.config.ops).await? {
            Some(listener) => {
                let dashboard = listener.local_addr().map(|addr| format!("http://{addr}/"))?;
                let state = OpsState::new(Arc::clone(&self.config), self.redactor.clone())?;
                // Both tasks are owned here and awaited below, so neither outlives the demo.
                (dashboard, Some(tokio::spawn(http::serve(state, listener, token.clone()))))
            }
            None => ("off (ops.bind = \"off\")".to_owned(), None),
        };
        let daemon = crate::schedule::run(
            self.config_path.clone(),
            self.env.clone(),
            self.queue.clone(),
            token.clone(),
        );
        let scheduler = tokio::spawn(daemon);
        writeln!(
            out,
            "\nFollowing: schedule `{SCHEDULE}` fires `{SCHEDULE_CRON}` (every 10 s) for {} and {}.",
            USERS[0], USERS[1]
        )?;
        writeln!(out, "Dashboard: {dashboard}")?;
        writeln!(out, "Ctrl-C stops.")?;
        out.flush()?;
        let res = self.print_scheduled(out, cancel, &scheduler).await;
        token.cancel();
        let daemon_res = match scheduler.await {
            Ok(daemon_res) => daemon_res.map_err(DemoError::from),
            Err(error) => Err(DemoError::Task("scheduler", error.to_string())),
        };
        let ops_res = match ops {
            Some(ops) => match ops.await {
                Ok(ops_res) => ops_res.map_err(DemoError::from),
                Err(error) => Err(DemoError::Task("ops server", error.to_string())),
            },
            None => Ok(()),
        };
        res.and(daemon_res).and(ops_res)
    }

    /// Stops the worker, the simulator and a private Redis, and removes the demo's keys from a
    /// Redis it did not start (the transcripts' JSONL files stay).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            match worker.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(message = "Demo worker failed.", %error),
                Err(error) => tracing::warn!(message = "Demo worker task failed.", %error),
            }
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
        match self.redis_server.take() {
            Some(server) => server.stop().await,
            None => {
                let mut conn = self.queue.connection();
                if let Err(error) =
                    crate::queue::remove_all_keys(&mut conn, self.queue.keys(), 500).await
                {
                    tracing::warn!(message = "Could not remove the demo's Redis keys.", %error);
                }
            }
        }
    }

    /// Polls each user's latest run until all have ended, `cancel` fires or the deadline passes.
    async fn wait_for_runs(
        &self,
        conn: &mut RedisConn,
        cancel: &CancellationToken,
    ) -> Result<Vec<RunSummary>, DemoError> {
        let deadline = Instant::now() + self.deadline;
        loop {
            let mut runs = Vec::new();
            for user in USERS {
                let filter =
                    RunFilter { user: Some(user.to_owned()), limit: 1, ..RunFilter::default() };
                runs.push(report::runs(conn, self.queue.keys(), &filter).await?.pop());
            }
            if runs.iter().all(|run| run.as_ref().is_some_and(is_terminal)) {
                return Ok(runs.into_iter().flatten().collect());
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout {
                    secs: self.deadline.as_secs(),
                    states: describe(&runs),
                });
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(DemoError::Interrupted),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// A header, the transcript as the guide prints it, and the outcome.
    async fn write_run(
        &self,
        conn: &mut RedisConn,
        run: &RunSummary,
        out: &mut impl Write,
    ) -> Result<(), DemoError> {
        writeln!(out, "\n━━ {}  (run {}) ━━", run.user, run.run_id)?;
        let lines = transcript::lines(conn, self.queue.keys(), &run.run_id).await?;
        let text: String = lines.iter().filter_map(report::render_line).collect();
        if text.trim().is_empty() {
            writeln!(out, "(no agent session: the run stopped before the agent started)")?;
        } else {
            writeln!(out, "{}", self.redactor.redact(text.trim_end()))?;
        }
        let detail = match (&run.session_id, &run.last_error) {
            (_, Some(error)) if run.state != RunState::Succeeded.as_str() => format!(" — {error}"),
            (Some(session), _) => format!(" (session {session})"),
            _ => String::new(),
        };
        writeln!(out, "outcome: {}{detail}", run.state)?;
        Ok(())
    }

    /// Writes each run of the demo schedule once it has ended, until `cancel` fires or the
    /// scheduler ends (its result is the caller's to read).
    async fn print_scheduled(
        &self,
        out: &mut impl Write,
        cancel: &CancellationToken,
        scheduler: &JoinHandle<Result<(), ScheduleError>>,
    ) -> Result<(), DemoError> {
        let mut conn = self.queue.connection();
        let mut printed = HashSet::new();
        let filter =
            RunFilter { schedule: Some(SCHEDULE.to_owned()), limit: 50, ..RunFilter::default() };
        while !scheduler.is_finished() {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let runs = report::runs(&mut conn, self.queue.keys(), &filter).await?;
            for run in runs.iter().rev().filter(|r| is_terminal(r)) {
                if printed.insert(run.run_id.clone()) {
                    self.write_run(&mut conn, run, out).await?;
                    out.flush()?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Demo {
    // The worker task watches this token; without it a dropped demo would leave it running.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn is_terminal(run: &RunSummary) -> bool {
    RunState::parse(&run.state).is_some_and(RunState::is_terminal)
}

/// `user: state` per user, for the timeout message.
fn describe(runs: &[Option<RunSummary>]) -> String {
    USERS
        .iter()
        .zip(runs)
        .map(|(user, run)| {
            let state =
                run.as_ref().map_or("no run yet (still in the intake?)", |r| r.state.as_str());
            format!("{user}: {state}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The open notices: who must re-authorise what, and the link to do it with.
fn write_notices(notices: &[Notice], out: &mut impl Write) -> Result<(), DemoError> {
    writeln!(out, "\nOpen notices (users who must re-authorise a connection):")?;
    if notices.is_empty() {
        writeln!(out, "  none")?;
    }
    for notice in notices {
        let field = |name: &str| notice.fields.get(name).map_or("", String::as_str);
        writeln!(
            out,
            "  {} · {} is {} · auth link: {}",
            notice.user,
            notice.connection,
            field("connection_status"),
            field("auth_link")
        )?;
    }
    Ok(())
}
