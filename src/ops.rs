//! Operations: the CLI reports (`status`, `runs`, `run`, `transcript`, `notices`), the HTTP
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/api/*`), the dashboard, and the names of
//! every metric.
//!
//! Owns presentation of state that lives elsewhere. It must not change run state except
//! through the documented operator commands. The reports and endpoints are built by the ops
//! issue; the metric names exist now because the API clients record them.

pub mod http;
pub mod report;
