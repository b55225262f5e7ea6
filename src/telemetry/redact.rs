//! The one redaction facility: every path that prints configuration, requests, errors or logs
//! passes text through a [`Redactor`] first.
//!
//! It removes known secret values (registered at start and whenever a token is minted) and,
//! as a safety net, anything shaped like a bearer credential: JWTs, `Bearer …` headers and
//! Anthropic-style keys. It must never decide what is logged, only hide what must not be.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};

use regex::Regex;

/// What replaces a secret in output.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not registered: replacing every "a" would hide everything.
const MIN_SECRET_LEN: usize = 8;

static SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
        r"|sk-ant-[A-Za-z0-9_-]{8,}",
    ))
    .expect("the redaction pattern is a valid constant")
});

/// Known secrets plus credential-shaped patterns. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct Redactor {
    // A std lock: it is never held across an await, and reads vastly outnumber writes.
    secrets: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n_secrets = self.secrets.read().map_or(0, |secrets| secrets.len());
        f.debug_struct("Redactor").field("n_secrets", &n_secrets).finish()
    }
}

impl Redactor {
    /// A redactor that knows `secrets` from the start.
    pub fn new<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let redactor = Self::default();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    /// Registers one more secret value, such as a freshly minted session token.
    pub fn add(&self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        // A poisoned lock only means a panic elsewhere; the list itself is still sound.
        let mut secrets = self.secrets.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !secrets.contains(&secret) {
            secrets.push(secret);
        }
    }

    /// `text` with every known secret and credential-shaped string replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.secrets.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Cow::Borrowed(text);
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        match SHAPES.replace_all(&out, REDACTED) {
            Cow::Borrowed(_) => out,
            Cow::Owned(replaced) => Cow::Owned(replaced),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(redactor: &Redactor, input: &str, expect: &str) {
        assert_eq!(redactor.redact(input), expect, "{input:?}");
    }

    #[test]
    fn known_values_and_shapes() {
        let redactor = Redactor::new(["sim-client-secret", "short"]);
        check(&redactor, "secret=sim-client-secret!", "secret=[REDACTED]!");
        check(&redactor, "a short word", "a short word");
        check(&redactor, "nothing here", "nothing here");
        check(&redactor, "tok eyJhbGciOi.eyJzdWIiOiJh.c2lnbmF0dXJl end", "tok [REDACTED] end");
        check(&redactor, "Authorization: Bearer abcdefgh12345", "Authorization: [REDACTED]");
        check(&redactor, "key sk-ant-api03-abcdefghij", "key [REDACTED]");
    }

    #[test]
    fn added_later_and_shared_by_clones() {
        let redactor = Redactor::default();
        let clone = redactor.clone();
        redactor.add("minted-token-value");
        check(&clone, "x minted-token-value y", "x [REDACTED] y");
    }
}
