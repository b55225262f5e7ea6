//! Where agentcron talks to Redis, for `status`: the node (with Sentinel, the master it
//! followed; on a cluster, the seed), the topology (single, sentinel and its master's name,
//! cluster and its masters, with the one holding the deployment's slot), TLS and the ACL user;
//! never the password. This module must not change anything in Redis.

use crate::config::{Config, RedisConn};
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
        let masters = masters(&nodes);
        let home = masters.iter().find(|m| m.serves(slot)).map(|m| m.addr.clone());
        let addrs: Vec<&str> = masters.iter().map(|m| m.addr.as_str()).collect();
        described["masters"] = serde_json::json!(addrs);
        described["slot"] = slot.into();
        described["slot_master"] = home.into();
    }
    Ok(described)
}

/// A master of `CLUSTER NODES`.
struct Master {
    addr: String,
    ranges: Vec<(u16, u16)>,
}

impl Master {
    fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|(first, last)| (*first..=*last).contains(&slot))
    }
}

/// The masters in `CLUSTER NODES` output, in its order: `<id> <ip:port@cport> <flags> …
/// <slot ranges>`. Lines it cannot read are left out.
fn masters(nodes: &str) -> Vec<Master> {
    let mut found = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
            continue;
        }
        let addr = addr.split('@').next().unwrap_or(addr).to_owned();
        let ranges = fields.iter().skip(8).filter_map(|range| parse_range(range)).collect();
        found.push(Master { addr, ranges });
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
        let found = masters(nodes);
        let addrs: Vec<&str> = found.iter().map(|m| m.addr.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]);
        assert!(found[1].serves(6000) && !found[1].serves(10923));
        assert!(found[2].serves(16383));
    }
}
