//! A Redis Cluster of a test's own: three masters (`redis-server --cluster-enabled yes` on
//! spare ports, joined by `redis-cli --cluster create`), killed at the end. Slots move between
//! them a few keys at a time, as `redis-cli --cluster reshard` moves each slot.

use std::process::Command;
use std::time::Duration;

use super::poll::poll_until;
use super::private_redis::PrivateRedis;

const REDIS_CLI: &str = "/usr/bin/redis-cli";

pub struct ClusterGroup {
    pub nodes: Vec<PrivateRedis>,
    /// Replicas added with [`ClusterGroup::add_replica_of`].
    pub replicas: Vec<PrivateRedis>,
}

impl ClusterGroup {
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(PrivateRedis::start_cluster_node().await);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let out = Command::new(REDIS_CLI)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let group = Self { nodes, replicas: Vec::new() };
        poll_until("every node sees the cluster ok", Duration::from_secs(30), || async {
            for node in &group.nodes {
                if !Self::cli(node, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                    return false;
                }
            }
            true
        })
        .await;
        group
    }

    /// Adds a replica of the master that serves `key`'s slot and waits until it is in sync;
    /// returns its index in `replicas`.
    pub async fn add_replica_of(&mut self, key: &str) -> usize {
        let (master_id, master_port) = self.owner_of(key);
        let replica = PrivateRedis::start_cluster_node().await;
        let out = Command::new(REDIS_CLI)
            .args(["--cluster", "add-node"])
            .arg(format!("127.0.0.1:{}", replica.port()))
            .arg(format!("127.0.0.1:{master_port}"))
            .args(["--cluster-slave", "--cluster-master-id", &master_id])
            .output()
            .unwrap();
        assert!(out.status.success(), "add-node: {}", String::from_utf8_lossy(&out.stdout));
        poll_until("the replica in sync", Duration::from_secs(30), || async {
            let info = Self::cli(&replica, &["INFO", "replication"]);
            info.contains("master_link_status:up")
        })
        .await;
        self.replicas.push(replica);
        self.replicas.len() - 1
    }

    /// `CLUSTER FAILOVER` on replica `i`: it catches up with its master, then takes its slots
    /// over, as a managed service's maintenance failover does. Waits until it serves them.
    pub async fn failover_to(&self, i: usize, key: &str) {
        let replica = &self.replicas[i];
        assert_eq!(Self::cli(replica, &["CLUSTER", "FAILOVER"]).trim(), "OK");
        poll_until("the replica promoted", Duration::from_secs(30), || async {
            self.owner_of(key).1 == replica.port()
        })
        .await;
    }

    /// The seed URL a worker is given.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port())
    }

    /// `redis-cli -c -p <node> args…`, its output.
    pub fn cli(node: &PrivateRedis, args: &[&str]) -> String {
        let out = Command::new(REDIS_CLI)
            .args(["-c", "-p", &node.port().to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The node id and port of the master that serves `key`'s slot.
    pub fn owner_of(&self, key: &str) -> (String, u16) {
        let slot = Self::cli(&self.nodes[0], &["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot.trim().parse().unwrap();
        let nodes = Self::cli(&self.nodes[0], &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    (a.parse().unwrap_or(u16::MAX)..=b.parse().unwrap_or(0)).contains(&slot)
                }
                None => range.parse::<u16>() == Ok(slot),
            });
            if serves {
                let port = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return (fields[0].to_owned(), port);
            }
        }
        panic!("no master serves slot {slot}: {nodes}");
    }

    /// Moves `key`'s slot to the master at `to` the way `redis-cli --cluster reshard` moves
    /// each slot (`CLUSTER SETSLOT … IMPORTING` / `MIGRATING`, `MIGRATE` of its keys a batch at
    /// a time, then `SETSLOT … NODE` on every master), `batch` keys per `MIGRATE`, so that
    /// clients meet `ASK` and `TRYAGAIN` for as long as it takes. Returns how many keys moved.
    pub fn migrate_slot_of(&self, key: &str, to: &PrivateRedis, batch: usize) -> usize {
        let (from_id, from_port) = self.owner_of(key);
        let from = self.nodes.iter().find(|node| node.port() == from_port).unwrap();
        let to_id = Self::cli(to, &["CLUSTER", "MYID"]).trim().to_owned();
        let slot = Self::cli(from, &["CLUSTER", "KEYSLOT", key]).trim().to_owned();
        let plain = |node: &PrivateRedis, args: &[&str]| {
            let out = Command::new(REDIS_CLI)
                .args(["-p", &node.port().to_string()])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        plain(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        plain(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        let mut moved = 0;
        loop {
            let keys = plain(from, &["CLUSTER", "GETKEYSINSLOT", &slot, &batch.to_string()]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.port().to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(&keys);
            let out = plain(from, &args);
            // NOKEY: every key of the batch was deleted or expired since GETKEYSINSLOT listed
            // it (a run's user lease, say, released meanwhile); the next listing goes on.
            if out.trim() == "NOKEY" {
                continue;
            }
            assert!(out.trim() == "OK", "MIGRATE: {out}");
            moved += keys.len();
        }
        for node in &self.nodes {
            plain(node, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        moved
    }
}
