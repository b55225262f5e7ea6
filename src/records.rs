//! Records in Redis: run records, transcripts (also as JSONL files), notices and the per-user
//! vault map.
//!
//! Owns the record layout operators read with `redis-cli`. It must not decide run outcomes.
//! Built by the run pipeline issue; empty until then.
