//! The setup ids a worker runs with: replaceable while it runs (after `setup` recreated what
//! was missing, by hand or by the worker itself), with a note of the object a run found
//! missing. A std lock: every access is a copy of an `Arc` or a flag, never across an `.await`.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::Setup;

/// What a run found missing, and when the worker last looked whether it is back.
#[derive(Debug, Clone, Copy)]
struct Missing {
    object: &'static str,
    checked: Instant,
}

#[derive(Debug)]
struct Inner {
    ids: RwLock<Arc<Setup>>,
    missing: Mutex<Option<Missing>>,
}

/// The worker's setup ids. Cheap to clone; clones share.
#[derive(Debug, Clone)]
pub struct Current(Arc<Inner>);

impl Current {
    /// Starts with `ids`.
    pub fn new(ids: Setup) -> Self {
        Self(Arc::new(Inner { ids: RwLock::new(Arc::new(ids)), missing: Mutex::new(None) }))
    }

    /// No ids yet: setup has not stored any. Runs wait until it has.
    pub fn unset() -> Self {
        let none = Setup {
            mcp_config_id: String::new(),
            mcp_server_url: String::new(),
            agent_id: String::new(),
            environment_id: String::new(),
        };
        let current = Self::new(none);
        current.set_missing("setup");
        current
    }

    /// The ids now.
    pub fn get(&self) -> Arc<Setup> {
        self.0.ids.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs with `ids` from now on, and forgets what was missing.
    pub fn replace(&self, ids: Setup) {
        *self.0.ids.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ids);
        *self.lock_missing() = None;
    }

    /// Notes that a run found `object` missing (just now checked).
    pub fn set_missing(&self, object: &'static str) {
        *self.lock_missing() = Some(Missing { object, checked: Instant::now() });
    }

    /// The object found missing, if any.
    pub fn missing(&self) -> Option<&'static str> {
        self.lock_missing().map(|missing| missing.object)
    }

    /// Whether `every` has passed since the missing object was last looked for; if so, the
    /// look is taken now (so one caller of many does it).
    pub fn due_for_check(&self, every: Duration) -> bool {
        let mut missing = self.lock_missing();
        match missing.as_mut() {
            Some(missing) if missing.checked.elapsed() >= every => {
                missing.checked = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn lock_missing(&self) -> std::sync::MutexGuard<'_, Option<Missing>> {
        self.0.missing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(agent: &str) -> Setup {
        Setup {
            mcp_config_id: "cfg".into(),
            mcp_server_url: "https://mcp".into(),
            agent_id: agent.into(),
            environment_id: "env".into(),
        }
    }

    #[test]
    fn replacing_the_ids_forgets_what_was_missing() {
        let current = Current::new(ids("agent_1"));
        let clone = current.clone();
        current.set_missing("agent");
        assert_eq!(clone.missing(), Some("agent"));
        assert!(!clone.due_for_check(Duration::from_secs(60)), "just checked");
        assert!(clone.due_for_check(Duration::ZERO));
        clone.replace(ids("agent_2"));
        assert_eq!(current.get().agent_id, "agent_2");
        assert_eq!(current.missing(), None);
        assert!(!current.due_for_check(Duration::ZERO), "nothing to look for");
    }
}
