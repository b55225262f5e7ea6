//! User profiles: one Redis hash per user, `<p>:profile:<u>`, with the user's time zone
//! (`timezone`, IANA), a pause (`paused_until`: `forever` or an RFC 3339 time), the user's own
//! token budgets (`budget_daily_tokens`, `budget_monthly_tokens`: a count, 0 for none) and
//! named values for prompt templates (every other field). Written by `agentcron users set` or
//! `redis-cli HSET`, so every value is validated where it is read: a bad one becomes a
//! [`Problem`] on the profile, reported by whoever reads it, never a crash and never a guess
//! (a user whose zone cannot be read is not fired on a per-user-zone schedule).
//!
//! This module owns the profile's fields and their rules; it must not decide when runs
//! happen (`schedule`) or render prompts (`template`).

mod change;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

pub use self::change::{Change, parse_pause};
use crate::config::RedisConn;
use crate::ids::UserId;
use crate::keys::Keys;
use crate::template::{Missing, Template};

/// The field holding the user's IANA time zone.
pub const TIMEZONE: &str = "timezone";
/// The field holding the pause: `forever`, or an RFC 3339 time the pause ends.
pub const PAUSED_UNTIL: &str = "paused_until";
/// The field holding the user's own daily token budget (0: none), instead of `[budget]`'s.
pub const BUDGET_DAILY: &str = "budget_daily_tokens";
/// The field holding the user's own monthly token budget (0: none), instead of `[budget]`'s.
pub const BUDGET_MONTHLY: &str = "budget_monthly_tokens";
/// Longest value of a field, in bytes.
pub const MAX_VALUE: usize = 4096;
/// Most fields in one profile.
pub const MAX_FIELDS: usize = 64;

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    /// Redis failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value given to write is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// A pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pause {
    /// Until resumed.
    Forever,
    /// Until this time.
    Until(DateTime<Utc>),
}

impl Pause {
    /// Whether the pause holds at `at`.
    pub fn holds_at(self, at: DateTime<Utc>) -> bool {
        match self {
            Self::Forever => true,
            Self::Until(until) => at < until,
        }
    }
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forever => f.write_str("forever"),
            Self::Until(until) => f.write_str(&until.to_rfc3339()),
        }
    }
}

/// A field of a profile that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The field.
    pub field: String,
    /// Why it is not used.
    pub reason: String,
}

/// One user's profile, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The user's zone, when set and valid.
    #[serde(serialize_with = "zone_name")]
    pub timezone: Option<Tz>,
    /// The pause, when set and valid.
    pub paused: Option<Pause>,
    /// The user's own daily token budget, when set and valid (0: none).
    pub budget_daily_tokens: Option<u64>,
    /// The user's own monthly token budget, when set and valid (0: none).
    pub budget_monthly_tokens: Option<u64>,
    /// Values for prompt templates: every valid field but the four above.
    pub values: BTreeMap<String, String>,
    /// Fields that are set but invalid; they are not used.
    pub problems: Vec<Problem>,
}

fn zone_name<S: serde::Serializer>(zone: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
    match zone {
        Some(zone) => s.serialize_some(zone.name()),
        None => s.serialize_none(),
    }
}

impl Profile {
    /// The profile from a hash's fields, each checked.
    pub fn from_fields(fields: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut profile = Self::default();
        for (n, (field, value)) in fields.into_iter().enumerate() {
            let problem = |reason: String| Problem { field: field.clone(), reason };
            let checked = if n >= MAX_FIELDS {
                Err(format!("more than {MAX_FIELDS} fields; the rest are ignored"))
            } else if value.len() > MAX_VALUE {
                Err(format!("longer than {MAX_VALUE} bytes"))
            } else {
                profile.take(&field, value)
            };
            if let Err(reason) = checked {
                profile.problems.push(problem(reason));
            }
        }
        profile
    }

    fn take(&mut self, field: &str, value: String) -> Result<(), String> {
        match field {
            TIMEZONE => self.timezone = Some(parse_zone(&value)?),
            PAUSED_UNTIL => self.paused = Some(parse_pause(&value)?),
            BUDGET_DAILY => self.budget_daily_tokens = Some(parse_tokens(&value)?),
            BUDGET_MONTHLY => self.budget_monthly_tokens = Some(parse_tokens(&value)?),
            _ if crate::template::is_name(field) => {
                self.values.insert(field.to_owned(), value);
            }
            _ => return Err("not a valid name for a template value ([A-Za-z0-9_])".to_owned()),
        }
        Ok(())
    }

    /// The zone runs of a per-user-zone schedule use: the user's, else `default`; `None` when
    /// the user's zone is set but invalid (the user is not fired rather than fired at a wrong
    /// time).
    pub fn zone_or(&self, default: Tz) -> Option<Tz> {
        match self.timezone {
            Some(zone) => Some(zone),
            None if self.problem(TIMEZONE).is_some() => None,
            None => Some(default),
        }
    }

    /// Whether the user is paused at `at`; a pause that is set but unreadable counts as one,
    /// since someone meant to pause the user.
    pub fn paused_at(&self, at: DateTime<Utc>) -> bool {
        self.paused.is_some_and(|pause| pause.holds_at(at)) || self.problem(PAUSED_UNTIL).is_some()
    }

    /// `template` rendered with `builtins` first (`user`, `run_id`, `local_time`), then the
    /// profile's values, then the placeholders' defaults.
    ///
    /// # Errors
    /// [`Missing`] naming the first placeholder with no value and no default.
    pub fn render(
        &self,
        template: &Template,
        builtins: &[(&str, &str)],
    ) -> Result<String, Missing> {
        template.render(|name| {
            builtins
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| *value)
                .or_else(|| self.values.get(name).map(String::as_str))
        })
    }

    /// The problem of `field`, if it has one.
    pub fn problem(&self, field: &str) -> Option<&Problem> {
        self.problems.iter().find(|problem| problem.field == field)
    }
}

/// An IANA zone name, or why it is not one.
///
/// # Errors
/// The reason, naming the value.
pub fn parse_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {text:?}; expected an IANA name such as \"Europe/Berlin\"")
    })
}

/// A token budget: a whole number of tokens, 0 for none.
///
/// # Errors
/// The reason, naming the value.
pub fn parse_tokens(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of tokens (0 for no budget)"))
}

/// The profiles of `users`, in order, in one pipeline (a missing profile is empty).
///
/// # Errors
/// When Redis fails.
pub async fn read(
    conn: &mut RedisConn,
    keys: &Keys,
    users: &[&UserId],
) -> redis::RedisResult<Vec<Profile>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for user in users {
        pipe.hgetall(keys.profile(user));
    }
    let hashes: Vec<Vec<(String, String)>> = pipe.query_async(conn).await?;
    Ok(hashes.into_iter().map(Profile::from_fields).collect())
}

/// The users that have a profile, sorted, at most `limit`.
///
/// # Errors
/// [`UsersError::Redis`].
pub async fn with_profiles(
    conn: &mut RedisConn,
    keys: &Keys,
    limit: usize,
) -> Result<Vec<UserId>, UsersError> {
    let pattern = keys.profile_pattern();
    let prefix = pattern.trim_end_matches('*').to_owned();
    let mut users = std::collections::BTreeSet::new();
    let mut found: redis::AsyncIter<'_, String> =
        redis::AsyncCommands::scan_match(conn, &pattern).await?;
    while users.len() < limit
        && let Some(key) = futures::StreamExt::next(&mut found).await
    {
        if let Some(user) = key?.strip_prefix(&prefix).and_then(|name| UserId::parse(name).ok()) {
            users.insert(user);
        }
    }
    Ok(users.into_iter().take(limit).collect())
}
