//! The connection to a Redis Cluster: `redis`'s cluster client (it learns the slot map from a
//! seed node and follows `MOVED` and `ASK` while slots migrate or a master fails over), with
//! every command sent to the master of one slot, the deployment's home: every key carries the
//! prefix as its hash tag (`crate::keys`), so they are all in that slot. Commands that name no
//! key (`TIME`, `INFO`, `SCAN`, a script with no key) go there too, which the crate would
//! otherwise send to a random node: the clock, the memory policy and the keys read are then
//! those of the node that holds the data.
//!
//! This module must not retry commands: callers do (`crate::transient`).

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisResult, Value};

use super::RedisConfig;

/// How long a node may take to answer a command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the cluster, routed to the home slot. Cheap to clone; clones share it.
#[derive(Clone)]
pub(super) struct Home {
    conn: ClusterConnection,
    client: ClusterClient,
    route: Route,
    /// The seed node, for messages.
    pub(super) seed: String,
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
        let route = Route::with_key(key, SlotAddr::Master);
        Self { conn, client, route, seed: config.host() }
    }

    /// A separate connection to the same cluster (for a blocking command), answering within
    /// `response_timeout`.
    pub(super) async fn dedicated(&self, response_timeout: Duration) -> RedisResult<Self> {
        let conn = self.client.get_async_connection_with_config(timeouts(response_timeout)).await?;
        Ok(Self { conn, ..self.clone() })
    }

    fn routing(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::SpecificNode(self.route)
    }

    pub(super) async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let routing = RoutingInfo::SingleNode(self.routing());
        self.conn.route_command(cmd.clone(), routing).await
    }

    pub(super) async fn pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let routing = self.routing();
        self.conn.route_pipeline(pipeline.clone(), offset, count, routing).await
    }
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
