//! The runs in flight in this worker process, by run id, with their users: an operator's
//! cancel request (which the heartbeat takes from Redis, one command per worker) reaches the
//! run's token instead of every run polling its record, the heartbeat renews the per-user
//! lease of every run here, and the reconciler compares them with the processing list. This
//! module must not talk to Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::ids::{RunId, UserId};

/// One run in flight.
#[derive(Debug)]
struct Entry {
    token: CancellationToken,
    user: Option<UserId>,
}

/// The tokens of the runs in flight, shared by the handler service and the heartbeat.
#[derive(Debug, Clone, Default)]
pub(super) struct InFlight(Arc<Mutex<HashMap<RunId, Entry>>>);

impl InFlight {
    /// Makes `run_id` (of `user`, when its record named one) cancellable through `token` until
    /// the returned guard drops.
    pub(super) fn enter(
        &self,
        run_id: &RunId,
        user: Option<UserId>,
        token: CancellationToken,
    ) -> Registered {
        self.tokens().insert(run_id.clone(), Entry { token, user });
        Registered { runs: self.clone(), run_id: run_id.clone() }
    }

    /// Whether `run_id` is in flight here.
    pub(super) fn contains(&self, run_id: &RunId) -> bool {
        self.tokens().contains_key(run_id)
    }

    /// Cancels the runs among `run_ids` that are in flight here; returns the others.
    pub(super) fn cancel(&self, run_ids: Vec<String>) -> Vec<String> {
        let tokens = self.tokens();
        run_ids
            .into_iter()
            .filter(|run_id| {
                let Some(entry) = tokens.get(run_id.as_str()) else { return true };
                tracing::info!(message = "An operator cancelled the run; stopping it.", run_id = %run_id);
                entry.token.cancel();
                false
            })
            .collect()
    }

    /// (user, run) of every run in flight whose user is known: whose per-user lease to renew.
    pub(super) fn holders(&self) -> Vec<(UserId, RunId)> {
        let tokens = self.tokens();
        tokens
            .iter()
            .filter_map(|(run_id, entry)| Some((entry.user.clone()?, run_id.clone())))
            .collect()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Entry>> {
        // A panic while the map was locked cannot leave it inconsistent: each use is one call.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a run cancellable; see [`InFlight::enter`].
#[derive(Debug)]
pub(super) struct Registered {
    runs: InFlight,
    run_id: RunId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.runs.tokens().remove(&self.run_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_only_registered_runs_and_forgets_them_when_they_end() {
        let runs = InFlight::default();
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        let user = UserId::parse("u@x").unwrap();
        let guard_a = runs.enter(&RunId::parse("a").unwrap(), Some(user.clone()), a.clone());
        let _guard_b = runs.enter(&RunId::parse("b").unwrap(), None, b.clone());
        assert_eq!(runs.holders(), vec![(user, RunId::parse("a").unwrap())], "b has no user");
        let unmatched = runs.cancel(vec!["a".to_owned(), "c".to_owned()]);
        assert_eq!(unmatched, vec!["c".to_owned()]);
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled());
        drop(guard_a);
        assert_eq!(runs.cancel(vec!["a".to_owned()]), vec!["a".to_owned()]);
    }
}
