//! A local simulator of the Scalekit AgentKit and Anthropic Managed Agents APIs, for tests,
//! the demo and benchmarks.
//!
//! Architecture invariant: it has its own wire structs and never imports `crate::api` or
//! `crate::run`, so a client bug cannot be copied into the fake. Built by the simulator
//! issue; empty until then.
