//! Where agentcron talks to Redis, for `status`: the node (with Sentinel, the master it
//! followed; on a cluster, the seed), the topology (single, sentinel and its master's name,
//! cluster and its masters, with the one holding the deployment's slot and how many hold its
//! shards), the shard count, TLS and the ACL user; never the password. This module must not
//! change anything in Redis.

use crate::config::{Config, RedisConn, cluster_masters};
use crate::keys::Keys;
use crate::records::RecordsError;

/// The `redis` object of the status report.
///
/// # Errors
/// [`RecordsError`] when the cluster's nodes cannot be read.
pub(super) async fn describe(
    config: &Config,
    conn: &mut RedisConn,
    keys: &Keys,
) -> Result<serde_json::Value, RecordsError> {
    let r = &config.redis;
    let user = r.username.as_deref().or(Some(r.url.username()).filter(|u| !u.is_empty()));
    let mut described = serde_json::json!({"host": conn.addr(), "tls": r.is_tls(), "user": user});
    described["topology"] = match &r.sentinel {
        Some(sentinel) => format!("sentinel, master {}", sentinel.master).into(),
        None if conn.is_cluster() => "cluster".into(),
        None => "single".into(),
    };
    if conn.is_cluster() {
        // Routed to the master of the deployment's slot, like every command of a cluster
        // connection: its view of the cluster.
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
        let slot: u16 =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(keys.ready()).query_async(conn).await?;
        let masters = cluster_masters(&nodes);
        let home = masters.iter().find(|m| m.serves(slot)).map(|m| m.addr.clone());
        let addrs: Vec<&str> = masters.iter().map(|m| m.addr.as_str()).collect();
        described["masters"] = serde_json::json!(addrs);
        described["slot"] = slot.into();
        described["slot_master"] = home.into();
        described["shard_masters"] = shard_masters(conn, keys, &masters).await?.into();
    }
    described["shards"] = keys.shards().into();
    Ok(described)
}

/// How many of `masters` hold at least one of the queue's shards.
async fn shard_masters(
    conn: &mut RedisConn,
    keys: &Keys,
    masters: &[crate::config::ClusterMaster],
) -> Result<usize, RecordsError> {
    let mut pipe = redis::pipe();
    for shard in keys.each_shard() {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(shard.ready());
    }
    let slots: Vec<u16> = pipe.query_async(conn).await?;
    Ok(masters.iter().filter(|master| slots.iter().any(|slot| master.serves(*slot))).count())
}
