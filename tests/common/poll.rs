//! The one poll-until helper of the integration tests: check an observable state (a Redis
//! key, a log line, a child process) until it holds, and fail with what was last seen when a
//! deadline passes. Tests wait with this instead of fixed sleeps.

use std::fmt::{self, Debug};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// How long between two checks.
const INTERVAL: Duration = Duration::from_millis(50);

/// What one check of [`poll_until`] found: done (with a value), or not yet (with the state
/// observed, shown when the poll times out).
pub trait Polled {
    /// What the poll returns once the check holds.
    type Done;
    /// The state observed while waiting.
    type Seen: Debug;
    /// `Ok(done)`, or `Err(the observed state)` while waiting (`None`: nothing worth showing).
    fn into_result(self) -> Result<Self::Done, Option<Self::Seen>>;
}

impl Polled for bool {
    type Done = ();
    type Seen = ();
    fn into_result(self) -> Result<(), Option<()>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Polled for Option<T> {
    type Done = T;
    type Seen = ();
    fn into_result(self) -> Result<T, Option<()>> {
        self.ok_or(None)
    }
}

/// `Err(state)` means "not yet"; the last `state` is shown when the poll times out.
impl<T, S: Debug> Polled for Result<T, S> {
    type Done = T;
    type Seen = S;
    fn into_result(self) -> Result<T, Option<S>> {
        self.map_err(Some)
    }
}

/// Runs `check` every 50 ms until it reports done (`true`, `Some(value)` or `Ok(value)`) and
/// returns the value; panics with "timed out after `limit`: `what`" and the last observed state
/// (the `Err` of a `Result` check) when `limit` passes first.
pub async fn poll_until<P, F, Fut>(what: &str, limit: Duration, check: F) -> P::Done
where
    P: Polled,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    poll_until_else(what, limit, check, || async { String::new() }).await
}

/// [`poll_until`], adding what `diagnose` gathers (stuck runs, a Redis dump) to the failure
/// message on a timeout.
pub async fn poll_until_else<P, F, Fut, D, DFut>(
    what: &str,
    limit: Duration,
    mut check: F,
    diagnose: D,
) -> P::Done
where
    P: Polled,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
    D: FnOnce() -> DFut,
    DFut: Future<Output = String>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await.into_result() {
            Ok(done) => return done,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            let diagnosis = diagnose().await;
            match last {
                Some(last) => {
                    panic!("timed out after {limit:?}: {what}; last seen: {last:?}\n{diagnosis}")
                }
                None => panic!("timed out after {limit:?}: {what}\n{diagnosis}"),
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Text shown as it is in a timeout message (a log, say), not quoted and escaped.
pub struct Text(pub String);

impl Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{}", self.0)
    }
}

/// A state observed together with a log file that is read only if the poll times out.
pub struct WithLog<'a, S>(pub S, pub &'a Path);

impl<S: Debug> Debug for WithLog<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = std::fs::read_to_string(self.1).unwrap_or_default();
        write!(f, "{:?}; log {}:\n{log}", self.0, self.1.display())
    }
}
