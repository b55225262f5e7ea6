//! How to run the demo ([`DemoOptions`]) and how its three runs ended ([`DemoReport`]).
//!
//! It holds plain values and the pass rule. It must not start, drive or stop anything.

use std::path::PathBuf;
use std::time::Duration;

use super::{EXPIRED_USER, USERS};
use crate::ops::report::{Notice, RunSummary};
use crate::outcome::RunState;
use crate::telemetry::Redactor;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The configuration to start from; `None` means `./jobs.toml` when it exists, else the
    /// shipped defaults compiled into the binary.
    pub config: Option<PathBuf>,
    /// `$REDIS_URL`; `None` means [`DEFAULT_URL`](super::DEFAULT_URL). When it does not
    /// answer, a private `redis-server` is started.
    pub redis_url: Option<String>,
    /// Enable the 10-second demo schedule (for [`Demo::follow`](super::Demo::follow)).
    pub follow: bool,
    /// How long the three runs may take. Defaults to 60 s.
    pub deadline: Duration,
    /// Learns the demo's secrets so no output shows them.
    pub redactor: Redactor,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            config: None,
            redis_url: None,
            follow: false,
            deadline: Duration::from_secs(60),
            redactor: Redactor::default(),
        }
    }
}

/// How the three runs ended.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Each user's run, in [`USERS`] order.
    pub runs: Vec<RunSummary>,
    /// Open notices after the runs.
    pub notices: Vec<Notice>,
}

impl DemoReport {
    /// True when alice and bob succeeded and carol ended `needs_auth` with an open notice that
    /// carries an auth link.
    pub fn passed(&self) -> bool {
        let state = |user: &str| self.runs.iter().find(|r| r.user == user).map(|r| r.state.clone());
        let succeeded = |user: &str| state(user).as_deref() == Some(RunState::Succeeded.as_str());
        let carol_notice = self.notices.iter().any(|n| {
            n.user == EXPIRED_USER && n.fields.get("auth_link").is_some_and(|l| !l.is_empty())
        });
        succeeded(USERS[0])
            && succeeded(USERS[1])
            && state(EXPIRED_USER).as_deref() == Some(RunState::NeedsAuth.as_str())
            && carol_notice
    }
}
