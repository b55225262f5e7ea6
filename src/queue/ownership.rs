//! This worker process's identity on the queue: the id that names its processing lists and its
//! lease, and the cancellation token of the runs it holds under that id.
//!
//! When the reaper takes a worker's runs (its lease expired: a long pause, or Redis was
//! unreachable longer than the lease), the worker must stop those runs at once, because another
//! worker now owns them. It then continues under a new id (`<base>~<generation>`), so that it
//! never mixes runs it took under the old id with the remains of the reaped list.
//! This module must not talk to Redis.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// The current owner id and the token its runs are cancelled with.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    /// The id in `<p>:q:leases`, `<p>:workers` and the processing list keys.
    pub(crate) id: Arc<str>,
    /// Cancelled when this id loses its lease (or the process stops its runs at shutdown).
    pub(crate) token: CancellationToken,
    pub(crate) generation: u64,
}

/// Shared by the fetch loop, the heartbeat and every in-flight run of one worker process.
#[derive(Debug)]
pub(crate) struct Lease {
    base: String,
    // A std Mutex: held only to clone or swap the owner, never across an await.
    owner: Mutex<Owner>,
    root: CancellationToken,
}

impl Lease {
    /// Starts at generation 0 with id `base`; every owner token is a child of `root`.
    pub(crate) fn new(base: String, root: CancellationToken) -> Self {
        let owner =
            Owner { id: Arc::from(base.as_str()), token: root.child_token(), generation: 0 };
        Self { base, owner: Mutex::new(owner), root }
    }

    /// The current owner.
    pub(crate) fn current(&self) -> Owner {
        self.owner.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Cancels the runs of `lost` and moves to a new id, unless that already happened (the
    /// heartbeat and the fetch loop may both notice the loss). Returns the current owner.
    pub(crate) fn rotate(&self, lost: &Owner) -> Owner {
        let mut owner = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        if owner.generation == lost.generation {
            owner.token.cancel();
            let generation = owner.generation + 1;
            let id = Arc::from(format!("{}~{generation}", self.base).as_str());
            *owner = Owner { id, token: self.root.child_token(), generation };
        }
        owner.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_cancels_the_old_runs_once() {
        let lease = Lease::new("w".to_owned(), CancellationToken::new());
        let first = lease.current();
        let second = lease.rotate(&first);
        assert!(first.token.is_cancelled());
        assert_eq!(&*second.id, "w~1");
        let again = lease.rotate(&first);
        assert_eq!(again.generation, 1, "a second report of the same loss does not rotate again");
        assert!(!again.token.is_cancelled());
    }
}
