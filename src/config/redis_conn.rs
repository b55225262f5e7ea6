//! The one Redis connection type every room uses: a reconnecting, multiplexed connection
//! (`redis`'s `ConnectionManager`) to the Redis `[redis]` names, and with `[redis.sentinel]`
//! one that follows the master. A failover moves the master, and the old one keeps accepting
//! writes for seconds until the sentinels demote it (measured: about 10 s after `SENTINEL
//! FAILOVER`), so a connection must not trust a node because it answers: after an error, and
//! whenever [`RedisConn::follow_master`] is called (the worker's heartbeat does, every beat), it
//! asks the sentinels where the master is (over connections kept open), checks with `ROLE` that
//! the node there is a master when it is another node (after an error, also when it is the
//! same), and moves. Writes that reached the old master in between are lost with it; the run fencing
//! of issue 14 keeps that from doing anything twice.
//!
//! With `redis.cluster`, the connection is `redis_cluster::Home`'s instead.
//!
//! This module must not retry commands: callers do (`crate::transient`).

use std::sync::{Arc, PoisonError, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisFuture, Value};

use super::RedisConfig;

use super::redis_cluster::Home;
use super::redis_sentinel::Sentinels;

/// A connection to the master of the configured Redis (on a cluster, to the master of the
/// deployment's slot). Cheap to clone; clones share it.
#[derive(Clone)]
pub struct RedisConn(Inner);

#[derive(Clone)]
enum Inner {
    Node(NodeConn),
    Cluster(Box<Home>),
}

#[derive(Clone)]
struct NodeConn {
    current: Arc<RwLock<Arc<Node>>>,
    /// With Sentinel: how to find the master again.
    follow: Option<Arc<Follow>>,
}

/// How long connecting to a node may take.
pub(super) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

struct Node {
    /// `host:port` of the node connected to.
    addr: String,
    client: redis::Client,
    manager: ConnectionManager,
}

struct Follow {
    config: RedisConfig,
    manager_config: ConnectionManagerConfig,
    /// One move at a time; the others wait and then use its result.
    resolving: tokio::sync::Mutex<()>,
    /// Where the sentinels last said the master is, shared by every connection of this process
    /// to the same master: when one learns of a failover, all move before their next command.
    master: Arc<RwLock<String>>,
    /// A connection to each sentinel asked, kept: the heartbeat asks every beat, and a new
    /// connection each time cost every worker two connections a beat.
    sentinels: Sentinels,
}

/// The shared master address of `sentinel`, starting at `addr`.
fn shared_master(sentinel: &super::RedisSentinel, addr: &str) -> Arc<RwLock<String>> {
    type Registry = std::sync::Mutex<std::collections::HashMap<String, Arc<RwLock<String>>>>;
    static MASTERS: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    let key = format!("{}@{}", sentinel.master, sentinel.nodes.join(","));
    let mut masters =
        MASTERS.get_or_init(Registry::default).lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(masters.entry(key).or_insert_with(|| Arc::new(RwLock::new(addr.to_owned()))))
}

impl std::fmt::Debug for RedisConn {
    // The client holds the URL, which may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").field("addr", &self.addr()).finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Connects to the master: the URL's host, or with Sentinel the one the sentinels name.
    ///
    /// # Errors
    /// The client's error, in words that name the host ([`RedisConfig::connect_error`]).
    pub async fn connect(
        &self,
        manager_config: ConnectionManagerConfig,
    ) -> Result<RedisConn, String> {
        if self.cluster {
            // Any of the deployment's keys names its slot.
            let home = Home::connect(self, &self.keys().ready()).await?;
            return Ok(RedisConn(Inner::Cluster(Box::new(home))));
        }
        let addr = match &self.sentinel {
            Some(_) => self.master_addr(&Sentinels::default(), None).await?,
            None => self.host(),
        };
        let client = self.client_at(&addr).map_err(|e| e.to_string())?;
        let manager = client
            .get_connection_manager_with_config(manager_config.clone())
            .await
            .map_err(|e| self.connect_error(&e))?;
        Ok(self.conn(Node { addr, client, manager }, manager_config))
    }

    /// A connection that connects on first use (to the URL's host; with Sentinel it moves to
    /// the master at the first error), so that a server can start while Redis is down.
    ///
    /// # Errors
    /// The client could not be built (a TLS file, the URL).
    pub fn connect_lazy(
        &self,
        manager_config: ConnectionManagerConfig,
    ) -> Result<RedisConn, String> {
        if self.cluster {
            let home = Home::connect_lazy(self, &self.keys().ready())?;
            return Ok(RedisConn(Inner::Cluster(Box::new(home))));
        }
        let addr = self.host();
        let client = self.client_at(&addr).map_err(|e| e.to_string())?;
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                .map_err(|e| self.connect_error(&e))?;
        Ok(self.conn(Node { addr, client, manager }, manager_config))
    }

    fn conn(&self, node: Node, manager_config: ConnectionManagerConfig) -> RedisConn {
        let follow = self.sentinel.as_ref().map(|sentinel| {
            Arc::new(Follow {
                config: self.clone(),
                manager_config,
                resolving: tokio::sync::Mutex::new(()),
                master: shared_master(sentinel, &node.addr),
                sentinels: Sentinels::default(),
            })
        });
        RedisConn(Inner::Node(NodeConn { current: Arc::new(RwLock::new(Arc::new(node))), follow }))
    }
}

impl NodeConn {
    fn node(&self) -> Arc<Node> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Moves to the master the sentinels name. `after_error`: the node in use failed, so even
    /// when a sentinel still names it, it must say itself that it is a master (a sentinel
    /// behind the others may name a demoted one); else a sentinel naming it is enough.
    async fn follow_master(&self, after_error: bool) -> Option<String> {
        let follow = self.follow.as_ref()?;
        let known = (!after_error).then(|| self.node().addr.clone());
        let addr = follow.config.master_addr(&follow.sentinels, known.as_deref()).await.ok()?;
        let known = std::mem::replace(
            &mut *follow.master.write().unwrap_or_else(PoisonError::into_inner),
            addr.clone(),
        );
        if known != addr {
            tracing::warn!(message = "Redis master moved (Sentinel failover); following it.", addr);
        }
        self.move_to(follow, &addr).await.then_some(addr)
    }

    /// Connects to `addr` unless already there; true when it moved.
    async fn move_to(&self, follow: &Follow, addr: &str) -> bool {
        if self.node().addr == addr {
            return false;
        }
        let _one = follow.resolving.lock().await;
        if self.node().addr == addr {
            return false;
        }
        let Ok(client) = follow.config.client_at(addr) else { return false };
        let manager_config = follow.manager_config.clone();
        let Ok(manager) = client.get_connection_manager_with_config(manager_config).await else {
            return false;
        };
        let node = Node { addr: addr.to_owned(), client, manager };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(node);
        true
    }

    /// The node's connection, after moving to the master another connection learned of.
    async fn manager(&self) -> ConnectionManager {
        let node = self.node();
        if let Some(follow) = &self.follow {
            // Every command passes here: the address is compared in place, and copied only
            // when the master moved.
            let moved = {
                let master = follow.master.read().unwrap_or_else(PoisonError::into_inner);
                *master != node.addr
            };
            if moved {
                let master = follow.master.read().unwrap_or_else(PoisonError::into_inner).clone();
                self.move_to(follow, &master).await;
                return self.node().manager.clone();
            }
        }
        node.manager.clone()
    }

    /// After an error that may mean the master moved (the node is a replica now, or gone).
    async fn after(&self, error: &redis::RedisError) {
        let moved = error.code() == Some("READONLY") || crate::transient::is_transient(error);
        if moved && self.follow.is_some() {
            self.follow_master(true).await;
        }
    }
}

impl RedisConn {
    /// `host:port` of the node this connection talks to (on a cluster, the seed node).
    pub fn addr(&self) -> String {
        match &self.0 {
            Inner::Node(node) => node.node().addr.clone(),
            Inner::Cluster(home) => home.seed.clone(),
        }
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }

    /// A connection of its own to the same node (on a cluster, to the same slot's master), for
    /// one blocking command at a time: a blocked command would stall every request multiplexed
    /// behind it. It answers within `response_timeout`.
    ///
    /// # Errors
    /// The connection could not be made.
    pub async fn dedicated(
        &self,
        response_timeout: std::time::Duration,
    ) -> redis::RedisResult<Self> {
        match &self.0 {
            Inner::Node(node) => {
                // The node the shared connection talks to: with Sentinel, the master it followed.
                let current = node.node();
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1);
                let manager =
                    current.client.get_connection_manager_with_config(manager_config).await?;
                let node =
                    Node { addr: current.addr.clone(), client: current.client.clone(), manager };
                let current = Arc::new(RwLock::new(Arc::new(node)));
                Ok(Self(Inner::Node(NodeConn { current, follow: None })))
            }
            Inner::Cluster(home) => {
                let home = home.dedicated(response_timeout).await?;
                Ok(Self(Inner::Cluster(Box::new(home))))
            }
        }
    }

    /// One connection per node that holds data, for commands that see one node only (`SCAN`):
    /// this one on a single node; on a cluster, one per master, each sending its keyless
    /// commands there (keyed ones still go to their slot's master).
    ///
    /// # Errors
    /// The cluster's nodes could not be read.
    pub async fn data_nodes(&self) -> redis::RedisResult<Vec<Self>> {
        let Inner::Cluster(home) = &self.0 else { return Ok(vec![self.clone()]) };
        let nodes: String =
            redis::cmd("CLUSTER").arg("NODES").query_async(&mut self.clone()).await?;
        let mut found = Vec::new();
        // A node that never met another (a cluster of one) names itself without its IP:
        // it is the seed's host then.
        let seed_host = home.seed.rsplit_once(':').map_or("", |(host, _)| host);
        for master in super::cluster_masters(&nodes) {
            let Some((host, port)) = master.addr.rsplit_once(':') else { continue };
            let Ok(port) = port.parse() else { continue };
            let host = if host.is_empty() { seed_host } else { host };
            found.push(Self(Inner::Cluster(Box::new(home.at_node(host.to_owned(), port)))));
        }
        Ok(found)
    }

    /// With Sentinel, asks where the master is (over connections to the sentinels kept open)
    /// and moves there when it moved, checking with `ROLE` that the new one is a master;
    /// returns the new address when it did. Without Sentinel, nothing (a cluster client
    /// follows failovers by itself, from the `MOVED` answers).
    pub async fn follow_master(&self) -> Option<String> {
        match &self.0 {
            Inner::Node(node) => node.follow_master(false).await,
            Inner::Cluster(_) => None,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let node = match &mut self.0 {
            Inner::Node(node) => node,
            Inner::Cluster(home) => return Box::pin(home.command(cmd)),
        };
        Box::pin(async move {
            let mut manager = node.manager().await;
            let res = manager.req_packed_command(cmd).await;
            if let Err(error) = &res {
                node.after(error).await;
            }
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let node = match &mut self.0 {
            Inner::Node(node) => node,
            Inner::Cluster(home) => return Box::pin(home.pipeline(pipeline, offset, count)),
        };
        Box::pin(async move {
            let mut manager = node.manager().await;
            let res = manager.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &res {
                node.after(error).await;
            }
            res
        })
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Node(node) => node.node().manager.get_db(),
            Inner::Cluster(_) => 0,
        }
    }
}
