//! The queue's Lua scripts, each loaded once per process. Every multi-key change of queue state
//! happens inside one of them, so that a worker killed between two Redis calls never leaves a
//! run half-moved: each script is the unit of atomicity the crash-safety argument relies on.
//!
//! The scripts build a few keys from prefixes passed in ARGV (records of ids read from a list):
//! each prefix is of the slot of the script's keys (`crate::keys`), so on Redis Cluster every
//! script stays in one slot. This module must not decide when a script runs.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $($file:literal),+) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(include_str!("lua/common.lua"), $(include_str!($file)),+))
        });
    };
}

script!(ENQUEUE, "lua/create.lua", "lua/enqueue.lua");
script!(ENQUEUE_MANY, "lua/create.lua", "lua/enqueue_many.lua");
script!(FETCH, "lua/start.lua", "lua/fetch.lua");
script!(START_ONE, "lua/start.lua", "lua/start_one.lua");
script!(FINISH_MANY, "lua/start.lua", "lua/finish_many.lua");
script!(PROMOTE, "lua/promote.lua");
script!(HEARTBEAT, "lua/heartbeat.lua");
script!(REAP, "lua/reap.lua");
script!(SWEEP, "lua/sweep.lua");
script!(EXPIRE, "lua/expire.lua");
script!(RELEASE, "lua/release.lua");
script!(RELEASE_RUNS, "lua/release_runs.lua");
script!(RENEW_USER_LEASES, "lua/renew_user_leases.lua");
script!(INTAKE_TAKE, "lua/intake_take.lua");
script!(INTAKE_REJECT, "lua/intake_reject.lua");
script!(INTAKE_RETURN, "lua/intake_return.lua");
script!(INTAKE_STAMP, "lua/intake_stamp.lua");
script!(REQUEUE, "lua/requeue.lua");
script!(CANCEL, "lua/cancel.lua");
script!(RETRY, "lua/retry.lua");
script!(WAKE, "lua/wake.lua");
