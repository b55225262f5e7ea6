//! Turns the layered raw configuration into a typed [`Config`], collecting every problem.
//!
//! The compiled defaults live here, next to the range each value must fall in, and so do the
//! checks across keys (a heartbeat well inside the lease, a shutdown grace shorter than a run);
//! the primitive checks are in `validate/checker.rs`, the schedules' in
//! `validate/schedules.rs`. This module must not read or parse files or read the process
//! environment itself: `config.rs` hands it the layers read from the parsed document (for
//! lines) and an [`Env`] snapshot (for the secrets).

mod checker;
mod limits;
mod redis_settings;
mod schedules;
mod servers;
mod settings;

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use self::checker::Checker;
use super::env::{ANTHROPIC_API_KEY, SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET};
use super::layers::Layers;
use super::raw::{RawAgent, RawConfig};
use super::*;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The guide's agent definition, used when `[anthropic.agent]` leaves a field out.
const GUIDE_SYSTEM_PROMPT: &str = "You are an email and calendar assistant. When invoked, you will:\n\
1. Fetch the single most recent unread email from Gmail.\n\
2. Summarize it in 2-3 sentences.\n\
3. Create a Google Calendar event titled 'Action Required: <email subject>' \
with your summary as the description.";
const GUIDE_GMAIL_TOOLS: [&str; 1] = ["gmail_fetch_mails"];
const GUIDE_CALENDAR_TOOLS: [&str; 5] = [
    "googlecalendar_list_calendars",
    "googlecalendar_list_events",
    "googlecalendar_get_event_by_id",
    "googlecalendar_create_event",
    "googlecalendar_update_event",
];

/// Validates the layers read; every problem found, theirs and these, is reported, the file's
/// in line order, then the environment's.
pub(super) fn validate(path: &Path, layers: Layers<'_>, env: &Env, needs: Needs) -> Result<Config> {
    let Layers { document, raw, problems, env_origins, .. } = layers;
    let mut check = Checker::new(path, &document, &env_origins, problems);
    let raw = &raw;
    let config = Config {
        source: path.to_path_buf(),
        redis: redis_settings::redis(&mut check, raw),
        worker: worker(&mut check, raw),
        scalekit: scalekit(&mut check, raw, needs),
        anthropic: anthropic(&mut check, raw),
        http: http(&mut check, raw),
        retry: retry(&mut check, raw),
        limits: limits::limits(&mut check, &raw.limits),
        transcripts: settings::transcripts(&mut check, raw),
        notices: settings::notices(&mut check, raw),
        webhook: settings::webhook(&mut check, raw),
        ops: servers::ops(&mut check, raw),
        setup: SetupConfig { auto: raw.setup.auto.unwrap_or(false) },
        retention: settings::retention(&mut check, raw),
        budget: settings::budget(&mut check, raw),
        prices: settings::prices(&mut check, raw),
        schedules: schedules::schedules(&mut check, &raw.schedule),
        secrets: Secrets {
            scalekit_client_id: env.get(SCALEKIT_CLIENT_ID).map(str::to_owned),
            scalekit_client_secret: env.get(SCALEKIT_CLIENT_SECRET).map(SecretString::from),
            anthropic_api_key: env.get(ANTHROPIC_API_KEY).map(SecretString::from),
        },
    };
    let mut problems = check.into_problems();
    problems.sort_by_key(|problem| match &problem.origin {
        Origin::File { line: Some(line), .. } => (0, *line),
        Origin::File { line: None, .. } => (1, 0),
        Origin::Env(_) => (2, 0),
    });
    if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
}

fn worker(check: &mut Checker<'_>, raw: &RawConfig) -> WorkerConfig {
    let w = &raw.worker;
    let worker = WorkerConfig {
        concurrency: check.int("worker.concurrency", w.concurrency, 200, 1..=100_000),
        run_timeout: check.duration(
            "worker.run_timeout",
            w.run_timeout.as_deref(),
            15 * MINUTE,
            SECOND..=DAY,
        ),
        max_attempts: check.int("worker.max_attempts", w.max_attempts, 5, 1..=100),
        shutdown_grace: check.duration(
            "worker.shutdown_grace",
            w.shutdown_grace.as_deref(),
            30 * SECOND,
            Duration::ZERO..=HOUR,
        ),
        heartbeat: check.duration(
            "worker.heartbeat",
            w.heartbeat.as_deref(),
            5 * SECOND,
            Duration::from_millis(100)..=MINUTE,
        ),
        lease: check.duration("worker.lease", w.lease.as_deref(), 30 * SECOND, SECOND..=HOUR),
        finish_linger: check.duration(
            "worker.finish_linger",
            w.finish_linger.as_deref(),
            Duration::ZERO,
            Duration::ZERO..=MINUTE,
        ),
    };
    worker_cross_checks(check, &worker);
    worker
}

/// Between keys, each checked only when both keys are valid alone.
fn worker_cross_checks(check: &mut Checker<'_>, worker: &WorkerConfig) {
    let shown = |duration: Duration| humantime::format_duration(duration).to_string();
    // A worker's lease must survive a lost heartbeat or two, and a run's per-user lease is
    // renewed every third of the lease (`worker/maintenance.rs`).
    if worker.heartbeat * 3 >= worker.lease
        && check.are_valid(&["worker.heartbeat", "worker.lease"])
    {
        // Shown to the millisecond: 20s / 3 = 6s 666ms.
        let third = u64::try_from((worker.lease / 3).as_millis()).unwrap_or(u64::MAX);
        let third = Duration::from_millis(third);
        let message = format!(
            "must be shorter than a third of worker.lease ({} / 3 = {}), found {}",
            shown(worker.lease),
            shown(third),
            shown(worker.heartbeat)
        );
        check.problem("worker.heartbeat", message);
    }
    // A drain that outlasts the longest run only delays the shutdown.
    let keys = ["worker.shutdown_grace", "worker.run_timeout"];
    if worker.shutdown_grace >= worker.run_timeout && check.are_valid(&keys) {
        let message = format!(
            "must be shorter than worker.run_timeout ({}), found {}",
            shown(worker.run_timeout),
            shown(worker.shutdown_grace)
        );
        check.problem("worker.shutdown_grace", message);
    }
}

fn scalekit(check: &mut Checker<'_>, raw: &RawConfig, needs: Needs) -> ScalekitConfig {
    let s = &raw.scalekit;
    let env_url = match s.env_url.as_deref() {
        // A command that only reaches Redis never calls Scalekit.
        None if needs == Needs::Redis => Checker::unused_url(),
        env_url => check.url(
            "scalekit.env_url",
            env_url,
            &["https", "http"],
            "set it in jobs.toml or SCALEKIT_ENV_URL",
        ),
    };
    let token_expiry =
        check.duration("scalekit.token_expiry", s.token_expiry.as_deref(), HOUR, MINUTE..=DAY);
    let token_refresh_margin = check.duration(
        "scalekit.token_refresh_margin",
        s.token_refresh_margin.as_deref(),
        5 * MINUTE,
        Duration::ZERO..=HOUR,
    );
    if token_refresh_margin >= token_expiry {
        check
            .problem("scalekit.token_refresh_margin", "must be shorter than scalekit.token_expiry");
    }
    let connections = match &s.connections {
        Some(connections) => connections
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if c.name.is_none() {
                    let message = "missing: every [[scalekit.connections]] needs a name";
                    check.problem(&format!("scalekit.connections[{i}].name"), message);
                }
                let tools = c.tools.clone().unwrap_or_default();
                Connection { name: c.name.clone().unwrap_or_default(), tools }
            })
            .collect(),
        None => vec![
            guide_connection("gmail", &GUIDE_GMAIL_TOOLS),
            guide_connection("googlecalendar", &GUIDE_CALENDAR_TOOLS),
        ],
    };
    if connections.is_empty() {
        check.problem("scalekit.connections", "expected at least one connection");
    }
    for (i, connection) in connections.iter().enumerate() {
        let key = format!("scalekit.connections[{i}].name");
        if check.are_valid(&[&key]) {
            check.name(&key, &connection.name, 64);
        }
        if connection.tools.is_empty() {
            check.problem(
                &format!("scalekit.connections[{i}].tools"),
                "expected at least one tool name",
            );
        }
    }
    let mcp_config_name =
        s.mcp_config_name.clone().unwrap_or_else(|| "email-calendar-demo".to_owned());
    // Scalekit's rule for config names: 1–100 of `a-z 0-9 _ -` (its `McpConfig.name` field).
    let valid = mcp_config_name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if mcp_config_name.is_empty() || mcp_config_name.len() > 100 || !valid {
        check.problem("scalekit.mcp_config_name", format!("expected 1 to 100 characters of a-z 0-9 _ - (Scalekit's rule), found {mcp_config_name:?}"));
    }
    ScalekitConfig { env_url, mcp_config_name, token_expiry, token_refresh_margin, connections }
}

fn guide_connection(name: &str, tools: &[&str]) -> Connection {
    Connection {
        name: name.to_owned(),
        tools: tools.iter().map(|tool| (*tool).to_owned()).collect(),
    }
}

fn anthropic(check: &mut Checker<'_>, raw: &RawConfig) -> AnthropicConfig {
    let a = &raw.anthropic;
    let base_url = a.base_url.as_deref().or(Some("https://api.anthropic.com"));
    AnthropicConfig {
        base_url: check.url("anthropic.base_url", base_url, &["https", "http"], ""),
        environment_id: a.environment_id.clone().filter(|id| !id.is_empty()),
        environment_name: a.environment_name.clone().unwrap_or_else(|| "agentcron".to_owned()),
        requires_action: check.choice(
            "anthropic.requires_action",
            a.requires_action.as_deref(),
            &[("auto_confirm", ActionPolicy::AutoConfirm), ("deny", ActionPolicy::Deny)],
        ),
        archive_sessions: a.archive_sessions.unwrap_or(false),
        agent: agent(check, &a.agent),
    }
}

fn agent(check: &mut Checker<'_>, raw: &RawAgent) -> AgentConfig {
    let text =
        |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_owned());
    let agent = AgentConfig {
        name: text(&raw.name, "Email Meeting Manager"),
        model: text(&raw.model, "claude-haiku-4-5-20251001"),
        system: text(&raw.system, GUIDE_SYSTEM_PROMPT),
        mcp_server_name: text(&raw.mcp_server_name, "email-calendar-mcp"),
        toolsets: raw.toolsets.clone().unwrap_or_else(|| vec!["agent_toolset_20260401".to_owned()]),
        permission_policy: check.choice(
            "anthropic.agent.permission_policy",
            raw.permission_policy.as_deref(),
            &[
                ("always_allow", PermissionPolicy::AlwaysAllow),
                ("always_ask", PermissionPolicy::AlwaysAsk),
            ],
        ),
    };
    for (key, value) in [("name", &agent.name), ("model", &agent.model), ("system", &agent.system)]
    {
        if value.trim().is_empty() {
            check.problem(&format!("anthropic.agent.{key}"), "must not be empty");
        }
    }
    check.name("anthropic.agent.mcp_server_name", &agent.mcp_server_name, 64);
    agent
}

fn http(check: &mut Checker<'_>, raw: &RawConfig) -> HttpConfig {
    let h = &raw.http;
    HttpConfig {
        connect_timeout: check.duration(
            "http.connect_timeout",
            h.connect_timeout.as_deref(),
            10 * SECOND,
            Duration::from_millis(100)..=10 * MINUTE,
        ),
        request_timeout: check.duration(
            "http.request_timeout",
            h.request_timeout.as_deref(),
            MINUTE,
            Duration::from_millis(100)..=HOUR,
        ),
        stream_idle_timeout: check.duration(
            "http.stream_idle_timeout",
            h.stream_idle_timeout.as_deref(),
            90 * SECOND,
            SECOND..=HOUR,
        ),
        max_event_bytes: check.int(
            "http.max_event_bytes",
            h.max_event_bytes,
            4 * 1024 * 1024,
            1024..=1024 * 1024 * 1024,
        ),
    }
}

fn retry(check: &mut Checker<'_>, raw: &RawConfig) -> RetryConfig {
    let r = &raw.retry;
    let initial = check.duration(
        "retry.initial",
        r.initial.as_deref(),
        Duration::from_millis(500),
        Duration::from_millis(1)..=HOUR,
    );
    let max_interval = check.duration(
        "retry.max_interval",
        r.max_interval.as_deref(),
        30 * SECOND,
        Duration::from_millis(1)..=HOUR,
    );
    if max_interval < initial {
        check.problem("retry.max_interval", "must not be shorter than retry.initial");
    }
    RetryConfig {
        initial,
        max_interval,
        max_elapsed: check.duration(
            "retry.max_elapsed",
            r.max_elapsed.as_deref(),
            5 * MINUTE,
            Duration::ZERO..=DAY,
        ),
        multiplier: check.float("retry.multiplier", r.multiplier, 1.0..=10.0).unwrap_or(2.0),
        jitter: r.jitter.unwrap_or(true),
        max_attempts: check.int("retry.max_attempts", r.max_attempts, 8, 1..=100),
    }
}
