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
//! | `<p>:lock:waiters:<u>` | zset (capped, expiring) | runs deferred because the user was busy, woken when the lease is released; score = when they asked, unix ms |
//! | `<p>:transcript:<id>` | stream | transcript events |
//! | `<p>:events` | stream (capped, `MAXLEN ~`) | run lifecycle events, one per transition, written by the script that makes it; one stream per shard (below) |
//! | `<p>:notice:<u>:<conn>` | hash | one open or resolved notice |
//! | `<p>:notices` | stream | notice events for follow-up consumers |
//! | `<p>:notices:open` | zset | `<u>:<conn>` of every open notice; score = first seen, unix ms |
//! | `<p>:setup` | hash | ids created by `agentcron setup` |
//! | `<p>:users:<schedule>` | set | users of a schedule managed with redis-cli |
//! | `<p>:profile:<u>` | hash | the user's profile: `timezone`, `paused_until`, template values |
//! | `<p>:ratelimit:<name>` | hash | a fleet-wide token bucket (`tokens`, `ts_us`) |
//! | `<p>:schedule:<name>` | hash | the schedule's last tick: `last_tick` (unix s), `users`, `invalid`, `enqueued`, `updated_at_ms` |
//! | `<p>:schedule:<name>:last` | hash | user → run id of the user's latest run of the schedule (overlap check) |
//! | `<p>:tokens:<YYYY-MM-DD>` | hash (expiring) | tokens and estimated cost of the runs created that day, by user, by schedule and in total (`agentcron usage`) |
//! | `<p>:q:bell` | list (capped) | shard numbers where runs were just queued, for idle workers of a sharded queue |
//! | `<p>:q:layout` | hash | `shards`: the shard count the queue was created with |
//!
//! On Redis Cluster (`Keys::clustered`) every key starts with the prefix as a hash tag,
//! `{<p>}:q:ready`, so that each Lua script touches one slot, on one master. A prefix that
//! already holds a tag is kept as it is.
//!
//! # Shards
//!
//! With `redis.shards = N` above 1 the queue is N complete queues, one per shard, each in its
//! own slot so that a cluster spreads them over its masters. A run lives in shard
//! `fnv1a(run id) mod N` ([`Keys::shard_of`]), and everything that is the run's or the shard's
//! queue is under the shard's base: `q:*`, `run:<id>`, the `runs*` indexes, the transcript
//! and the lifecycle events (`<p>:events` for shard 0, `<p>:<s>:events` for shard `s`: the
//! scripts that change a run's state write its event, and a script touches one slot only).
//! Shard 0 is under the prefix itself, so one shard is exactly the layout above; shard `s` is
//! under `<p>:<s>` (on a cluster `{<p>:<s>}`). What belongs to the deployment, not to a run
//! (intake, rejected, workers, users' locks and vault maps, notices, setup, schedules,
//! rate-limit buckets, usage), is only under the prefix: the control slot, shard 0's.
//! The key patterns are then `<p>:*` on one node, and `{<p>}:*` and `{<p>:*}:*` on a cluster.
//!
//! This module must not talk to Redis.

use std::borrow::Cow;

use crate::ids::{RunId, UserId};

/// Builds keys under one prefix (`[redis] prefix`, default `agentcron`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    /// What this handle's queue keys start with: the prefix (on a cluster its hash tag), or a
    /// shard's base.
    base: String,
    /// Shards of the queue: 1 unless `redis.shards` says more.
    shards: usize,
    /// Whether shard bases are hash tags.
    cluster: bool,
    /// The control slot's base (the prefix, or its tag): the deployment's own keys.
    control: String,
    /// Approximate length each shard's events stream is trimmed to (`XADD … MAXLEN ~`).
    events_cap: usize,
}

/// Entries each events stream keeps by default (`redis.events_max_len`), about 100,000.
pub const EVENTS_CAP: usize = 100_000;

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self {
            base: prefix.clone(),
            control: prefix.clone(),
            prefix,
            shards: 1,
            cluster: false,
            events_cap: EVENTS_CAP,
        }
    }

    /// Keys under `prefix` on Redis Cluster: `{<prefix>}:…`, one slot for all (unless the
    /// prefix already holds a `{tag}`, which then decides the slot).
    pub fn clustered(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let tagged = prefix.split_once('{').is_some_and(|(_, rest)| rest.find('}') > Some(0));
        let base = if tagged { prefix.clone() } else { format!("{{{prefix}}}") };
        Self {
            control: base.clone(),
            base,
            prefix,
            shards: 1,
            cluster: true,
            events_cap: EVENTS_CAP,
        }
    }

    /// The same layout with each events stream trimmed to about `cap` entries (at least 1).
    #[must_use]
    pub fn events_capped(mut self, cap: usize) -> Self {
        self.events_cap = cap.max(1);
        self
    }

    /// Approximate length each shard's events stream is trimmed to.
    pub fn events_cap(&self) -> usize {
        self.events_cap
    }

    /// The same layout with the queue in `shards` shards (at least 1).
    #[must_use]
    pub fn sharded(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// What this handle's keys start with (before their `:`): the prefix, on a cluster its
    /// hash tag, or for a shard's handle the shard's base.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How many shards the queue has.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard run `id` lives in: FNV-1a of the id, modulo the shard count. Stable across
    /// processes and versions, since every producer and worker must agree on it.
    pub fn shard_of(&self, id: &RunId) -> usize {
        if self.shards == 1 {
            return 0;
        }
        let hash = id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        usize::try_from(hash % self.shards as u64).unwrap_or(0)
    }

    /// The handle of shard `shard`: its queue keys (`ready()`, `run_prefix()`, …) are the
    /// shard's. Shard 0's are the control slot's. This handle itself when it already is that
    /// shard's (always, with one shard: the fetch and finish of every job ask for it).
    #[must_use]
    pub fn shard(&self, shard: usize) -> Cow<'_, Self> {
        let base = self.shard_base(shard);
        if base == self.base {
            return Cow::Borrowed(self);
        }
        Cow::Owned(Self { base: base.into_owned(), ..self.clone() })
    }

    /// The handle of the shard run `id` lives in.
    #[must_use]
    pub fn for_run(&self, id: &RunId) -> Cow<'_, Self> {
        self.shard(self.shard_of(id))
    }

    /// Every shard's handle, shard 0 first.
    pub fn each_shard(&self) -> impl Iterator<Item = Self> + '_ {
        (0..self.shards).map(|shard| self.shard(shard).into_owned())
    }

    fn shard_base(&self, shard: usize) -> Cow<'_, str> {
        match (shard, self.cluster) {
            (0, _) => Cow::Borrowed(&self.control),
            (_, true) => Cow::Owned(format!("{{{}:{shard}}}", self.prefix)),
            (_, false) => Cow::Owned(format!("{}:{shard}", self.prefix)),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key of this handle's queue (a shard's, or shard 0's).
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.base)
    }

    /// A key of the deployment, in the control slot whatever the handle's shard.
    fn control_key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.control)
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
        self.control_key("intake")
    }

    /// `<p>:intake:processing:<worker>`.
    pub fn intake_processing(&self, worker: &str) -> String {
        format!("{}{worker}", self.intake_processing_prefix())
    }

    /// `<p>:intake:processing:`, for the reaper script.
    pub(crate) fn intake_processing_prefix(&self) -> String {
        self.control_key("intake:processing:")
    }

    /// `<p>:rejected`.
    pub fn rejected(&self) -> String {
        self.control_key("rejected")
    }

    /// `<p>:workers`.
    pub fn workers(&self) -> String {
        self.control_key("workers")
    }

    /// `<p>:run:<id>`.
    pub fn run(&self, id: &RunId) -> String {
        format!("{}:run:{id}", self.shard_base(self.shard_of(id)))
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
        self.control_key(&format!("user:{user}"))
    }

    /// `<p>:transcript:`, for the retention script, which appends run ids.
    pub(crate) fn transcript_prefix(&self) -> String {
        self.key("transcript:")
    }

    /// `<p>:transcripts:repair`: run id → path of a transcript file to rebuild from its stream
    /// (its writes failed, and so did the rebuild at the attempt's end).
    pub fn transcript_repairs(&self) -> String {
        self.control_key("transcripts:repair")
    }

    /// `<p>:webhooks:outbox` (`<p>:<s>:webhooks:outbox` for shard `s`): the run webhook's
    /// messages not yet delivered or given up, `<state>:<run id>` scored by when a worker may
    /// take one over (`queue::outbox`).
    pub fn webhook_outbox(&self) -> String {
        self.key("webhooks:outbox")
    }

    /// `<p>:events` (`<p>:<s>:events` for shard `s`): this handle's shard's lifecycle events.
    pub fn events(&self) -> String {
        self.key("events")
    }

    /// Every shard's events stream, shard 0 (`<p>:events`) first: what a consumer reads.
    pub fn all_events(&self) -> Vec<String> {
        self.each_shard().map(|shard| shard.events()).collect()
    }

    /// `<p>:transcript:<id>`.
    pub fn transcript(&self, run_id: &RunId) -> String {
        format!("{}:transcript:{run_id}", self.shard_base(self.shard_of(run_id)))
    }

    /// `<p>:*`: the `SCAN MATCH` patterns of every key under the prefix (for removing a demo's
    /// or a benchmark's private prefix, and measuring what the prefix takes; never to remove the
    /// operator's keys). On a cluster with shards, also `{<p>:*}:*`, the shards' keys.
    pub fn all(&self) -> Vec<String> {
        let mut patterns = vec![self.control_key("*")];
        if self.cluster && self.shards > 1 {
            patterns.push(format!("{{{}:*}}:*", self.prefix));
        }
        patterns
    }

    /// `<p>:q:bell`: shards where producers just queued runs (a capped list of shard numbers),
    /// which idle workers of a sharded queue wait on; a hint only, so nothing is lost if it is
    /// missed: idle workers also look at every shard once per wait.
    pub fn bell(&self) -> String {
        self.control_key("q:bell")
    }

    /// `<p>:q:layout`: `shards`, the shard count the queue was created with; a process
    /// configured with another refuses to start, since it would not find the runs.
    pub fn layout(&self) -> String {
        self.control_key("q:layout")
    }

    /// `<u>:<conn>`: a member of `<p>:notices:open`.
    pub fn notice_member(user: &str, connection: &str) -> String {
        format!("{user}:{connection}")
    }
}

mod control;
mod lock;
#[cfg(test)]
mod tests;
