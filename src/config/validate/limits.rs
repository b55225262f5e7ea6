//! `[limits]`: the fleet-wide rates, with Anthropic's documented limits as the defaults.
//!
//! Anthropic documents, per organisation, 300 creates a minute (agents, sessions, vaults), 600
//! other agent, session and vault calls a minute, and 60 environment calls a minute (with at
//! most 5 at once; agentcron makes environment calls only in `setup`, one at a time). Scalekit
//! documents no rate limit for minting session tokens, so that rate has no default. This
//! module must not know how the rates are enforced (`crate::ratelimit`).

use super::checker::Checker;
use crate::config::LimitsConfig;
use crate::config::raw::RawLimits;

/// Anthropic's documented limit on creates (agents, sessions, vaults), per minute.
const ANTHROPIC_CREATES_PER_MINUTE: f64 = 300.0;
/// Anthropic's documented limit on every other agent, session and vault call, per minute.
const ANTHROPIC_REQUESTS_PER_MINUTE: f64 = 600.0;
/// Anthropic's documented limit on environment calls, per minute.
const ANTHROPIC_ENVIRONMENTS_PER_MINUTE: f64 = 60.0;
/// The largest rate accepted, per minute: far above any vendor's limit.
const MAX_PER_MINUTE: f64 = 6_000_000.0;
/// The largest rate accepted, per second.
const MAX_PER_SECOND: f64 = 100_000.0;

/// The validated `[limits]`; each key set to 0 means no limit.
pub(super) fn limits(check: &mut Checker<'_>, raw: &RawLimits) -> LimitsConfig {
    let mut per_minute = |key: &str, value: Option<f64>, default: f64| {
        check.rate(&format!("limits.{key}"), value, Some(default), MAX_PER_MINUTE)
    };
    let creates_per_minute =
        per_minute("creates_per_minute", raw.creates_per_minute, ANTHROPIC_CREATES_PER_MINUTE);
    let requests_per_minute =
        per_minute("requests_per_minute", raw.requests_per_minute, ANTHROPIC_REQUESTS_PER_MINUTE);
    let environments_per_minute = per_minute(
        "environments_per_minute",
        raw.environments_per_minute,
        ANTHROPIC_ENVIRONMENTS_PER_MINUTE,
    );
    LimitsConfig {
        creates_per_minute,
        requests_per_minute,
        environments_per_minute,
        sessions_per_second: check.rate(
            "limits.sessions_per_second",
            raw.sessions_per_second,
            None,
            MAX_PER_SECOND,
        ),
        tokens_per_second: check.rate(
            "limits.tokens_per_second",
            raw.tokens_per_second,
            None,
            MAX_PER_SECOND,
        ),
    }
}
