//! The run pipeline: one agent session for one user, as a state machine whose phases
//! (checking, minting, vault, session, message, streaming) are persisted before each next one.
//!
//! Owns the order of the phases and crash-safe resumption. It must not parse wire formats
//! (that is `api`) or choose when a run happens (that is `schedule` and `queue`). Built by the
//! run pipeline issue; empty until then.
