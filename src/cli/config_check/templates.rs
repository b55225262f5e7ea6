//! `config check --redis`: the values each schedule's prompt template needs (placeholders
//! without a default) that a listed user's profile lacks. Such a run would fail with
//! `missing_value:<name>`, so each is a warning naming the schedule, the user and the value.

use crate::config::Config;
use crate::ids::UserId;
use crate::template::Template;
use crate::users;

/// One line per (schedule, listed user, value) the user's profile lacks.
pub(super) async fn missing_values(config: &Config) -> Result<Vec<String>, String> {
    let mut conn = config.redis.connect(Default::default()).await?;
    let keys = config.redis.keys();
    let mut lines = Vec::new();
    for (i, schedule) in config.schedules.iter().enumerate() {
        let template = Template::parse(&schedule.prompt);
        let needed: Vec<&str> = template
            .profile_names()
            .into_iter()
            .filter(|(_, has_default)| !has_default)
            .map(|(name, _)| name)
            .collect();
        if needed.is_empty() || schedule.users.is_empty() {
            continue;
        }
        let refs: Vec<&UserId> = schedule.users.iter().collect();
        let profiles = users::read(&mut conn, &keys, &refs).await.map_err(|e| e.to_string())?;
        for (user, profile) in schedule.users.iter().zip(profiles) {
            for name in needed.iter().filter(|name| !profile.values.contains_key(**name)) {
                lines.push(format!(
                    "schedule[{i}].prompt ({}): user {user} has no value {name:?} and the template gives no default; set it with `agentcron users set {user} --var {name}=…` or write {{{name}|default}}",
                    schedule.name
                ));
            }
        }
    }
    Ok(lines)
}
