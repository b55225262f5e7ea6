//! The worker daemon: concurrency, per-user leases, heartbeats, orphan recovery and graceful
//! shutdown around the run pipeline.
//!
//! Owns process lifecycle. It must not contain run logic (that is `run`) or queue layout (that
//! is `queue`). Built by the queue and worker issue; empty until then.
