//! The job queue on Redis (our own apalis backend), the redis-cli intake list and the rejected
//! list, retries with delay, and dead letters.
//!
//! Owns every queue key and the delivery guarantees. It must not execute runs or call the
//! remote APIs. Built by the queue and worker issue; empty until then.
