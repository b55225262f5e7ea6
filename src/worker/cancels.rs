//! The runs in flight in this worker process, by run id, so that an operator's cancel request
//! (which the heartbeat takes from Redis, one command per worker) reaches the run's token
//! instead of every run polling its record. This module must not talk to Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::ids::RunId;

/// The tokens of the runs in flight, shared by the handler service and the heartbeat.
#[derive(Debug, Clone, Default)]
pub(super) struct InFlight(Arc<Mutex<HashMap<RunId, CancellationToken>>>);

impl InFlight {
    /// Makes `run_id` cancellable through `token` until the returned guard drops.
    pub(super) fn enter(&self, run_id: &RunId, token: CancellationToken) -> Registered {
        self.tokens().insert(run_id.clone(), token);
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
                let Some(token) = tokens.get(run_id.as_str()) else { return true };
                tracing::info!(message = "An operator cancelled the run; stopping it.", run_id = %run_id);
                token.cancel();
                false
            })
            .collect()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, CancellationToken>> {
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
        let guard_a = runs.enter(&RunId::parse("a").unwrap(), a.clone());
        let _guard_b = runs.enter(&RunId::parse("b").unwrap(), b.clone());
        let unmatched = runs.cancel(vec!["a".to_owned(), "c".to_owned()]);
        assert_eq!(unmatched, vec!["c".to_owned()]);
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled());
        drop(guard_a);
        assert_eq!(runs.cancel(vec!["a".to_owned()]), vec!["a".to_owned()]);
    }
}
