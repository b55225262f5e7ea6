//! The ops servers' checks and defaults: the worker's and the scheduler's binds, the token,
//! the `Host` names they answer, whether `/metrics` needs the token, and the connection cap.
//! Split from `validate.rs` only to keep each file readable; the same rules apply.

use std::net::SocketAddr;

use secrecy::SecretString;

use super::checker::Checker;
use crate::config::OpsConfig;
use crate::config::raw::RawConfig;

pub(super) fn ops(check: &mut Checker<'_>, raw: &RawConfig) -> OpsConfig {
    let o = &raw.ops;
    let token = o.token.clone().filter(|s| !s.is_empty()).map(SecretString::from);
    let bind = bind_or_off(check, "ops.bind", o.bind.as_deref(), "127.0.0.1:9187");
    let scheduler_bind =
        bind_or_off(check, "ops.scheduler_bind", o.scheduler_bind.as_deref(), "127.0.0.1:9188");
    for (key, addr) in [("ops.bind", bind), ("ops.scheduler_bind", scheduler_bind)] {
        if let Some(addr) = addr.filter(|addr| !addr.ip().is_loopback() && token.is_none()) {
            check.problem(
                "ops.token",
                format!("required when {key} ({addr}) is not a loopback address"),
            );
        }
    }
    let hosts = o.hosts.clone().unwrap_or_default();
    for host in &hosts {
        let bad = host.is_empty() || host.contains(['/', ' ', '@']) || host.len() > 253;
        if bad {
            check.problem(
                "ops.hosts",
                format!("{host:?} is not a host name (such as \"ops.example.com\")"),
            );
        }
    }
    OpsConfig {
        bind,
        token,
        scheduler_bind,
        hosts: hosts.into_iter().map(|host| host.to_ascii_lowercase()).collect(),
        open_metrics: o.open_metrics.unwrap_or(false),
        max_connections: check.int("ops.max_connections", o.max_connections, 256, 1..=100_000),
    }
}

/// An address, or `None` for `"off"`.
fn bind_or_off(
    check: &mut Checker<'_>,
    key: &str,
    text: Option<&str>,
    default: &str,
) -> Option<SocketAddr> {
    let text = text.unwrap_or(default);
    if text.trim().eq_ignore_ascii_case("off") {
        return None;
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let message =
                format!("expected an address such as \"{default}\", or \"off\", found {text:?}");
            check.problem(key, message);
            None
        }
    }
}
