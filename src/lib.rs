//! agentcron: runs a Claude Managed Agent for each of many users on a schedule, with each
//! user's Gmail and Google Calendar reached through a Scalekit Virtual MCP Server.
//!
//! The data flow, and the module that owns each stage:
//!
//! ```text
//! jobs.toml ─► schedule ─► queue (Redis) ─► worker ─► run pipeline ─► records ─► ops
//!                 ▲            ▲                         │    │
//!    redis-cli ───┘(SADD)      └── redis-cli intake      │    └─► api::scalekit / api::anthropic
//!                                                        └─► notices (+ webhook) / transcripts
//! ```
//!
//! - [`config`]: `jobs.toml` + environment, validated once.
//! - [`ids`]: typed run, user, session and vault ids; where run and user ids are validated.
//! - [`schedule`]: cron ticks in a time zone (or each user's), fanned out to users.
//! - [`users`]: user profiles (time zone, pause, template values) in Redis.
//! - [`template`]: prompt templates (`{name}`, `{name|default}`).
//! - [`queue`]: the Redis job queue and the redis-cli intake.
//! - [`worker`]: the daemon that executes runs.
//! - [`run`]: one agent session for one user, phase by phase.
//! - [`api`]: clients of the two remote APIs, with retry.
//! - [`records`]: run records, transcripts, notices in Redis.
//! - [`ops`]: reports, health, metrics and the dashboard.
//! - [`sim`]: a local simulator of both remote APIs.
//! - [`telemetry`]: logging and secret redaction.
//! - [`shutdown`]: the root cancellation on SIGINT/SIGTERM.
//! - [`demo`]: the end-to-end demo against the simulator (`agentcron demo`).
//! - [`bench`](mod@bench): benchmarks of the queue, the run pipeline and the fan-out (`agentcron bench`).
//! - [`cli`]: the command line, used by `main.rs`.

pub mod api;
pub mod backoff;
pub mod bench;
pub mod cli;
pub mod config;
pub mod cron;
pub mod demo;
pub mod ids;
pub mod keys;
pub mod ops;
pub mod outcome;
pub mod queue;
pub mod ratelimit;
pub mod records;
pub mod run;
pub mod schedule;
pub mod setup;
pub mod shutdown;
pub mod sim;
pub mod telemetry;
pub mod template;
pub mod transient;
pub mod users;
pub mod worker;
