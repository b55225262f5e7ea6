//! Operations: the CLI reports (`status`, `runs`, `run`, `transcript`, `notices`), the HTTP
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/api/*`) and the dashboard.
//!
//! Owns presentation of state that lives elsewhere. It must not change run state except
//! through the documented operator commands. Built by the ops issue; empty until then.
