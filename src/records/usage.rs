//! What agentcron takes: the bytes of its Redis keys, measured a slice at a time by a `SCAN`
//! of its prefix with `MEMORY USAGE` of each key (so a pass over millions of keys never blocks
//! Redis or a worker), and the bytes of its transcript files; both kept in `<prefix>:usage` for
//! `agentcron status`. This module must not decide when to measure.

use crate::config::RedisConn;

use super::{Fields, RecordsError, now_ms};
use crate::keys::Keys;

/// Keys asked about per `SCAN` call.
const SCAN_COUNT: usize = 1_000;

/// A pass of the measuring scan, carried across calls of [`RedisScan::step`].
#[derive(Debug, Default)]
pub struct RedisScan {
    /// The nodes this pass scans (a cluster's masters, one by one), read at its start.
    nodes: Vec<RedisConn>,
    /// Which (node, pattern) the pass is at.
    at: usize,
    cursor: u64,
    bytes: u64,
    n_keys: u64,
}

impl RedisScan {
    /// Measures from where the last call stopped, for at most `budget` `SCAN` calls (each
    /// examines about a thousand keys of the whole keyspace, ours or not). Returns the totals
    /// when this call finished a pass (the next call starts another).
    ///
    /// # Errors
    /// [`RecordsError`] when Redis fails (the pass goes on from the same place next time).
    pub async fn step(
        &mut self,
        conn: &mut RedisConn,
        keys: &Keys,
        budget: usize,
    ) -> Result<Option<(u64, u64)>, RecordsError> {
        if self.nodes.is_empty() {
            self.nodes = conn.data_nodes().await?;
        }
        let patterns = keys.all();
        let places: Vec<(RedisConn, &String)> = self
            .nodes
            .iter()
            .flat_map(|node| patterns.iter().map(move |p| (node.clone(), p)))
            .collect();
        for _ in 0..budget {
            let Some((node, pattern)) = places.get(self.at) else { return Ok(self.finish()) };
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(self.cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut node.clone())
                .await?;
            self.cursor = next;
            let mut pipe = redis::pipe();
            for key in &batch {
                pipe.cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0);
            }
            // A key gone between the scan and the question reads as nil.
            let sizes: Vec<Option<u64>> =
                if batch.is_empty() { Vec::new() } else { pipe.query_async(conn).await? };
            self.bytes += sizes.iter().flatten().sum::<u64>();
            self.n_keys += sizes.iter().flatten().count() as u64;
            if next == 0 {
                self.at += 1;
                if self.at == places.len() {
                    return Ok(self.finish());
                }
            }
        }
        Ok(None)
    }

    /// The pass's totals; the next call starts another.
    fn finish(&mut self) -> Option<(u64, u64)> {
        let totals = (self.bytes, self.n_keys);
        *self = Self::default();
        Some(totals)
    }
}

/// Stores measured figures in `<prefix>:usage` with the time they were taken (`<what>_at_ms`).
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn store(
    conn: &mut RedisConn,
    keys: &Keys,
    what: &str,
    figures: &[(&str, u64)],
) -> Result<(), RecordsError> {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(keys.usage()).arg(format!("{what}_at_ms")).arg(now_ms());
    for (name, value) in figures {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async::<()>(conn).await?;
    Ok(())
}

/// The figures stored by [`store`].
///
/// # Errors
/// [`RecordsError`] when Redis fails.
pub async fn load(conn: &mut RedisConn, keys: &Keys) -> Result<Fields, RecordsError> {
    let fields: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.usage()).query_async(conn).await?;
    Ok(Fields(fields))
}
