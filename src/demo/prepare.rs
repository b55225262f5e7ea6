//! The demo's preparation: which Redis to use, the demo's own `jobs.toml` and environment
//! (simulator URL and credentials, a fresh prefix, nothing from the user's environment), setup,
//! the users' connections in the simulator, and the removal of the demo's keys at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::redis_server::{self, DEFAULT_URL, PrivateRedis};
use super::{
    DemoError, DemoOptions, EXPIRED_CONNECTION, EXPIRED_USER, SCHEDULE, SCHEDULE_CRON, USERS,
};
use crate::config::{self, Config, Env};
use crate::queue::Queue;
use crate::setup;
use crate::sim::SimHandle;

/// The shipped `jobs.toml`, used when neither `--config` nor `./jobs.toml` exists.
const EMBEDDED_CONFIG: &str = include_str!("../../jobs.toml");

/// `$REDIS_URL` (or the default) when it answers, else a private `redis-server`.
pub(super) async fn find_redis(
    url: Option<&str>,
    out: &mut impl Write,
) -> Result<(String, Option<PrivateRedis>), DemoError> {
    let url = url.unwrap_or(DEFAULT_URL);
    let shown = redacted_url(url);
    if redis_server::answers(url).await {
        writeln!(out, "Redis      {shown} (it answers; the demo uses its own key prefix)")?;
        return Ok((url.to_owned(), None));
    }
    writeln!(out, "Redis      nothing answers at {shown}; starting a private redis-server")?;
    let server = PrivateRedis::start().await?;
    writeln!(
        out,
        "Redis      {} (private, no persistence, in {}; stopped on exit)",
        server.url(),
        server.dir().display()
    )?;
    Ok((server.url().to_owned(), Some(server)))
}

/// `url` without its password, for printing.
fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only URLs that cannot have a password refuse one, and this one has one.
            if parsed.set_password(Some("REDACTED")).is_err() {
                return "[REDACTED]".to_owned();
            }
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Writes the demo's `jobs.toml` into `workdir` and returns it with the environment to load it
/// under: the simulator's URL and credentials, the Redis and prefix, nothing from the process.
pub(super) fn write_config(
    opts: &DemoOptions,
    sim: &SimHandle,
    redis_url: &str,
    prefix: &str,
    workdir: &Path,
) -> Result<(PathBuf, Env), DemoError> {
    let (source, text) = source_config(opts.config.as_deref())?;
    let text = demo_toml(&text, &source, opts.follow)?;
    let path = workdir.join("jobs.toml");
    std::fs::write(&path, text).map_err(|source| DemoError::File { path: path.clone(), source })?;
    let sim_config = sim.config();
    let transcripts = workdir.join("transcripts").display().to_string();
    let env = Env::from_pairs([
        (config::REDIS_URL, redis_url.to_owned()),
        ("AGENTCRON__REDIS__PREFIX", prefix.to_owned()),
        (config::SCALEKIT_ENV_URL, sim.base_url().to_owned()),
        (config::ANTHROPIC_BASE_URL, sim.base_url().to_owned()),
        (config::SCALEKIT_CLIENT_ID, sim_config.scalekit_client_id.clone()),
        (config::SCALEKIT_CLIENT_SECRET, sim_config.scalekit_client_secret.clone()),
        (config::ANTHROPIC_API_KEY, sim_config.anthropic_api_key.clone()),
        ("AGENTCRON__TRANSCRIPTS__DIR", transcripts),
        ("AGENTCRON__OPS__BIND", "127.0.0.1:0".to_owned()),
    ]);
    Ok((path, env))
}

/// The configuration to start from: `--config`, else `./jobs.toml`, else the shipped one.
fn source_config(flag: Option<&Path>) -> Result<(PathBuf, String), DemoError> {
    let path = match flag {
        Some(path) => path.to_path_buf(),
        None if Path::new(config::DEFAULT_PATH).is_file() => PathBuf::from(config::DEFAULT_PATH),
        None => return Ok((PathBuf::from("(built-in jobs.toml)"), EMBEDDED_CONFIG.to_owned())),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|source| DemoError::File { path: path.clone(), source })?;
    Ok((path, text))
}

/// `text` with its schedules replaced by the demo's (enabled only for `follow`), no fixed
/// environment id (the simulator knows none) and no notice webhook (demo notices must not
/// reach a real endpoint).
fn demo_toml(text: &str, source: &Path, follow: bool) -> Result<String, DemoError> {
    let toml_error = |message: String| DemoError::Toml { path: source.to_path_buf(), message };
    let mut table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| toml_error(e.to_string()))?;
    if let Some(toml::Value::Table(anthropic)) = table.get_mut("anthropic") {
        anthropic.remove("environment_id");
    }
    if let Some(toml::Value::Table(notices)) = table.get_mut("notices") {
        notices.remove("webhook_url");
        notices.remove("webhook_secret");
    }
    let mut schedule = toml::Table::new();
    schedule.insert("name".to_owned(), SCHEDULE.into());
    schedule.insert("cron".to_owned(), SCHEDULE_CRON.into());
    schedule.insert("timezone".to_owned(), "UTC".into());
    let users = vec![toml::Value::from(USERS[0]), toml::Value::from(USERS[1])];
    schedule.insert("users".to_owned(), toml::Value::Array(users));
    schedule.insert(
        "prompt".to_owned(),
        "It is {local_time}. Process my most recent unread email.".into(),
    );
    schedule.insert("enabled".to_owned(), follow.into());
    table.insert("schedule".to_owned(), toml::Value::Array(vec![toml::Value::Table(schedule)]));
    toml::to_string(&table).map_err(|e| toml_error(e.to_string()))
}

/// `agentcron setup` against the simulator.
pub(super) async fn run_setup(
    config: &Config,
    queue: &Queue,
    out: &mut impl Write,
) -> Result<(), DemoError> {
    let (scalekit, anthropic, _) = crate::run::clients(config)?;
    let mut conn = queue.connection();
    let (ids, _) = setup::ensure(config, &scalekit, &anthropic, &mut conn, queue.keys()).await?;
    writeln!(
        out,
        "Setup      MCP config {}, agent {}, environment {}",
        ids.mcp_config_id, ids.agent_id, ids.environment_id
    )?;
    Ok(())
}

/// Sets every demo user's connections through the simulator's control API: all ACTIVE but
/// carol's calendar, which is EXPIRED.
pub(super) async fn prepare_users(
    config: &Config,
    base_url: &str,
    out: &mut impl Write,
) -> Result<(), DemoError> {
    let http = crate::api::http_client(&config.http)?;
    for user in USERS {
        for connection in &config.scalekit.connections {
            let name = connection.name.as_str();
            let status = if user == EXPIRED_USER && name == EXPIRED_CONNECTION {
                "EXPIRED"
            } else {
                "ACTIVE"
            };
            http.put(format!("{base_url}/_sim/users/{user}/connections/{name}"))
                .json(&serde_json::json!({ "status": status }))
                .send()
                .await?
                .error_for_status()?;
        }
    }
    writeln!(
        out,
        "Users      {}, {} (connections ACTIVE); {} ({EXPIRED_CONNECTION} EXPIRED)",
        USERS[0], USERS[1], EXPIRED_USER
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_toml_replaces_schedules_and_drops_the_webhook() {
        let text = "[notices]\nwebhook_url = \"https://example.com/hook\"\n\n[anthropic]\nenvironment_id = \"env_1\"\n\n[[schedule]]\nname = \"x\"\ncron = \"0 0 8 * * *\"\n";
        let out: toml::Table = demo_toml(text, Path::new("t.toml"), true).unwrap().parse().unwrap();
        assert!(out["notices"].as_table().unwrap().get("webhook_url").is_none());
        assert!(out["anthropic"].as_table().unwrap().get("environment_id").is_none());
        let schedules = out["schedule"].as_array().unwrap();
        assert_eq!(schedules.len(), 1);
        assert_eq!(schedules[0]["name"].as_str(), Some(SCHEDULE));
        assert_eq!(schedules[0]["enabled"].as_bool(), Some(true));
    }

    #[test]
    fn the_embedded_config_becomes_a_valid_demo_config() {
        let dir =
            std::env::temp_dir().join(format!("agentcron-demo-test-{}", redis_server::short_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jobs.toml");
        std::fs::write(&path, demo_toml(EMBEDDED_CONFIG, Path::new("x"), false).unwrap()).unwrap();
        let config = config::load(&path, &Env::default()).unwrap();
        assert_eq!(config.schedules.len(), 1);
        assert!(!config.schedules[0].enabled);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redacted_url("redis://:hunter2@host:6379"), "redis://:REDACTED@host:6379");
        assert_eq!(redacted_url(DEFAULT_URL), DEFAULT_URL);
    }
}
