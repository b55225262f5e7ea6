//! A change to profiles, as `agentcron users set` makes it: checked whole before anything is
//! written, then applied to each user in one pipeline, so a bad value changes nobody.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{
    BUDGET_DAILY, BUDGET_MONTHLY, MAX_VALUE, PAUSED_UNTIL, Pause, TIMEZONE, UsersError,
    parse_tokens,
};
use crate::config::RedisConn;
use crate::ids::UserId;
use crate::keys::Keys;

/// What to change in each profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The new zone.
    pub timezone: Option<Tz>,
    /// `Some(Some(pause))` pauses, `Some(None)` resumes.
    pub pause: Option<Option<Pause>>,
    /// Template values to set.
    pub values: Vec<(String, String)>,
    /// Template values to remove.
    pub unset: Vec<String>,
}

/// A stored pause: `forever`, or an RFC 3339 time.
///
/// # Errors
/// The reason, naming the value.
pub fn parse_pause(text: &str) -> Result<Pause, String> {
    if text == "forever" {
        return Ok(Pause::Forever);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| Pause::Until(time.with_timezone(&Utc)))
        .map_err(|e| format!("{text:?} is neither `forever` nor an RFC 3339 time: {e}"))
}

impl Change {
    /// Sets `KEY=VALUE` for each of `pairs`.
    ///
    /// # Errors
    /// [`UsersError::Invalid`] naming the pair that is not `KEY=VALUE` with a valid key and a
    /// value no longer than [`MAX_VALUE`] bytes.
    pub fn with_values(mut self, pairs: &[String]) -> Result<Self, UsersError> {
        for pair in pairs {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(UsersError::Invalid(format!("--var {pair:?}: expected KEY=VALUE")));
            };
            check_value_name(key)?;
            if (key == BUDGET_DAILY || key == BUDGET_MONTHLY)
                && let Err(reason) = parse_tokens(value)
            {
                return Err(UsersError::Invalid(format!("--var {key}: {reason}")));
            }
            if value.len() > MAX_VALUE {
                let reason = format!("--var {key}: the value is longer than {MAX_VALUE} bytes");
                return Err(UsersError::Invalid(reason));
            }
            self.values.push((key.to_owned(), value.to_owned()));
        }
        Ok(self)
    }

    /// Removes each of `keys`.
    ///
    /// # Errors
    /// [`UsersError::Invalid`] naming a key that is not a template value's name.
    pub fn with_unset(mut self, keys: &[String]) -> Result<Self, UsersError> {
        for key in keys {
            check_value_name(key)?;
            self.unset.push(key.clone());
        }
        Ok(self)
    }

    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Applies the change to every one of `users`, in one pipeline.
    ///
    /// # Errors
    /// [`UsersError::Redis`].
    pub async fn apply(
        &self,
        conn: &mut RedisConn,
        keys: &Keys,
        users: &[UserId],
    ) -> Result<(), UsersError> {
        let mut set: Vec<(String, String)> = self.values.clone();
        if let Some(zone) = self.timezone {
            set.push((TIMEZONE.to_owned(), zone.name().to_owned()));
        }
        if let Some(Some(pause)) = self.pause {
            set.push((PAUSED_UNTIL.to_owned(), pause.to_string()));
        }
        let mut unset = self.unset.clone();
        if self.pause == Some(None) {
            unset.push(PAUSED_UNTIL.to_owned());
        }
        let mut pipe = redis::pipe();
        for user in users {
            let key = keys.profile(user);
            if !set.is_empty() {
                pipe.hset_multiple(&key, &set).ignore();
            }
            if !unset.is_empty() {
                pipe.hdel(&key, &unset).ignore();
            }
        }
        let () = pipe.query_async(conn).await?;
        Ok(())
    }
}

fn check_value_name(key: &str) -> Result<(), UsersError> {
    if key == TIMEZONE || key == PAUSED_UNTIL {
        let flag = if key == TIMEZONE { "--tz" } else { "--pause/--resume" };
        return Err(UsersError::Invalid(format!("{key} is set with {flag}, not --var")));
    }
    if !crate::template::is_name(key) {
        let reason = format!(
            "{key:?} is not a template value's name: letters, digits and _, not starting with a digit, at most 64"
        );
        return Err(UsersError::Invalid(reason));
    }
    Ok(())
}
