//! Every Redis key agentcron uses, built from one prefix. No other file may `format!` a key:
//! the layout below is what operators read with `redis-cli`, so it lives in one place.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:q:ready` | list | run ids ready to run; producers `LPUSH`, workers take from the right (FIFO) |
//! | `<p>:q:processing:<worker>` | list | run ids a worker has taken and not yet finished |
//! | `<p>:q:delayed` | zset | run ids waiting for a retry or `not_before`; score = due time, unix ms |
//! | `<p>:q:dead` | list (capped) | JSON `{run_id, reason, error_class, at_ms}` per run that went dead, newest first |
//! | `<p>:q:leases` | zset | worker id → lease expiry (unix ms, Redis clock); 0 = being reaped |
//! | `<p>:q:clock` | hash | `served`: when Redis last served a heartbeat or reaper (unix ms); `grace_until`: no reaping before it, after a stall |
//! | `<p>:intake` | list | redis-cli intake: JSON payloads, `LPUSH` by operators |
//! | `<p>:intake:processing:<worker>` | list | intake payloads a worker has taken and not yet handled |
//! | `<p>:rejected` | list (capped) | JSON `{reason, payload, at_ms}` per invalid intake payload, newest first |
//! | `<p>:workers` | hash | worker id → JSON heartbeat (host, pid, in-flight runs, times) |
//! | `<p>:run:<id>` | hash | the run record (see `queue.rs`) |
//! | `<p>:runs`, `<p>:runs:user:<u>`, `<p>:runs:state:<s>` | zsets | run ids by creation time (unix ms) |
//! | `<p>:user:<u>` | hash | the user's vault and credential ids, and when its vault was last asked for |
//! | `<p>:lock:user:<u>` | string | per-user lease (`SET NX PX`, fenced) |
//! | `<p>:transcript:<id>` | stream | transcript events |
//! | `<p>:notice:<u>:<conn>` | hash | one open or resolved notice |
//! | `<p>:notices` | stream | notice events for follow-up consumers |
//! | `<p>:notices:open` | zset | `<u>:<conn>` of every open notice; score = first seen, unix ms |
//! | `<p>:setup` | hash | ids created by `agentcron setup` |
//! | `<p>:users:<schedule>` | set | users of a schedule managed with redis-cli |
//! | `<p>:ratelimit:<name>` | hash | a fleet-wide token bucket (`tokens`, `ts_us`) |
//! | `<p>:schedule:<name>` | hash | the schedule's last tick: `last_tick` (unix s), `users`, `invalid`, `enqueued`, `updated_at_ms` |
//! | `<p>:schedule:<name>:last` | hash | user → run id of the user's latest run of the schedule (overlap check) |
//!
//! On Redis Cluster (`Keys::clustered`) every key starts with the prefix as a hash tag,
//! `{<p>}:q:ready`, so that all of a deployment's keys are in one slot: each Lua script and
//! pipeline touches one slot, on one master. A prefix that already holds a tag is kept as it is.
//!
//! This module must not talk to Redis.

use crate::ids::{RunId, UserId};

/// Builds keys under one prefix (`[redis] prefix`, default `agentcron`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    /// What every key starts with: the prefix, or on a cluster its hash tag.
    base: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self { base: prefix.clone(), prefix }
    }

    /// Keys under `prefix` on Redis Cluster: `{<prefix>}:…`, one slot for all (unless the
    /// prefix already holds a `{tag}`, which then decides the slot).
    pub fn clustered(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let tagged = prefix.split_once('{').is_some_and(|(_, rest)| rest.find('}') > Some(0));
        let base = if tagged { prefix.clone() } else { format!("{{{prefix}}}") };
        Self { prefix, base }
    }

    /// What every key starts with (before its `:`): the prefix, or on a cluster its hash tag.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.base)
    }

    /// `<p>:q:ready`.
    pub fn ready(&self) -> String {
        self.key("q:ready")
    }

    /// `<p>:q:processing:<worker>`.
    pub fn processing(&self, worker: &str) -> String {
        format!("{}{worker}", self.processing_prefix())
    }

    /// `<p>:q:cancel:<worker>`: the running runs an operator asked `worker` to cancel, taken
    /// by its heartbeat.
    pub fn cancels(&self, worker: &str) -> String {
        format!("{}{worker}", self.cancels_prefix())
    }

    /// `<p>:q:cancel:`, for the cancel script, which appends the run's worker id.
    pub(crate) fn cancels_prefix(&self) -> String {
        self.key("q:cancel:")
    }

    /// `<p>:q:processing:`, for the reaper script, which appends worker ids.
    pub(crate) fn processing_prefix(&self) -> String {
        self.key("q:processing:")
    }

    /// `<p>:q:delayed`.
    pub fn delayed(&self) -> String {
        self.key("q:delayed")
    }

    /// `<p>:q:dead`.
    pub fn dead(&self) -> String {
        self.key("q:dead")
    }

    /// `<p>:q:leases`.
    pub fn leases(&self) -> String {
        self.key("q:leases")
    }

    /// `<p>:q:clock`.
    pub fn clock(&self) -> String {
        self.key("q:clock")
    }

    /// `<p>:intake`.
    pub fn intake(&self) -> String {
        self.key("intake")
    }

    /// `<p>:intake:processing:<worker>`.
    pub fn intake_processing(&self, worker: &str) -> String {
        format!("{}{worker}", self.intake_processing_prefix())
    }

    /// `<p>:intake:processing:`, for the reaper script.
    pub(crate) fn intake_processing_prefix(&self) -> String {
        self.key("intake:processing:")
    }

    /// `<p>:rejected`.
    pub fn rejected(&self) -> String {
        self.key("rejected")
    }

    /// `<p>:workers`.
    pub fn workers(&self) -> String {
        self.key("workers")
    }

    /// `<p>:run:<id>`.
    pub fn run(&self, id: &RunId) -> String {
        format!("{}{id}", self.run_prefix())
    }

    /// `<p>:run:`, for scripts that visit records of run ids they read from a list.
    pub(crate) fn run_prefix(&self) -> String {
        self.key("run:")
    }

    /// `<p>:runs`.
    pub fn runs(&self) -> String {
        self.key("runs")
    }

    /// `<p>:runs:user:<u>`.
    pub fn runs_by_user(&self, user: &UserId) -> String {
        format!("{}{user}", self.runs_by_user_prefix())
    }

    /// `<p>:runs:user:`, for the batch enqueue script, which appends users.
    pub(crate) fn runs_by_user_prefix(&self) -> String {
        self.key("runs:user:")
    }

    /// `<p>:runs:state:<s>`.
    pub fn runs_by_state(&self, state: &str) -> String {
        format!("{}{state}", self.runs_by_state_prefix())
    }

    /// `<p>:runs:state:`, for scripts that move a run between state indexes.
    pub(crate) fn runs_by_state_prefix(&self) -> String {
        self.key("runs:state:")
    }

    /// `<p>:user:<u>`.
    pub fn user(&self, user: &UserId) -> String {
        self.key(&format!("user:{user}"))
    }

    /// `<p>:lock:user:<u>`.
    pub fn user_lock(&self, user: &UserId) -> String {
        self.key(&format!("lock:user:{user}"))
    }

    /// `<p>:transcript:`, for the retention script, which appends run ids.
    pub(crate) fn transcript_prefix(&self) -> String {
        self.key("transcript:")
    }

    /// `<p>:transcripts:repair`: run id → path of a transcript file to rebuild from its stream
    /// (its writes failed, and so did the rebuild at the attempt's end).
    pub fn transcript_repairs(&self) -> String {
        self.key("transcripts:repair")
    }

    /// `<p>:transcript:<id>`.
    pub fn transcript(&self, run_id: &RunId) -> String {
        self.key(&format!("transcript:{run_id}"))
    }

    /// `<p>:notice:<u>:<conn>`.
    pub fn notice(&self, user: &UserId, connection: &str) -> String {
        self.key(&format!("notice:{user}:{connection}"))
    }

    /// `<p>:notice:*:*`, the pattern that matches every notice (for `SCAN`).
    pub fn notice_pattern(&self) -> String {
        self.key("notice:*:*")
    }

    /// `<p>:notice:`, which prefixes the `<u>:<conn>` of every notice key.
    pub fn notice_prefix(&self) -> String {
        self.key("notice:")
    }

    /// `<p>:notices` (stream of notice events).
    pub fn notices(&self) -> String {
        self.key("notices")
    }

    /// `<p>:notices:open`: zset of `<u>:<conn>` for open notices, scored by first seen (ms).
    pub fn notice_index(&self) -> String {
        self.key("notices:open")
    }

    /// `<p>:setup`.
    pub fn setup(&self) -> String {
        self.key("setup")
    }

    /// `<p>:setup:missing`: the setup object a run found missing (JSON), until `setup` stores
    /// the ids again.
    pub fn setup_missing(&self) -> String {
        self.key("setup:missing")
    }

    /// `<p>:setup:lock`: held by the one worker recreating missing setup objects.
    pub fn setup_lock(&self) -> String {
        self.key("setup:lock")
    }

    /// `<p>:users:<schedule>`.
    pub fn schedule_users(&self, schedule: &str) -> String {
        self.key(&format!("users:{schedule}"))
    }

    /// `<p>:ratelimit:<name>`.
    pub fn ratelimit(&self, name: &str) -> String {
        self.key(&format!("ratelimit:{name}"))
    }

    /// `<p>:schedule:<name>`: tick statistics of a schedule.
    pub fn schedule_stats(&self, schedule: &str) -> String {
        self.key(&format!("schedule:{schedule}"))
    }

    /// `<p>:schedule:<name>:last`: user → run id of the user's latest run of the schedule.
    pub fn schedule_last(&self, schedule: &str) -> String {
        self.key(&format!("schedule:{schedule}:last"))
    }

    /// `<p>:bench:baseline`: a benchmark's scratch key for the idle baseline.
    pub fn bench_baseline(&self) -> String {
        self.key("bench:baseline")
    }

    /// `<p>:usage`: what agentcron's keys and transcript files take, as the workers last
    /// measured (`redis_bytes`, `redis_keys`, `redis_at_ms`, `transcript_bytes`,
    /// `transcripts_at_ms`).
    pub fn usage(&self) -> String {
        self.key("usage")
    }

    /// `<p>:*`: the `SCAN MATCH` pattern of every key under the prefix (for removing a demo's
    /// or a benchmark's private prefix, and measuring what the prefix takes; never to remove the
    /// operator's keys).
    pub fn all(&self) -> String {
        self.key("*")
    }

    /// `<u>:<conn>`: a member of `<p>:notices:open`.
    pub fn notice_member(user: &str, connection: &str) -> String {
        format!("{user}:{connection}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_cluster_every_key_carries_the_prefix_as_its_hash_tag() {
        let keys = Keys::clustered("agentcron");
        let run_id = RunId::parse("r1").unwrap();
        assert_eq!(keys.ready(), "{agentcron}:q:ready");
        assert_eq!(keys.run(&run_id), "{agentcron}:run:r1");
        assert_eq!(keys.all(), "{agentcron}:*");
        assert_eq!(keys.prefix(), "agentcron");
        // A prefix with its own tag keeps it.
        assert_eq!(Keys::clustered("ac:{eu}").ready(), "ac:{eu}:q:ready");
        assert_eq!(Keys::clustered("ac{}").ready(), "{ac{}}:q:ready");
    }

    #[test]
    fn layout_matches_the_documented_table() {
        let keys = Keys::new("agentcron");
        let (run_id, user) = (RunId::parse("r1").unwrap(), UserId::parse("a@b").unwrap());
        let cases = [
            (keys.ready(), "agentcron:q:ready"),
            (keys.processing("w1"), "agentcron:q:processing:w1"),
            (keys.delayed(), "agentcron:q:delayed"),
            (keys.dead(), "agentcron:q:dead"),
            (keys.leases(), "agentcron:q:leases"),
            (keys.clock(), "agentcron:q:clock"),
            (keys.intake(), "agentcron:intake"),
            (keys.intake_processing("w1"), "agentcron:intake:processing:w1"),
            (keys.rejected(), "agentcron:rejected"),
            (keys.workers(), "agentcron:workers"),
            (keys.run(&run_id), "agentcron:run:r1"),
            (keys.runs(), "agentcron:runs"),
            (keys.runs_by_user(&user), "agentcron:runs:user:a@b"),
            (keys.runs_by_state("dead"), "agentcron:runs:state:dead"),
            (keys.user(&user), "agentcron:user:a@b"),
            (keys.user_lock(&user), "agentcron:lock:user:a@b"),
            (keys.transcript(&run_id), "agentcron:transcript:r1"),
            (keys.notice(&user, "gmail"), "agentcron:notice:a@b:gmail"),
            (keys.notice_pattern(), "agentcron:notice:*:*"),
            (keys.notice_prefix(), "agentcron:notice:"),
            (keys.notices(), "agentcron:notices"),
            (keys.notice_index(), "agentcron:notices:open"),
            (keys.setup(), "agentcron:setup"),
            (keys.schedule_users("morning"), "agentcron:users:morning"),
            (keys.ratelimit("sessions"), "agentcron:ratelimit:sessions"),
        ];
        for (got, expect) in cases {
            assert_eq!(got, expect);
        }
    }
}
