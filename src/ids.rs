//! Typed ids: run, user, session, vault and credential ids as newtypes over `String`, so that
//! the compiler catches a user id passed where a run id is expected.
//!
//! Ids that enter from outside (the intake, the CLI, schedules) are built by a validating
//! constructor ([`RunId::parse`], [`UserId::parse`]); this module is the one place each rule
//! lives. Ids that come from the vendor APIs ([`SessionId`], [`VaultId`], [`CredentialId`]) are
//! taken as given. Ids read back from Redis were validated when written and are taken as given
//! ([`RunId::trusted`], and `FromRedisValue` and `Deserialize`, which never fail on an id).
//!
//! Wire formats and Redis contents are unchanged: each id serialises as its plain string
//! (`serde(transparent)`), and keys are formatted from `as_str()`. A leaf: it uses no other
//! room.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// Longest accepted run id, in characters.
const MAX_RUN_ID_CHARS: usize = 256;
/// Longest accepted user id, in characters. The user id is the user's Scalekit identifier, and
/// Scalekit takes at most 100 characters for it when it makes an authorization link (the
/// magic link a notice carries: `identifier` of `GetMagicLinkForConnectedAccount`), though 255
/// when it mints a session token. The tighter rule applies, or a user whose connection lapses
/// could never be sent a link.
pub const MAX_USER_CHARS: usize = 100;
/// What the display name of a user's vault starts with; the user id follows.
const VAULT_NAME_PREFIX: &str = "agentcron ";
/// Longest vault display name Anthropic accepts, in characters (`display_name` of
/// `vaults.create`: 1 to 255).
const MAX_VAULT_NAME_CHARS: usize = 255;
// Every valid user's vault name fits: no user passes the identifier rule and fails this one.
const _: () = assert!(VAULT_NAME_PREFIX.len() + MAX_USER_CHARS <= MAX_VAULT_NAME_CHARS);

/// Why an id from outside was refused: what is wrong, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IdError {
    message: String,
    too_long: bool,
}

impl IdError {
    fn new(message: String) -> Self {
        Self { message, too_long: false }
    }

    /// Whether the id was refused for its length alone (a vendor's limit), not its characters.
    pub fn is_too_long(&self) -> bool {
        self.too_long
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The plain id.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The plain id, owned.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl redis::ToRedisArgs for $name {
            fn write_redis_args<W>(&self, out: &mut W)
            where
                W: ?Sized + redis::RedisWrite,
            {
                self.0.write_redis_args(out);
            }
        }

        impl redis::ToSingleRedisArg for $name {}
    };
}

/// Ids that are taken as given (from the vendor, or from Redis), without rules.
macro_rules! unchecked_from {
    ($name:ident) => {
        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl redis::FromRedisValue for $name {
            fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
                String::from_redis_value(value).map(Self)
            }
        }
    };
}

/// Ids with a validating constructor: `FromStr` and `TryFrom<String>` go through `parse`.
macro_rules! checked_from {
    ($name:ident) => {
        impl FromStr for $name {
            type Err = IdError;

            fn from_str(id: &str) -> Result<Self, IdError> {
                Self::parse(id)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(id: String) -> Result<Self, IdError> {
                Self::check(&id)?;
                Ok(Self(id))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(id: &str) -> Result<Self, IdError> {
                Self::parse(id)
            }
        }

        impl $name {
            /// Validates `id`.
            ///
            /// # Errors
            /// [`IdError`] saying what is wrong, for the operator.
            pub fn parse(id: impl AsRef<str> + Into<String>) -> Result<Self, IdError> {
                Self::check(id.as_ref())?;
                Ok(Self(id.into()))
            }

            /// An id known to be valid, taken as given: read back from Redis, where it was
            /// validated when written (so reading never fails on it), or built by agentcron
            /// itself from valid parts. A key built from an invalid one names nothing.
            pub fn trusted(id: impl Into<String>) -> Self {
                Self(id.into())
            }
        }

        impl redis::FromRedisValue for $name {
            fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
                String::from_redis_value(value).map(Self)
            }
        }
    };
}

id_type!(
    /// A run id: 1 to 256 characters, no whitespace or control characters (it is part of
    /// keys). Fresh ones are UUIDv7 ([`RunId::generate`]); schedules derive theirs from the
    /// schedule, user and tick.
    RunId
);
checked_from!(RunId);

impl RunId {
    /// A fresh UUIDv7 run id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The run id of `user`'s run of `schedule` at the tick `tick_secs` (unix seconds):
    /// `<schedule>:<user>:<tick_secs>`. Deterministic, so that any number of schedulers create
    /// each (schedule, user, tick) once.
    ///
    /// # Errors
    /// [`IdError`] when the id it makes is not a valid run id (for example too long).
    pub fn scheduled(schedule: &str, user: &str, tick_secs: i64) -> Result<Self, IdError> {
        Self::parse(format!("{schedule}:{user}:{tick_secs}"))
    }

    fn check(run_id: &str) -> Result<(), IdError> {
        let n_chars = run_id.chars().count();
        if n_chars == 0 || n_chars > MAX_RUN_ID_CHARS {
            return Err(IdError::new(format!("run id must be 1 to {MAX_RUN_ID_CHARS} characters")));
        }
        if run_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdError::new(format!(
                "run id `{run_id}` contains whitespace or control characters"
            )));
        }
        Ok(())
    }
}

id_type!(
    /// A user id: non-empty, at most 100 characters ([`MAX_USER_CHARS`]), no control characters
    /// or surrounding spaces. Also the Scalekit identifier the user's connections are under,
    /// and part of the user's vault name ([`UserId::vault_display_name`]).
    UserId
);
checked_from!(UserId);

impl UserId {
    /// The display name of the user's Anthropic vault: `agentcron <user>`, within Anthropic's
    /// 255 characters for every valid user id.
    pub fn vault_display_name(&self) -> String {
        format!("{VAULT_NAME_PREFIX}{}", self.0)
    }

    fn check(user: &str) -> Result<(), IdError> {
        if user.is_empty() || user.trim() != user {
            return Err(IdError::new(format!(
                "user `{user}` is empty or has surrounding whitespace"
            )));
        }
        if user.chars().any(char::is_control) {
            return Err(IdError::new(format!(
                "user `{}` has control characters",
                user.escape_debug()
            )));
        }
        let n_chars = user.chars().count();
        if n_chars > MAX_USER_CHARS {
            let message = format!(
                "user is {n_chars} characters; Scalekit takes identifiers of at most \
                 {MAX_USER_CHARS} characters (in an authorization link)"
            );
            return Err(IdError { message, too_long: true });
        }
        Ok(())
    }
}

id_type!(
    /// A Claude Managed Agent session id, as the Anthropic API returned it.
    SessionId
);
unchecked_from!(SessionId);

id_type!(
    /// An Anthropic vault id, as the API returned it.
    VaultId
);
unchecked_from!(VaultId);

id_type!(
    /// An Anthropic vault credential id, as the API returned it.
    CredentialId
);
unchecked_from!(CredentialId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_run_id_is_schedule_user_and_tick() {
        let id = RunId::scheduled("triage", "a@example.com", 1_767_254_400).unwrap();
        assert_eq!(id.as_str(), "triage:a@example.com:1767254400");
        assert!(RunId::scheduled("triage", &"u".repeat(300), 0).is_err(), "too long");
        assert!(RunId::scheduled("triage", "has space", 0).is_err());
    }

    #[test]
    fn run_ids_follow_the_rules() {
        assert!(RunId::parse("r1").is_ok());
        assert!(RunId::parse("morning:a@b:2026-01-01T07:00:00Z").is_ok());
        assert!(RunId::parse("").is_err());
        assert!(RunId::parse("has space").is_err());
        assert!(RunId::parse("a\u{7}").is_err());
        assert!(RunId::parse("x".repeat(256)).is_ok());
        assert!(RunId::parse("x".repeat(257)).is_err());
        assert!(RunId::parse(RunId::generate().into_inner()).is_ok());
    }

    #[test]
    fn user_ids_follow_the_rules() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(" a").is_err());
        assert!(UserId::parse("a\u{7}").is_err());
        assert!(UserId::parse("a\u{1b}[0m").is_err(), "an escape sequence");
        assert_eq!("bob".parse::<UserId>().map(|u| u.to_string()), Ok("bob".to_owned()));
    }

    #[test]
    fn a_user_id_is_no_longer_than_scalekit_takes_in_an_auth_link() {
        assert!(UserId::parse("x".repeat(100)).is_ok());
        assert!(UserId::parse("é".repeat(100)).is_ok(), "characters, not bytes");
        let error = UserId::parse("x".repeat(101)).unwrap_err();
        assert!(error.to_string().contains("at most 100"), "{error}");
        assert!(error.is_too_long());
        assert!(UserId::parse("é".repeat(101)).is_err());
        assert!(!UserId::parse("a\u{7}").unwrap_err().is_too_long());
    }

    #[test]
    fn the_longest_user_has_a_vault_name_anthropic_takes() {
        let user = UserId::parse("é".repeat(MAX_USER_CHARS)).unwrap();
        let name = user.vault_display_name();
        assert_eq!(name, format!("agentcron {user}"));
        assert!(name.chars().count() <= MAX_VAULT_NAME_CHARS);
    }

    #[test]
    fn ids_serialise_as_plain_strings() {
        let run_id = RunId::parse("r1").unwrap();
        assert_eq!(serde_json::to_string(&run_id).unwrap(), r#""r1""#);
        assert_eq!(serde_json::from_str::<RunId>(r#""r1""#).unwrap(), run_id);
        assert_eq!(format!("{run_id} {run_id:?}"), r#"r1 "r1""#);
        assert_eq!(redis::ToRedisArgs::to_redis_args(&run_id), vec![b"r1".to_vec()]);
        assert_eq!(SessionId::from("s1").as_str(), "s1");
    }
}
