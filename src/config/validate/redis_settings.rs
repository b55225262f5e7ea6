//! `[redis]`: the URL, the prefix, the ACL user, the `[redis.tls]` files (readable now, both
//! halves of a client certificate, only with `rediss://`) and `[redis.sentinel]` (both keys,
//! every node a `host:port`) and `redis.cluster` (or a `redis+cluster://` URL, or more seeds
//! in `redis.cluster_nodes`; not with Sentinel or a socket), `redis.shards` and
//! `redis.events_max_len`.

use std::path::PathBuf;

use secrecy::SecretString;

use super::super::raw::RawConfig;
use super::super::{RedisConfig, RedisSentinel, RedisTls};
use std::time::Duration;

use super::checker::Checker;

pub(super) fn redis(check: &mut Checker<'_>, raw: &RawConfig) -> RedisConfig {
    let url = raw.redis.url.as_deref().or(Some("redis://127.0.0.1:6379"));
    let schemes = ["redis", "rediss", "unix", "redis+cluster", "rediss+cluster"];
    let url = check.url("redis.url", url, &schemes, "");
    let prefix = raw.redis.prefix.clone().unwrap_or_else(|| "agentcron".to_owned());
    let valid = prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_:.{}".contains(c));
    if prefix.is_empty() || prefix.len() > 64 || !valid {
        check.problem(
            "redis.prefix",
            format!("expected 1 to 64 characters of A-Z a-z 0-9 - _ : . {{ }}, found {prefix:?}"),
        );
    }
    let r = &raw.redis;
    let tls = RedisTls {
        ca_file: pem_file(check, "redis.tls.ca_file", r.tls_ca_file.as_deref()),
        cert_file: pem_file(check, "redis.tls.cert_file", r.tls_cert_file.as_deref()),
        key_file: pem_file(check, "redis.tls.key_file", r.tls_key_file.as_deref()),
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        let key =
            if tls.cert_file.is_some() { "redis.tls.key_file" } else { "redis.tls.cert_file" };
        check.problem(key, "mutual TLS needs both redis.tls.cert_file and redis.tls.key_file");
    }
    let any_file = tls.ca_file.is_some() || tls.cert_file.is_some();
    if any_file && !url.scheme().starts_with("rediss") {
        check.problem("redis.url", "redis.tls files need a rediss:// URL (TLS)");
    }
    let sentinel = sentinel(check, r.sentinel_master.as_deref(), r.sentinel_nodes.as_deref()).map(
        |sentinel| RedisSentinel {
            username: r.sentinel_username.clone().filter(|s| !s.is_empty()),
            password: r.sentinel_password.clone().filter(|s| !s.is_empty()).map(SecretString::from),
            ..sentinel
        },
    );
    let cluster_nodes = r.cluster_nodes.clone().unwrap_or_default();
    host_ports(check, "redis.cluster_nodes", &cluster_nodes);
    let cluster = r.cluster.unwrap_or(false)
        || url.scheme().ends_with("+cluster")
        || !cluster_nodes.is_empty();
    if cluster && sentinel.is_some() {
        check.problem(
            "redis.cluster",
            "a cluster has no sentinels: give redis.cluster or [redis.sentinel], not both",
        );
    }
    if cluster && url.scheme() == "unix" {
        check.problem(
            "redis.cluster",
            "a cluster is reached over TCP: give a redis:// or rediss:// seed node",
        );
    }
    let shards = shards(check, r.shards, cluster, &prefix);
    let events_max_len = check.int(
        "redis.events_max_len",
        r.events_max_len,
        crate::keys::EVENTS_CAP,
        1..=100_000_000,
    );
    let connect_timeout = check.duration(
        "redis.connect_timeout",
        r.connect_timeout.as_deref(),
        Duration::from_secs(3),
        Duration::from_millis(100)..=Duration::from_secs(600),
    );
    RedisConfig {
        shards,
        events_max_len,
        connect_timeout,
        cluster,
        cluster_nodes,
        sentinel,
        url,
        prefix,
        allow_eviction: r.allow_eviction.unwrap_or(false),
        username: r.username.clone().filter(|s| !s.is_empty()),
        password: r.password.clone().filter(|s| !s.is_empty()).map(SecretString::from),
        tls,
    }
}

/// Shards of the queue (`crate::keys`): on a cluster 16 by default, so that a queue spreads over
/// up to 16 masters; on one node 1, since shards there only cost calls.
fn shards(check: &mut Checker<'_>, value: Option<i64>, cluster: bool, prefix: &str) -> usize {
    let shards = check.int("redis.shards", value, if cluster { 16 } else { 1 }, 1..=256);
    if cluster && shards > 1 && prefix.contains('{') {
        check.problem(
            "redis.shards",
            "a prefix with its own {hash tag} puts every key in one slot: set redis.shards = 1, \
             or take the braces out of redis.prefix",
        );
    }
    shards
}

/// `[redis.sentinel]`: both keys or neither; every node a `host:port`.
fn sentinel(
    check: &mut Checker<'_>,
    master: Option<&str>,
    nodes: Option<&[String]>,
) -> Option<RedisSentinel> {
    let master = master.filter(|m| !m.is_empty());
    let nodes = nodes.filter(|n| !n.is_empty());
    match (master, nodes) {
        (None, None) => None,
        (Some(master), Some(nodes)) => {
            host_ports(check, "redis.sentinel.nodes", nodes);
            Some(RedisSentinel {
                master: master.to_owned(),
                nodes: nodes.to_vec(),
                username: None,
                password: None,
            })
        }
        (Some(_), None) => {
            check.problem("redis.sentinel.nodes", "Sentinel needs the sentinels' host:port");
            None
        }
        (None, Some(_)) => {
            check.problem("redis.sentinel.master", "Sentinel needs the master's name");
            None
        }
    }
}

/// Every node of `key` is a `host:port`.
fn host_ports(check: &mut Checker<'_>, key: &str, nodes: &[String]) {
    for node in nodes {
        let port = node.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok());
        if port.is_none() {
            check.problem(key, format!("expected host:port, found {node:?}"));
        }
    }
}

/// The path of a PEM file named by `key`, which must be readable now.
fn pem_file(check: &mut Checker<'_>, key: &str, path: Option<&str>) -> Option<PathBuf> {
    let path = PathBuf::from(path.filter(|p| !p.is_empty())?);
    if let Err(error) = std::fs::metadata(&path) {
        check.problem(key, format!("cannot read {}: {error}", path.display()));
    }
    Some(path)
}
