//! `agentcron authorize`: the guide's authorize phase, for every user named at once. Each user
//! is followed by a task of its own, which mints one link per pending connection (opening one
//! notice with it) and keeps it until it expires; this module prints each user's connections
//! as soon as they are known and, with `--wait`, every change after, until all are active or
//! the timeout passes (exit [`exit::TIMED_OUT`], naming what is still pending).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::setup::{Remote, remote};
use super::{AuthorizeArgs, exit};
use crate::api::scalekit;
use crate::config::RedisConn;
use crate::ids::{RunId, UserId};
use crate::keys::Keys;
use crate::records::notice;
use crate::setup;
use crate::telemetry::Redactor;

/// How often `--wait` asks Scalekit about a user's connections.
const POLL: Duration = Duration::from_secs(2);
/// How long a link is kept when Scalekit gives no expiry with it.
const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// A link is replaced this long before it expires (or at half its life, if sooner), so that a
/// user never gets one about to lapse.
const LINK_MARGIN: Duration = Duration::from_secs(30);
/// Users polled at the same moment: all users are followed at once, but a long list must not
/// turn into a burst of requests.
const PASSES_AT_ONCE: usize = 16;

/// What every user's task shares.
struct Shared {
    scalekit: scalekit::Client,
    mcp_config_id: String,
    /// The configured connections, in the configuration's order.
    connections: Vec<String>,
    conn: RedisConn,
    keys: Keys,
    wait: bool,
    /// Bounds the passes in flight to [`PASSES_AT_ONCE`].
    passes: Semaphore,
}

/// One connection of one user as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Shown {
    connection: String,
    /// As Scalekit reports it (`ACTIVE`, `EXPIRED`, …), `none` without an account.
    status: String,
    /// Where the user authorizes; none when the connection is active.
    auth_link: Option<String>,
}

/// A user's connections, sent to the printer whenever they change.
#[derive(Debug)]
struct Snapshot {
    user: UserId,
    connections: Vec<Shown>,
}

/// A link minted for a pending connection, kept until `replace_at`.
struct Link {
    url: String,
    replace_at: Instant,
}

/// `agentcron authorize`.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &AuthorizeArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let Remote { config, scalekit, mut conn, keys, .. } =
        remote(flag, &args.budget, redactor).await?;
    let ids = setup::load(&mut conn, &keys).await?;
    let connections: Vec<String> =
        config.scalekit.connections.iter().map(|connection| connection.name.clone()).collect();
    let shared = Arc::new(Shared {
        scalekit,
        mcp_config_id: ids.mcp_config_id,
        connections: connections.clone(),
        conn,
        keys,
        wait: args.wait,
        passes: Semaphore::new(PASSES_AT_ONCE),
    });
    let mut users: Vec<UserId> = Vec::new();
    for user in &args.users {
        if !users.contains(user) {
            users.push(user.clone());
        }
    }
    let (sender, mut snapshots) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for user in &users {
        tasks.spawn(follow(Arc::clone(&shared), user.clone(), sender.clone()));
    }
    // The tasks hold the only senders: the channel closes when the last one ends.
    drop(sender);
    let mut printer = Printer { json: args.json, connections, users, shown: HashMap::new() };
    let deadline = tokio::time::sleep(args.timeout);
    tokio::pin!(deadline);
    loop {
        // Biased: a snapshot already sent is printed before its task's end is looked at.
        tokio::select! {
            biased;
            Some(snapshot) = snapshots.recv() => printer.show(snapshot)?,
            joined = tasks.join_next() => match joined {
                // Every user is done: all active with --wait, shown once without.
                None => break,
                Some(joined) => {
                    if let Err(error) = joined.context("a user's task failed")? {
                        printer.drain(&mut snapshots)?;
                        return Err(error);
                    }
                }
            },
            // Only --wait has a deadline; without it each task ends after one pass.
            () = &mut deadline, if args.wait => {
                printer.drain(&mut snapshots)?;
                tasks.abort_all();
                let waited = humantime::format_duration(args.timeout);
                let pending = printer.pending().join(", ");
                eprintln!("timed out after {waited}; still pending: {pending}");
                return Ok(ExitCode::from(exit::TIMED_OUT));
            }
        }
    }
    // A task may have sent its last snapshot between the two branches' polls.
    printer.drain(&mut snapshots)?;
    Ok(ExitCode::from(exit::OK))
}

/// Follows one user: a pass now and, with `--wait`, every [`POLL`] until all its connections
/// are active. Sends a snapshot whenever what is shown changes (a link, or a connection turned
/// active); a status that changes while the connection stays pending is not news. The first
/// pass failing fails the command; a later one is tried again at the next poll.
async fn follow(
    shared: Arc<Shared>,
    user: UserId,
    snapshots: mpsc::UnboundedSender<Snapshot>,
) -> anyhow::Result<()> {
    let mut links = HashMap::new();
    let mut last: Option<Vec<(String, Option<String>)>> = None;
    loop {
        let res = {
            let _permit = shared.passes.acquire().await.context("the pass limiter closed")?;
            pass(&shared, &user, &mut links).await.with_context(|| format!("authorize {user}"))
        };
        let connections = match res {
            Ok(connections) => connections,
            // Once the user has links, a poll that fails (within the call's budget) is tried
            // again at the next one: the user may be half-way through authorizing.
            Err(error) if last.is_some() => {
                let error = format!("{error:#}");
                tracing::warn!(
                    message = "Polling a user's connections failed; retrying.",
                    %user,
                    error,
                );
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let all_active = connections.iter().all(|shown| shown.auth_link.is_none());
        let seen: Vec<_> =
            connections.iter().map(|s| (s.connection.clone(), s.auth_link.clone())).collect();
        if last.as_ref() != Some(&seen) {
            last = Some(seen);
            // The printer gone means the command is ending: nothing left to tell.
            if snapshots.send(Snapshot { user: user.clone(), connections }).is_err() {
                return Ok(());
            }
        }
        if !shared.wait || all_active {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One look at the user's connections: a link for each pending one, minted only when it has
/// none yet or its link is about to expire.
async fn pass(
    shared: &Shared,
    user: &UserId,
    links: &mut HashMap<String, Link>,
) -> anyhow::Result<Vec<Shown>> {
    let states = shared
        .scalekit
        .list_connected_accounts(&shared.mcp_config_id, user.as_str(), false)
        .await?;
    let mut connections = Vec::with_capacity(shared.connections.len());
    for name in &shared.connections {
        let state = states.iter().find(|s| s.connection_name.eq_ignore_ascii_case(name));
        let status = state
            .and_then(|s| s.connected_account_status.clone())
            .unwrap_or_else(|| "none".to_owned());
        if state.is_some_and(scalekit::ConnectionState::is_active) {
            links.remove(name);
            connections.push(Shown { connection: name.clone(), status, auth_link: None });
            continue;
        }
        let kept = links.get(name).filter(|link| link.replace_at > Instant::now());
        let url = match kept {
            Some(link) => link.url.clone(),
            None => {
                let link = mint(shared, user, name, &status).await?;
                let url = link.url.clone();
                links.insert(name.clone(), link);
                url
            }
        };
        connections.push(Shown { connection: name.clone(), status, auth_link: Some(url) });
    }
    Ok(connections)
}

/// Mints a link for (user, connection) and opens its notice with it (a refresh when one was
/// open already): once per link, so once per pending connection until the link expires.
async fn mint(shared: &Shared, user: &UserId, name: &str, status: &str) -> anyhow::Result<Link> {
    let minted = shared.scalekit.magic_link(user.as_str(), name).await?;
    let mut conn = shared.conn.clone();
    let seen = (user, name, status, minted.link.as_str());
    notice::open(&mut conn, &shared.keys, seen, &RunId::trusted("authorize")).await?;
    let replace_at = Instant::now() + keep_for(minted.expiry.as_deref(), chrono::Utc::now());
    Ok(Link { url: minted.link, replace_at })
}

/// How long a link that expires at `expiry` (RFC 3339, as Scalekit sends it) is kept from
/// `now`: until [`LINK_MARGIN`] before it expires, or half its life if that is sooner; a link
/// with no readable expiry, or one already past (which says more about the clocks than about
/// the link), is kept as if it had [`DEFAULT_LINK_LIFETIME`].
fn keep_for(expiry: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let lifetime = expiry
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .and_then(|at| (at.to_utc() - now).to_std().ok())
        .unwrap_or(DEFAULT_LINK_LIFETIME);
    lifetime.saturating_sub(LINK_MARGIN.min(lifetime / 2))
}

/// Prints snapshots as they come, and knows what is still pending.
struct Printer {
    json: bool,
    /// The configured connections.
    connections: Vec<String>,
    /// The users, in the order given.
    users: Vec<UserId>,
    /// What was last shown of each user.
    shown: HashMap<UserId, Vec<Shown>>,
}

impl Printer {
    fn show(&mut self, snapshot: Snapshot) -> anyhow::Result<()> {
        let Snapshot { user, connections } = snapshot;
        if self.json {
            let all_active = connections.iter().all(|shown| shown.auth_link.is_none());
            let line = serde_json::json!({
                "user": user, "all_active": all_active, "connections": connections,
            });
            println!("{}", serde_json::to_string(&line)?);
            self.shown.insert(user, connections);
            return Ok(());
        }
        let before = self.shown.get(&user);
        for shown in &connections {
            let earlier = before.and_then(|b| b.iter().find(|e| e.connection == shown.connection));
            let name = &shown.connection;
            match (&shown.auth_link, earlier) {
                (_, Some(earlier)) if earlier.auth_link == shown.auth_link => {}
                (None, None) => println!("{user}  ✓ {name} — {}", shown.status),
                (None, Some(_)) => println!("{user}  ✓ {name} — {} (authorized)", shown.status),
                (Some(link), _) => {
                    println!("{user}  ✗ {name} — {}; needs auth: {link}", shown.status);
                }
            }
        }
        let changed = before.is_some();
        self.shown.insert(user, connections);
        if changed {
            let pending = self.pending();
            if pending.is_empty() {
                println!("all connections active");
            } else {
                println!("still pending: {}", pending.join(", "));
            }
        }
        Ok(())
    }

    /// Prints the snapshots already sent.
    fn drain(&mut self, snapshots: &mut mpsc::UnboundedReceiver<Snapshot>) -> anyhow::Result<()> {
        while let Ok(snapshot) = snapshots.try_recv() {
            self.show(snapshot)?;
        }
        Ok(())
    }

    /// `user/connection` for every connection not known to be active, in the order given.
    fn pending(&self) -> Vec<String> {
        let mut pending = Vec::new();
        for user in &self.users {
            let shown = self.shown.get(user);
            for name in &self.connections {
                let active = shown
                    .and_then(|s| s.iter().find(|c| &c.connection == name))
                    .is_some_and(|c| c.auth_link.is_none());
                if !active {
                    pending.push(format!("{user}/{name}"));
                }
            }
        }
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_kept_until_shortly_before_it_expires() {
        let now = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap().to_utc();
        let check = |expiry: Option<&str>, expect: u64| {
            assert_eq!(keep_for(expiry, now), Duration::from_secs(expect), "{expiry:?}");
        };
        check(Some("2027-01-01T00:10:00Z"), 570);
        check(Some("2027-01-01T00:00:40Z"), 20);
        check(None, 270);
        check(Some("soon"), 270);
        check(Some("2026-12-31T23:59:00Z"), 270);
    }
}
