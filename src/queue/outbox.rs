//! The run webhook's outbox, so that a message is delivered at least once even when its worker
//! dies mid-delivery: the finish script that records a run's state also adds
//! `<state>:<run id>` to its shard's `<p>:webhooks:outbox` when the state is one of
//! `webhook.events`, in the same atomic step, scored by when another worker may take the
//! message over (its claim: the longest a delivery can take). The delivering worker removes it
//! once the message is delivered or given up; any worker's sweep takes over the messages
//! whose claim ran out, renewing the claim as it takes them.
//!
//! Bounded: a message leaves the outbox when delivered or given up, and each worker has at
//! most `worker::webhooks::MAX_DELIVERIES` under way. This module must not deliver anything.

use std::time::Duration;

use super::{Queue, Result};
use crate::ids::RunId;

/// What the finish script needs to add a run's message to the outbox.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    /// The states with a message, each between spaces (` succeeded dead `); empty: none.
    pub(crate) states: String,
    /// How long a worker holds a message before another may take it over, in ms.
    pub(crate) claim_ms: u64,
}

impl Outbox {
    /// The outbox of a webhook sent for `states`, each message held `claim` by its worker.
    pub fn new(states: &[String], claim: Duration) -> Self {
        let states =
            if states.is_empty() { String::new() } else { format!(" {} ", states.join(" ")) };
        Self { states, claim_ms: u64::try_from(claim.as_millis()).unwrap_or(u64::MAX) }
    }
}

/// KEYS[1]: a shard's outbox. ARGV: the claim in ms, the most to take. Takes the messages
/// whose claim ran out, oldest first, and claims them anew.
static TAKE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local t = redis.call('TIME') \
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
         local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2])) \
         for _, m in ipairs(due) do \
           redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[1])), m) \
         end \
         return due",
    )
});

impl Queue {
    /// Takes over at most `max` messages, over every shard, whose claim ran out (their worker
    /// died or stalled), claiming each for `claim`: `(run, state)`.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn outbox_take(&self, claim: Duration, max: usize) -> Result<Vec<(RunId, String)>> {
        let mut taken = Vec::new();
        for keys in self.keys.each_shard() {
            if taken.len() >= max {
                break;
            }
            let mut invocation = TAKE.key(keys.webhook_outbox());
            invocation.arg(claim.as_millis().to_string()).arg(max - taken.len());
            let members: Vec<String> = invocation.invoke_async(&mut self.connection()).await?;
            taken.extend(members.into_iter().filter_map(|member| {
                let (state, run) = member.split_once(':')?;
                Some((RunId::trusted(run), state.to_owned()))
            }));
        }
        Ok(taken)
    }

    /// Removes the message for `run_id` in `state`: it was delivered or given up.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn outbox_done(&self, run_id: &RunId, state: &str) -> Result<()> {
        let keys = self.keys.for_run(run_id);
        let () = redis::cmd("ZREM")
            .arg(keys.webhook_outbox())
            .arg(format!("{state}:{run_id}"))
            .query_async(&mut self.connection())
            .await?;
        Ok(())
    }
}
