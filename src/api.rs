//! Clients of the two remote APIs: Scalekit AgentKit (REST) and Anthropic Managed Agents
//! (REST + SSE), with one retry policy that classifies every failure.
//!
//! Owns wire types, headers, authentication and retries. It must not know about runs, Redis or
//! schedules: callers pass plain arguments and get typed results or a classified error.
//! Built by the API clients issue; empty until then.
