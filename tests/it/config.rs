//! Configuration loading: the shipped file, layering of environment overrides and `.env`, and
//! the errors for bad input, each naming the key (and the line when the file sets it).

use std::path::{Path, PathBuf};

use agentcron::config::{self, ConfigError, Env, Origin};
use secrecy::ExposeSecret;

use crate::common::shipped_config;

pub(crate) fn shipped_text() -> String {
    std::fs::read_to_string(shipped_config()).unwrap()
}

/// Writes `text` as `jobs.toml` in a fresh directory.
pub(crate) fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

pub(crate) fn load(path: &Path, env: &[(&str, &str)]) -> Result<config::Config, ConfigError> {
    config::load(path, &Env::from_pairs(env.iter().copied()))
}

#[test]
fn shipped_jobs_toml_loads_with_the_guides_definitions() {
    let config = load(&shipped_config(), &[]).unwrap();
    assert_eq!(config.redis.prefix, "agentcron");
    assert_eq!(config.worker.concurrency, 200);
    assert_eq!(config.scalekit.token_expiry.as_secs(), 3600);
    let names: Vec<_> = config.scalekit.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gmail", "googlecalendar"]);
    assert_eq!(config.scalekit.connections[1].tools.len(), 5);
    assert_eq!(config.anthropic.agent.model, "claude-haiku-4-5-20251001");
    assert!(config.anthropic.agent.system.contains("Action Required: <email subject>"));
    assert_eq!(config.schedules.len(), 2);
    assert_eq!(config.schedules[0].timezone, chrono_tz::America::New_York);
    assert_eq!(config.schedules[0].spread.unwrap().as_secs(), 600);
    assert!(!config.schedules[1].enabled);
    assert!(config.anthropic.environment_id.is_none(), "an empty id means unset");
}

#[test]
fn an_empty_file_gets_every_default() {
    let (_dir, path) = write_config("[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n");
    let config = load(&path, &[]).unwrap();
    assert_eq!(config.redis.url.as_str(), "redis://127.0.0.1:6379");
    assert_eq!(config.anthropic.base_url.as_str(), "https://api.anthropic.com/");
    assert_eq!(config.ops.bind.unwrap().to_string(), "127.0.0.1:9187");
    assert_eq!(config.retry.max_attempts, 8);
    assert_eq!(config.scalekit.connections.len(), 2, "the guide's mappings are the default");
    assert!(config.schedules.is_empty());
}

/// `[limits]` defaults to Anthropic's documented limits (as `config check` shows them); each
/// can be changed in the file or the environment, and 0 turns one off.
#[test]
fn rate_limits_default_to_the_vendors_and_each_can_be_changed_or_turned_off() {
    let (_dir, path) = write_config("[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n");
    let config = load(&path, &[]).unwrap();
    let shown = serde_json::to_value(&config).unwrap();
    assert_eq!(
        shown["limits"],
        serde_json::json!({"creates_per_minute": 300.0, "requests_per_minute": 600.0,
            "environments_per_minute": 60.0, "sessions_per_second": null, "tokens_per_second": null})
    );

    let text = "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[limits]\n\
        creates_per_minute = 30.5\nenvironments_per_minute = 0\ntokens_per_second = 0\n";
    let (_dir, path) = write_config(text);
    let env = [
        ("AGENTCRON__LIMITS__REQUESTS_PER_MINUTE", "0"),
        ("AGENTCRON__LIMITS__SESSIONS_PER_SECOND", "2"),
    ];
    let limits = load(&path, &env).unwrap().limits;
    assert_eq!(limits.creates_per_minute, Some(30.5));
    assert_eq!(limits.requests_per_minute, None, "0 is no limit");
    assert_eq!(limits.environments_per_minute, None);
    assert_eq!(limits.sessions_per_second, Some(2.0));
    assert_eq!(limits.tokens_per_second, None);

    let error = load(&path, &[("AGENTCRON__LIMITS__CREATES_PER_MINUTE", "-1")]).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(problem.key, "limits.creates_per_minute");
    assert_eq!(problem.origin, Origin::Env("AGENTCRON__LIMITS__CREATES_PER_MINUTE".to_owned()));
}

#[test]
fn environment_overrides_win_in_order() {
    let path = shipped_config();
    let config = load(&path, &[("REDIS_URL", "redis://conventional:6380")]).unwrap();
    assert_eq!(config.redis.url.as_str(), "redis://conventional:6380");

    let config = load(
        &path,
        &[
            ("REDIS_URL", "redis://conventional:6380"),
            ("AGENTCRON__REDIS__URL", "redis://override:6381"),
            ("AGENTCRON__WORKER__CONCURRENCY", "50"),
            ("AGENTCRON__REDIS__PREFIX", "tenant-a"),
            ("ANTHROPIC_BASE_URL", "https://proxy.example.com"),
            ("SCALEKIT_ENV_URL", "https://acme.scalekit.com"),
            ("ANTHROPIC_ENVIRONMENT_ID", "env_123"),
        ],
    )
    .unwrap();
    assert_eq!(config.redis.url.as_str(), "redis://override:6381");
    assert_eq!(config.redis.prefix, "tenant-a");
    assert_eq!(config.worker.concurrency, 50);
    assert_eq!(config.anthropic.base_url.as_str(), "https://proxy.example.com/");
    assert_eq!(config.scalekit.env_url.as_str(), "https://acme.scalekit.com/");
    assert_eq!(config.anthropic.environment_id.as_deref(), Some("env_123"));
}

#[test]
fn dotenv_beside_the_file_supplies_secrets_but_the_environment_wins() {
    let (dir, path) = write_config(&shipped_text());
    std::fs::write(
        dir.path().join(".env"),
        "SCALEKIT_CLIENT_ID=from-dotenv-id\nSCALEKIT_CLIENT_SECRET=from-dotenv-secret\n\
         ANTHROPIC_API_KEY=from-dotenv-key\nAGENTCRON__WORKER__MAX_ATTEMPTS=9\n",
    )
    .unwrap();
    let config = load(&path, &[("ANTHROPIC_API_KEY", "from-process-key")]).unwrap();
    config.require_secrets().unwrap();
    assert_eq!(config.secrets.scalekit_client_id.as_deref(), Some("from-dotenv-id"));
    let secret = config.secrets.scalekit_client_secret.as_ref().unwrap();
    assert_eq!(secret.expose_secret(), "from-dotenv-secret");
    let key = config.secrets.anthropic_api_key.as_ref().unwrap();
    assert_eq!(key.expose_secret(), "from-process-key");
    assert_eq!(config.worker.max_attempts, 9, ".env may hold overrides too");
}

#[test]
fn missing_secrets_are_named_when_needed() {
    let config = load(&shipped_config(), &[("SCALEKIT_CLIENT_ID", "id")]).unwrap();
    let error = config.require_secrets().unwrap_err();
    let keys: Vec<_> = error.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["SCALEKIT_CLIENT_SECRET", "ANTHROPIC_API_KEY"]);
    assert!(error.to_string().contains("environment variable SCALEKIT_CLIENT_SECRET"));
}

/// One bad input: how to break the shipped file, the key the error must name, a phrase it must
/// contain, and the line when the file sets the key.
struct Case {
    name: &'static str,
    find: &'static str,
    replace: &'static str,
    key: &'static str,
    phrase: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key",
        find: "concurrency = 200",
        replace: "concurrency = 200\ncolour = \"blue\"",
        key: "worker.colour",
        phrase: "unknown key",
    },
    Case {
        name: "unknown section",
        find: "[http]",
        replace: "[htttp]",
        key: "htttp",
        phrase: "unknown section; did you mean `http`?",
    },
    Case {
        name: "wrong type",
        find: "concurrency = 200",
        replace: "concurrency = \"many\"",
        key: "worker.concurrency",
        phrase: "invalid type",
    },
    Case {
        name: "bad cron",
        find: "cron = \"0 0 8 * * Mon-Fri\"",
        replace: "cron = \"0 0 25 * * *\"",
        key: "schedule[0].cron",
        phrase: "cron expression",
    },
    Case {
        name: "cron with 3 fields",
        find: "cron = \"30 17 * * 1-5\"",
        replace: "cron = \"* * *\"",
        key: "schedule[1].cron",
        phrase: "it has 3 fields",
    },
    Case {
        name: "bad zone",
        find: "timezone = \"Europe/Berlin\"",
        replace: "timezone = \"Mars/Olympus\"",
        key: "schedule[1].timezone",
        phrase: "IANA time zone",
    },
    Case {
        name: "bad URL",
        find: "env_url = \"http://127.0.0.1:8787\"",
        replace: "env_url = \"not a url\"",
        key: "scalekit.env_url",
        phrase: "expected a URL",
    },
    Case {
        name: "wrong URL scheme",
        find: "url = \"redis://127.0.0.1:6379\"",
        replace: "url = \"http://127.0.0.1:6379\"",
        key: "redis.url",
        phrase: "redis or rediss or unix",
    },
    Case {
        name: "negative duration",
        find: "run_timeout = \"15m\"",
        replace: "run_timeout = \"-5m\"",
        key: "worker.run_timeout",
        phrase: "expected a duration",
    },
    Case {
        name: "duration out of range",
        find: "token_expiry = \"1h\"",
        replace: "token_expiry = \"30s\"",
        key: "scalekit.token_expiry",
        phrase: "from 1m to 1day",
    },
    Case {
        name: "zero concurrency",
        find: "concurrency = 200",
        replace: "concurrency = 0",
        key: "worker.concurrency",
        phrase: "from 1 to 100000",
    },
    Case {
        name: "zero attempts",
        find: "max_attempts = 5",
        replace: "max_attempts = 0",
        key: "worker.max_attempts",
        phrase: "from 1 to 100",
    },
    Case {
        name: "bad overlap",
        find: "overlap = \"skip\"",
        replace: "overlap = \"sometimes\"",
        key: "schedule[0].overlap",
        phrase: "expected one of skip, queue",
    },
    Case {
        name: "duplicate schedule",
        find: "name = \"berlin-evening\"",
        replace: "name = \"morning-triage\"",
        key: "schedule[1].name",
        phrase: "duplicate schedule name",
    },
    Case {
        name: "schedule name with colon",
        find: "name = \"berlin-evening\"",
        replace: "name = \"berlin:evening\"",
        key: "schedule[1].name",
        phrase: "A-Z a-z 0-9",
    },
    Case {
        name: "negative rate",
        find: "creates_per_minute = 300",
        replace: "creates_per_minute = -300",
        key: "limits.creates_per_minute",
        phrase: "expected 0 (no limit) or a number above 0",
    },
    Case {
        name: "rate as text",
        find: "requests_per_minute = 600",
        replace: "requests_per_minute = \"fast\"",
        key: "limits.requests_per_minute",
        phrase: "invalid type",
    },
    Case {
        name: "user longer than Scalekit takes",
        find: "users = [\"carol@example.com\"]",
        replace: "users = [\"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc@x.test\"]",
        key: "schedule[1].users[0]",
        phrase: "at most 100",
    },
    Case {
        name: "public bind without token",
        find: "bind = \"127.0.0.1:9187\"",
        replace: "bind = \"0.0.0.0:9187\"",
        key: "ops.token",
        phrase: "not a loopback address",
    },
    Case {
        name: "bad bind",
        find: "bind = \"127.0.0.1:9187\"",
        replace: "bind = \"localhost\"",
        key: "ops.bind",
        phrase: "expected an address",
    },
    Case {
        name: "bad policy",
        find: "requires_action = \"auto_confirm\"",
        replace: "requires_action = \"maybe\"",
        key: "anthropic.requires_action",
        phrase: "auto_confirm, deny",
    },
    Case {
        name: "multiplier out of range",
        find: "multiplier = 2.0",
        replace: "multiplier = 0.5",
        key: "retry.multiplier",
        phrase: "from 1 to 10",
    },
    Case {
        name: "empty connection tools",
        find: "tools = [\"gmail_fetch_mails\"]",
        replace: "tools = []",
        key: "scalekit.connections[0].tools",
        phrase: "at least one tool",
    },
    Case {
        name: "margin longer than expiry",
        find: "token_refresh_margin = \"5m\"",
        replace: "token_refresh_margin = \"2h\"",
        key: "scalekit.token_refresh_margin",
        phrase: "from 0s to 1h",
    },
    Case {
        name: "syntax error",
        find: "[ops]",
        replace: "[ops",
        key: "(file)",
        phrase: "unclosed table",
    },
];

#[test]
fn bad_inputs_name_the_file_key_and_line() {
    let text = shipped_text();
    for case in CASES {
        assert!(text.contains(case.find), "{}: the shipped file lacks {:?}", case.name, case.find);
        let broken = text.replacen(case.find, case.replace, 1);
        let (_dir, path) = write_config(&broken);
        let error = load(&path, &[]).expect_err(case.name);
        let problems = error.problems();
        assert_eq!(problems.len(), 1, "{}: {error}", case.name);
        let problem = &problems[0];
        assert!(
            problem.key.starts_with(case.key),
            "{}: key {:?} in {error}",
            case.name,
            problem.key
        );
        assert!(problem.message.contains(case.phrase), "{}: {error}", case.name);
        let Origin::File { path: file, line } = &problem.origin else {
            panic!("{}: expected a file origin: {error}", case.name)
        };
        assert_eq!(file, &path);
        let changed_line = text[..text.find(case.find).unwrap()].lines().count() + 1;
        let expect_line = changed_line + usize::from(case.name == "unknown key");
        if case.name != "public bind without token" {
            assert_eq!(*line, Some(expect_line), "{}: {error}", case.name);
        }
        let shown = error.to_string();
        assert!(shown.contains("jobs.toml:"), "{}: {shown}", case.name);
        assert!(shown.contains(&format!("`{}", case.key)), "{}: {shown}", case.name);
    }
}

/// `[budget]` and `[[price]]`: read with their types, 0 is no budget, a price's cache rates
/// default from its input rate, and every mistake names its key and line.
#[test]
fn budgets_and_prices_are_read_and_their_mistakes_named() {
    let head = "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n";
    let text = format!(
        "{head}[budget]\ndaily_tokens = 0\nmonthly_tokens = 5000000\n\
         [[price]]\nmodel = \"claude-sonnet-4\"\ninput = 2.5\noutput = 12\n"
    );
    let (_dir, path) = write_config(&text);
    let config = load(&path, &[("AGENTCRON__BUDGET__DAILY_TOKENS", "200000")]).unwrap();
    assert_eq!(config.budget.daily_tokens, Some(200_000));
    assert_eq!(config.budget.monthly_tokens, Some(5_000_000));
    let price = &config.prices[0];
    assert_eq!((price.input, price.output), (2.5, 12.0));
    assert_eq!((price.cache_write, price.cache_read), (3.125, 0.25));
    assert_eq!(load(&path, &[]).unwrap().budget.daily_tokens, None, "0 is no budget");

    let text =
        format!("{head}[budget]\ndaily_tokens = -1\n[[price]]\nmodel = \"claude\"\noutput = 1\n");
    let (_dir, path) = write_config(&text);
    let error = load(&path, &[]).unwrap_err();
    let at: Vec<_> = error
        .problems()
        .iter()
        .map(|p| match &p.origin {
            Origin::File { line, .. } => (p.key.as_str(), *line),
            Origin::Env(_) => (p.key.as_str(), None),
        })
        .collect();
    assert_eq!(at, [("budget.daily_tokens", Some(4)), ("price[0].input", Some(5))], "{error}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let broken = shipped_text()
        .replacen("concurrency = 200", "concurrency = 0", 1)
        .replacen("timezone = \"Europe/Berlin\"", "timezone = \"Nowhere\"", 1)
        .replacen("ttl = \"7d\"", "ttl = \"forever\"", 1);
    let (_dir, path) = write_config(&broken);
    let error = load(&path, &[]).unwrap_err();
    let keys: Vec<_> = error.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["worker.concurrency", "transcripts.ttl", "schedule[1].timezone"]);
    assert!(error.to_string().starts_with("invalid configuration (3 problems)"));
}

#[test]
fn a_bad_override_names_the_variable() {
    let env = [("AGENTCRON__RETRY__INITIAL", "soon")];
    let error = load(&shipped_config(), &env).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(problem.origin, Origin::Env("AGENTCRON__RETRY__INITIAL".to_owned()));
    assert_eq!(problem.key, "retry.initial");

    // A variable that maps to no key is a warning (`config_checks.rs`), not a problem.
    let env = Env::from_pairs([("AGENTCRON__WORKER__COLOUR", "blue")]);
    let checked = config::check(&shipped_config(), &env);
    assert!(checked.config.is_ok());
    assert_eq!(checked.warnings[0].var, "AGENTCRON__WORKER__COLOUR");
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = load(Path::new("/nonexistent/jobs.toml"), &[]).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/jobs.toml"));
}

#[test]
fn config_path_resolution() {
    let env = Env::from_pairs([("AGENTCRON_CONFIG", "/etc/agentcron/jobs.toml")]);
    assert_eq!(config::resolve_path(Some(Path::new("flag.toml")), &env), Path::new("flag.toml"));
    assert_eq!(config::resolve_path(None, &env), Path::new("/etc/agentcron/jobs.toml"));
    assert_eq!(config::resolve_path(None, &Env::default()), Path::new("jobs.toml"));
}

const SECRETS: [(&str, &str); 7] = [
    ("SCALEKIT_CLIENT_ID", "sk-client-id-visible"),
    ("SCALEKIT_CLIENT_SECRET", "SECRET-scalekit-9f8e7d"),
    ("ANTHROPIC_API_KEY", "sk-ant-SECRET-key-1a2b3c"),
    ("AGENTCRON__NOTICES__WEBHOOK_SECRET", "SECRET-webhook-4d5e6f"),
    ("AGENTCRON__WEBHOOK__SECRET", "whsec_SECRET-run-webhook-9c0d"),
    ("AGENTCRON__OPS__TOKEN", "SECRET-ops-token-7a8b"),
    ("AGENTCRON__REDIS__URL", "redis://:SECRET-redis-pass@127.0.0.1:6379"),
];

#[test]
fn no_secret_survives_debug_display_or_serialisation() {
    let config = load(&shipped_config(), &SECRETS).unwrap();
    config.require_secrets().unwrap();
    let debug = format!("{config:?}");
    let json = serde_json::to_string(&config).unwrap();
    let toml = toml::to_string(&config).unwrap();
    for shown in [&debug, &json, &toml] {
        assert!(!shown.contains("SECRET"), "a secret leaked: {shown}");
    }
    assert!(json.contains("[REDACTED]"));
    assert_eq!(config.secret_values().len(), 6, "every secret is known to the redactor");
}

#[test]
fn errors_do_not_echo_secret_values() {
    let env = [("AGENTCRON__REDIS__URL", "redis://:SECRET-pass@[bad")];
    let error = load(&shipped_config(), &env).unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("SECRET-pass"), "{shown}");
    assert!(shown.contains("AGENTCRON__REDIS__URL"), "{shown}");
}
