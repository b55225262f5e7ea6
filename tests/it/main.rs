//! The one integration-test binary. Every module here uses the shared harness in
//! `tests/common/`: a real Redis with a per-test key prefix, and the simulator over real HTTP.

// A test binary exports nothing, so `pub` in the shared harness is for its sibling modules.
#![allow(unreachable_pub)]
// A failed unwrap is how a test helper fails loudly, with the location.
#![allow(clippy::unwrap_used)]

#[path = "../common/harness.rs"]
mod common;

mod api_clients;
mod api_golden;
mod api_stream;
mod bench_smoke;
mod chaos_ids;
mod chaos_input;
mod chaos_kill;
mod chaos_redis;
mod chaos_redis_stalls;
mod chaos_secrets;
mod cli;
mod cli_pipes;
mod cli_without_config;
mod config;
mod config_checks;
mod demo;
mod deploy;
mod harness;
mod ops_authorize;
mod ops_bind;
mod ops_dash;
mod ops_guard;
mod ops_http;
mod ops_reports;
mod ops_setup;
mod queue_enqueue;
mod queue_intake;
mod queue_ratelimit;
mod queue_shards;
mod redis_cluster;
mod redis_production;
mod run_budget;
mod run_disk_full;
mod run_events;
mod run_large_events;
mod run_limits;
mod run_pipeline;
mod run_results;
mod run_setup_missing;
mod run_traces;
mod run_turn_end;
mod run_user_lease;
mod run_webhook;
mod schedule_daemon;
mod schedule_fan_out;
mod schedule_users;
mod sim_actions;
mod sim_anthropic;
mod sim_conformance;
mod sim_faults;
mod sim_scale;
mod sim_scalekit;
mod tidy;
mod tidy_graph;
mod worker_memory;
mod worker_process;
mod worker_recovery;
mod worker_retention;
mod worker_retry;
mod worker_scale;
