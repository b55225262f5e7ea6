//! The one redaction facility: every path that prints configuration, requests, errors or logs
//! passes text through a [`Redactor`] first.
//!
//! It removes known secret values (registered at start and whenever a token is minted) and,
//! as a safety net, anything shaped like a bearer credential: JWTs, `Bearer …` headers and
//! Anthropic-style keys. It must never decide what is logged, only hide what must not be.
//!
//! A worker mints one token per run, so the set of known values reaches tens of thousands.
//! Searching for each of them in every line made redaction quadratic (it took 84 % of a busy
//! worker's CPU at 3,000 concurrent runs), so values are indexed by their last
//! `MIN_SECRET_LEN` bytes: finding all of them costs one hash lookup per byte of text,
//! whatever their number. Minted tokens leave the set once they have expired.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime};

use regex::Regex;

/// What replaces a secret in output.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not registered: replacing every "a" would hide everything.
/// It is also the length of the suffix the index is keyed by.
const MIN_SECRET_LEN: usize = 8;

/// How long an expired token is still hidden, for clocks that disagree with the issuer's.
const EXPIRED_GRACE: Duration = Duration::from_secs(600);

/// Expired tokens are swept after this many registrations (or more, when the set is larger,
/// so that sweeping stays amortised O(1) per registration).
const SWEEP_EVERY: usize = 1024;

static SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
        r"|sk-ant-[A-Za-z0-9_-]{8,}",
    ))
    .expect("the redaction pattern is a valid constant")
});

type Tail = [u8; MIN_SECRET_LEN];

/// One known value and, for a minted token, when it stops mattering.
struct Known {
    value: Box<str>,
    forget_after: Option<SystemTime>,
}

/// Known values by their last bytes, plus which bytes end any of them (a cheap first filter).
struct Index {
    by_tail: HashMap<Tail, Vec<Known>>,
    last_bytes: [bool; 256],
    len: usize,
    added_since_sweep: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self { by_tail: HashMap::new(), last_bytes: [false; 256], len: 0, added_since_sweep: 0 }
    }
}

impl Index {
    fn insert(&mut self, value: String, forget_after: Option<SystemTime>) {
        let Some(tail) = tail_of(value.as_bytes()) else { return };
        let bucket = self.by_tail.entry(tail).or_default();
        if let Some(known) = bucket.iter_mut().find(|known| *known.value == *value) {
            // A value registered for good stays registered for good.
            known.forget_after = match (known.forget_after, forget_after) {
                (Some(old), Some(new)) => Some(old.max(new)),
                _ => None,
            };
            return;
        }
        self.last_bytes[usize::from(tail[MIN_SECRET_LEN - 1])] = true;
        bucket.push(Known { value: value.into_boxed_str(), forget_after });
        self.len += 1;
        self.added_since_sweep += 1;
        if self.added_since_sweep >= SWEEP_EVERY.max(self.len / 2) {
            self.sweep(SystemTime::now());
        }
    }

    /// Drops tokens whose time has passed.
    fn sweep(&mut self, now: SystemTime) {
        self.by_tail.retain(|_, bucket| {
            bucket.retain(|known| known.forget_after.is_none_or(|after| after > now));
            !bucket.is_empty()
        });
        self.len = self.by_tail.values().map(Vec::len).sum();
        self.added_since_sweep = 0;
    }

    /// Byte ranges of every occurrence of a known value in `text`, in order of their end.
    fn find(&self, text: &str) -> Vec<Range<usize>> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        if self.len == 0 {
            return found;
        }
        for end in MIN_SECRET_LEN..=bytes.len() {
            if !self.last_bytes[usize::from(bytes[end - 1])] {
                continue;
            }
            let Some(bucket) = tail_of(&bytes[..end]).and_then(|tail| self.by_tail.get(&tail))
            else {
                continue;
            };
            for known in bucket {
                if bytes[..end].ends_with(known.value.as_bytes()) {
                    found.push(end - known.value.len()..end);
                }
            }
        }
        found
    }
}

/// The last [`MIN_SECRET_LEN`] bytes, when there are that many.
fn tail_of(bytes: &[u8]) -> Option<Tail> {
    let start = bytes.len().checked_sub(MIN_SECRET_LEN)?;
    bytes.get(start..)?.try_into().ok()
}

/// `text` with `ranges` (byte ranges of whole values, so on char boundaries) replaced.
fn splice(text: &str, mut ranges: Vec<Range<usize>>) -> String {
    ranges.sort_by_key(|range| range.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for range in ranges {
        if range.start >= copied {
            out.push_str(&text[copied..range.start]);
            out.push_str(REDACTED);
        }
        // Overlapping values: the union of both is hidden.
        copied = copied.max(range.end);
    }
    out.push_str(&text[copied..]);
    out
}

/// Known secrets plus credential-shaped patterns. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct Redactor {
    // A std lock: it is never held across an await, and reads vastly outnumber writes.
    index: Arc<RwLock<Index>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n_secrets = self.index.read().map_or(0, |index| index.len);
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

    /// Registers one more secret value for the life of the process (keys, client secrets).
    pub fn add(&self, secret: impl Into<String>) {
        self.insert(secret.into(), None);
    }

    /// Registers a token that is worthless after `expires_at`: it is hidden until a grace
    /// period after that, then forgotten, so a worker minting a token per run keeps a bounded
    /// set.
    pub fn add_expiring(&self, secret: impl Into<String>, expires_at: SystemTime) {
        self.insert(secret.into(), Some(expires_at + EXPIRED_GRACE));
    }

    fn insert(&self, secret: String, forget_after: Option<SystemTime>) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        // A poisoned lock only means a panic elsewhere; the index itself is still sound.
        let mut index = self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        index.insert(secret, forget_after);
    }

    /// How many values are registered now.
    pub fn len(&self) -> usize {
        self.index.read().map_or(0, |index| index.len)
    }

    /// True when no value is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `text` with every known secret and credential-shaped string replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let found = {
            let index = self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            index.find(text)
        };
        let out =
            if found.is_empty() { Cow::Borrowed(text) } else { Cow::Owned(splice(text, found)) };
        match SHAPES.replace_all(&out, REDACTED) {
            Cow::Borrowed(_) => out,
            Cow::Owned(replaced) => Cow::Owned(replaced),
        }
    }

    /// Sweeps as if the time were `now` (tests: expiry without waiting).
    #[cfg(test)]
    fn sweep_at(&self, now: SystemTime) {
        let mut index = self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        index.sweep(now);
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
        check(&redactor, "sim-client-secret", "[REDACTED]");
        check(&redactor, "a short word", "a short word");
        check(&redactor, "nothing here", "nothing here");
        check(&redactor, "", "");
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

    #[test]
    fn values_sharing_a_tail_overlapping_and_repeated() {
        let redactor = Redactor::new(["first-0123456789", "second-0123456789", "456789-and-more"]);
        check(&redactor, "a first-0123456789 b", "a [REDACTED] b");
        check(&redactor, "a second-0123456789 b", "a [REDACTED] b");
        // Overlapping values hide their union; repeats are each hidden.
        check(&redactor, "first-0123456789-and-more!", "[REDACTED]!");
        check(&redactor, "second-0123456789second-0123456789", "[REDACTED][REDACTED]");
        // Multi-byte text around a value keeps its characters.
        check(&redactor, "é first-0123456789 ü", "é [REDACTED] ü");
    }

    #[test]
    fn thousands_of_tokens_are_all_found() {
        let redactor = Redactor::default();
        let until = SystemTime::now() + Duration::from_secs(3600);
        let tokens: Vec<String> = (0..5000).map(|i| format!("tok-{i:06}-{}", i * 7919)).collect();
        for token in &tokens {
            redactor.add_expiring(token.clone(), until);
        }
        assert_eq!(redactor.len(), 5000);
        for token in tokens.iter().step_by(97) {
            check(
                &redactor,
                &format!("body {{\"token\":\"{token}\"}}"),
                "body {\"token\":\"[REDACTED]\"}",
            );
        }
    }

    #[test]
    fn expired_tokens_are_forgotten_and_permanent_values_are_not() {
        let redactor = Redactor::new(["permanent-secret"]);
        let soon = SystemTime::now() + Duration::from_secs(60);
        redactor.add_expiring("short-lived-token", soon);
        // Registering a permanent value again as expiring must not make it expire.
        redactor.add_expiring("permanent-secret", soon);
        check(&redactor, "short-lived-token", "[REDACTED]");
        redactor.sweep_at(soon + Duration::from_secs(1));
        check(&redactor, "short-lived-token", "[REDACTED]");
        redactor.sweep_at(soon + EXPIRED_GRACE + Duration::from_secs(1));
        check(&redactor, "short-lived-token", "short-lived-token");
        check(&redactor, "permanent-secret", "[REDACTED]");
        assert_eq!(redactor.len(), 1);
    }

    #[test]
    fn the_set_stays_bounded_under_steady_minting() {
        let redactor = Redactor::default();
        let past = SystemTime::now() - EXPIRED_GRACE - Duration::from_secs(1);
        for i in 0..(SWEEP_EVERY * 3) {
            redactor.add_expiring(format!("expired-token-{i:08}"), past);
        }
        assert!(redactor.len() <= SWEEP_EVERY, "{} tokens kept", redactor.len());
    }
}
