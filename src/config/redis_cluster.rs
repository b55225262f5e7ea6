//! The connection to a Redis Cluster: `redis`'s cluster client (it learns the slot map from a
//! seed node and follows `MOVED` and `ASK` while slots migrate or a master fails over), with
//! every command sent to the master of its key's slot: the control slot or a shard's
//! (`crate::keys`). Commands that name no key (`TIME`, `INFO`, `SCAN`, a script with no key)
//! go to the home, the control slot's master, which the crate would otherwise send to a random
//! node: the clock, the memory policy and the keys read are then those of a node that holds the
//! data; [`Home::at_node`] points the home at another master (to `SCAN` each). `SCRIPT LOAD`
//! goes to every node, since a script runs where its keys are. A pipeline whose commands name
//! several slots is sent as one pipeline per slot, its replies put back in order (the crate
//! refuses a pipeline across slots); a transaction must stay in one slot.
//!
//! This module must not retry commands: callers do (`crate::transient`).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, RedisResult, Value};

use super::RedisConfig;

/// How long a node may take to answer a command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than that a request may wait before the connection is deemed stuck.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(5);

/// A connection to the cluster, routed to the home slot. Cheap to clone; clones share it.
#[derive(Clone)]
pub(super) struct Home {
    /// Replaced whole when a request waits past [`RESPONSE_TIMEOUT`] and a margin: measured,
    /// the crate's connection can stay stuck in its recovery (a slot refresh during a
    /// migration, a reconnect to the seeds) with every request pending and none failing.
    conn: Arc<RwLock<(u64, ClusterConnection)>>,
    client: ClusterClient,
    /// Where commands that name no key go.
    route: SingleNodeRoutingInfo,
    /// The seed node, for messages.
    pub(super) seed: String,
    /// How long a node may take to answer on this connection.
    response_timeout: Duration,
}

impl Home {
    /// Connects through the seed nodes of `config` and routes to the slot of `key`.
    pub(super) async fn connect(config: &RedisConfig, key: &str) -> Result<Self, String> {
        let client = client(config)?;
        let conn = client
            .get_async_connection_with_config(timeouts(RESPONSE_TIMEOUT))
            .await
            .map_err(|error| config.connect_error(&error))?;
        Ok(Self::new(config, key, client, conn))
    }

    /// [`Home::connect`], connecting on first use.
    pub(super) fn connect_lazy(config: &RedisConfig, key: &str) -> Result<Self, String> {
        let client = client(config)?;
        let conn = client.get_pending_async_connection_with_config(timeouts(RESPONSE_TIMEOUT));
        Ok(Self::new(config, key, client, conn))
    }

    fn new(
        config: &RedisConfig,
        key: &str,
        client: ClusterClient,
        conn: ClusterConnection,
    ) -> Self {
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
        let conn = Arc::new(RwLock::new((0, conn)));
        Self { conn, client, route, seed: config.host(), response_timeout: RESPONSE_TIMEOUT }
    }

    /// A separate connection to the same cluster (for a blocking command), answering within
    /// `response_timeout`.
    pub(super) async fn dedicated(&self, response_timeout: Duration) -> RedisResult<Self> {
        let conn = self.client.get_async_connection_with_config(timeouts(response_timeout)).await?;
        Ok(Self { conn: Arc::new(RwLock::new((0, conn))), response_timeout, ..self.clone() })
    }

    /// The same connection with the home at the node `host:port` (for `SCAN`).
    pub(super) fn at_node(&self, host: String, port: u16) -> Self {
        Self { route: SingleNodeRoutingInfo::ByAddress { host, port }, ..self.clone() }
    }

    /// Where `cmd` goes: its key's slot's master, every node for `SCRIPT LOAD`, else the home.
    fn routing(&self, cmd: &Cmd) -> RoutingInfo {
        match slot_route(cmd) {
            Some(route) => RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
            None if is_script_load(cmd) => RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllNodes,
                Some(ResponsePolicy::AllSucceeded),
            )),
            None => RoutingInfo::SingleNode(self.route.clone()),
        }
    }

    /// The connection in use and its generation.
    fn conn(&self) -> (u64, ClusterConnection) {
        self.conn.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `request` on the connection of `generation`, given up after the response timeout and a
    /// margin; that connection is then replaced once, by the first request to give up on it
    /// (see [`Home::conn`]), and the caller retries like after any timeout.
    async fn watched<T>(
        &self,
        generation: u64,
        request: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let limit = self.response_timeout + WATCHDOG_MARGIN;
        let Ok(res) = tokio::time::timeout(limit, request).await else {
            if self.conn().0 != generation {
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
            }
            let config = timeouts(self.response_timeout);
            let fresh = self.client.get_async_connection_with_config(config).await;
            let mut conn = self.conn.write().unwrap_or_else(PoisonError::into_inner);
            if let (Ok(fresh), true) = (fresh, conn.0 == generation) {
                tracing::warn!(message = "A Redis Cluster request got no answer; reconnected.", seed = %self.seed);
                *conn = (generation + 1, fresh);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        };
        res
    }

    pub(super) async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let routing = self.routing(cmd);
        let (generation, mut conn) = self.conn();
        self.watched(generation, conn.route_command(cmd.clone(), routing)).await
    }

    pub(super) async fn pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let routes: Vec<Option<Route>> = pipeline.cmd_iter().map(slot_route).collect();
        let mut slots: Vec<Route> = Vec::new();
        for route in routes.iter().flatten() {
            if !slots.contains(route) {
                slots.push(*route);
            }
        }
        if slots.len() <= 1 || pipeline.is_transaction() {
            let routing = match slots.first() {
                Some(&route) => SingleNodeRoutingInfo::SpecificNode(route),
                None => self.route.clone(),
            };
            let (generation, mut conn) = self.conn();
            let request = conn.route_pipeline(pipeline.clone(), offset, count, routing);
            return self.watched(generation, request).await;
        }
        self.split_pipeline(pipeline, &routes, &slots).await
    }

    /// Sends `pipeline` as one pipeline per slot (commands that name no key go with each, and
    /// the first slot's reply is kept), and puts the replies back in the pipeline's order.
    async fn split_pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
        routes: &[Option<Route>],
        slots: &[Route],
    ) -> RedisResult<Vec<Value>> {
        let mut replies: Vec<Option<Value>> = vec![None; routes.len()];
        for &slot in slots {
            let mut part = redis::pipe();
            let mut positions = Vec::new();
            for (i, (cmd, route)) in pipeline.cmd_iter().zip(routes).enumerate() {
                if route.is_none_or(|route| route == slot) {
                    part.add_command(cmd.clone());
                    positions.push(i);
                }
            }
            let route = SingleNodeRoutingInfo::SpecificNode(slot);
            let (generation, mut conn) = self.conn();
            let request = conn.route_pipeline(part, 0, positions.len(), route);
            let values = self.watched(generation, request).await?;
            for (i, value) in positions.into_iter().zip(values) {
                replies[i].get_or_insert(value);
            }
        }
        Ok(replies.into_iter().map(|value| value.unwrap_or(Value::Nil)).collect())
    }
}

/// `cmd`'s arguments, its name first.
fn args(cmd: &Cmd) -> impl Iterator<Item = &[u8]> {
    cmd.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    })
}

/// The route to the master of the slot of `cmd`'s (first) key; `None` for a command that names
/// no key. The crate's own routing table is private, so the few shapes agentcron sends are
/// read here: scripts name their keys after the count, subcommands after the subcommand.
fn slot_route(cmd: &Cmd) -> Option<Route> {
    let args: Vec<&[u8]> = args(cmd).collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let n_keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if n_keys == 0 {
                return None;
            }
            args.get(3)?
        }
        b"MEMORY" | b"OBJECT" | b"XINFO" | b"XGROUP" => args.get(2)?,
        b"TIME" | b"INFO" | b"SCAN" | b"PING" | b"SCRIPT" | b"CLUSTER" | b"ROLE" | b"CONFIG"
        | b"DEBUG" | b"CLIENT" | b"DBSIZE" | b"ACL" | b"COMMAND" | b"HELLO" | b"AUTH"
        | b"SELECT" | b"FLUSHALL" | b"FLUSHDB" | b"WAIT" | b"SLOWLOG" | b"LATENCY" | b"MULTI"
        | b"EXEC" | b"DISCARD" | b"ECHO" | b"FUNCTION" | b"READONLY" | b"READWRITE" => {
            return None;
        }
        _ => args.get(1)?,
    };
    Some(Route::with_key(key, SlotAddr::Master))
}

fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = args(cmd);
    let first = args.next().is_some_and(|arg| arg.eq_ignore_ascii_case(b"SCRIPT"));
    first && args.next().is_some_and(|arg| arg.eq_ignore_ascii_case(b"LOAD"))
}

/// The cluster client of `config`: its seeds, credentials and certificates.
fn client(config: &RedisConfig) -> Result<ClusterClient, String> {
    // The URL's node first, then `redis.cluster_nodes`: the client asks each in turn for the
    // slot map until one answers.
    let mut seeds = vec![config.client().map_err(|error| error.to_string())?];
    for node in &config.cluster_nodes {
        seeds.push(config.client_at(node).map_err(|error| error.to_string())?);
    }
    let seeds = seeds.iter().map(|seed| seed.get_connection_info().clone());
    let mut builder = ClusterClientBuilder::new(seeds).retries(3);
    if let Some(certificates) = config.certificates().map_err(|error| error.to_string())? {
        builder = builder.certs(certificates);
    }
    builder.build().map_err(|error| format!("redis cluster at {}: {error}", config.host()))
}

/// A connection's timeouts: connecting, and each answer.
fn timeouts(response_timeout: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(super::redis_conn::CONNECT_TIMEOUT)
        .set_response_timeout(response_timeout)
}

/// A master of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct ClusterMaster {
    /// `host:port`.
    pub addr: String,
    ranges: Vec<(u16, u16)>,
}

impl ClusterMaster {
    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|(first, last)| (*first..=*last).contains(&slot))
    }
}

/// The masters in `CLUSTER NODES` output, in its order: `<id> <ip:port@cport> <flags> …
/// <slot ranges>`. Lines it cannot read are left out.
pub fn cluster_masters(nodes: &str) -> Vec<ClusterMaster> {
    let mut found = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
            continue;
        }
        let addr = addr.split('@').next().unwrap_or(addr).to_owned();
        let ranges = fields.iter().skip(8).filter_map(|range| parse_range(range)).collect();
        found.push(ClusterMaster { addr, ranges });
    }
    found
}

fn parse_range(range: &str) -> Option<(u16, u16)> {
    match range.split_once('-') {
        Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
        // `[slot->-node]` marks a migration in progress, not a slot served.
        None => range.parse().ok().map(|slot| (slot, slot)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_and_their_slots_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922 [10923->-c3]
c3 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 1 1 connected
e5 127.0.0.1:7005@17005 master,fail - 0 1 4 disconnected
";
        let found = cluster_masters(nodes);
        let addrs: Vec<&str> = found.iter().map(|m| m.addr.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]);
        assert!(found[1].serves(6000) && !found[1].serves(10923));
        assert!(found[2].serves(16383));
    }
}
