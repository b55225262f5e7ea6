//! The deployment's own keys, outside any run's shard: notices, setup, schedules and their
//! users, profiles, rate-limit buckets and measurements. Every one is in the control slot
//! (shard 0's), whatever shard the handle is for; the table is in `keys.rs`.

use super::Keys;
use crate::ids::UserId;

impl Keys {
    /// `<p>:notice:<u>:<conn>`.
    pub fn notice(&self, user: &UserId, connection: &str) -> String {
        self.control_key(&format!("notice:{user}:{connection}"))
    }

    /// `<p>:notice:*:*`, the pattern that matches every notice (for `SCAN`).
    pub fn notice_pattern(&self) -> String {
        self.control_key("notice:*:*")
    }

    /// `<p>:notice:`, which prefixes the `<u>:<conn>` of every notice key.
    pub fn notice_prefix(&self) -> String {
        self.control_key("notice:")
    }

    /// `<p>:notices` (stream of notice events).
    pub fn notices(&self) -> String {
        self.control_key("notices")
    }

    /// `<p>:notices:open`: zset of `<u>:<conn>` for open notices, scored by first seen (ms).
    pub fn notice_index(&self) -> String {
        self.control_key("notices:open")
    }

    /// `<p>:setup`.
    pub fn setup(&self) -> String {
        self.control_key("setup")
    }

    /// `<p>:setup:missing`: the setup object a run found missing (JSON), until `setup` stores
    /// the ids again.
    pub fn setup_missing(&self) -> String {
        self.control_key("setup:missing")
    }

    /// `<p>:setup:lock`: held by the one worker recreating missing setup objects.
    pub fn setup_lock(&self) -> String {
        self.control_key("setup:lock")
    }

    /// `<p>:users:<schedule>`.
    pub fn schedule_users(&self, schedule: &str) -> String {
        self.control_key(&format!("users:{schedule}"))
    }

    /// `<p>:ratelimit:<name>`.
    pub fn ratelimit(&self, name: &str) -> String {
        self.control_key(&format!("ratelimit:{name}"))
    }

    /// `<p>:schedule:<name>`: tick statistics of a schedule.
    pub fn schedule_stats(&self, schedule: &str) -> String {
        self.control_key(&format!("schedule:{schedule}"))
    }

    /// `<p>:schedule:<name>:last`: user → run id of the user's latest run of the schedule.
    pub fn schedule_last(&self, schedule: &str) -> String {
        self.control_key(&format!("schedule:{schedule}:last"))
    }

    /// `<p>:bench:baseline`: a benchmark's scratch key for the idle baseline.
    pub fn bench_baseline(&self) -> String {
        self.control_key("bench:baseline")
    }

    /// `<p>:usage`: what agentcron's keys and transcript files take, as the workers last
    /// measured (`redis_bytes`, `redis_keys`, `redis_at_ms`, `transcript_bytes`,
    /// `transcripts_at_ms`).
    pub fn usage(&self) -> String {
        self.control_key("usage")
    }

    /// `<p>:tokens:<YYYY-MM-DD>`: what runs created that day (UTC) used, as fields
    /// `total:<kind>`, `user:<u>:<kind>` and `schedule:<s>:<kind>` (`kind`: `input`, `output`,
    /// `cache_write`, `cache_read`, `cost_micro_usd`, `runs`), expiring `retention.usage` after
    /// its last change.
    pub fn tokens_day(&self, day: &str) -> String {
        self.control_key(&format!("tokens:{day}"))
    }

    /// `<p>:profile:<u>`: the user's profile (`timezone`, `paused_until`, and named values
    /// for prompt templates), one hash per user, written by `agentcron users set` or
    /// `redis-cli HSET`.
    pub fn profile(&self, user: &UserId) -> String {
        self.control_key(&format!("profile:{user}"))
    }

    /// `<p>:profile:*`, the pattern that matches every profile (for `SCAN`).
    pub fn profile_pattern(&self) -> String {
        self.control_key("profile:*")
    }
}
