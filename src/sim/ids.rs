//! Ids, timestamps and the seeded pseudo-random numbers of the simulator.
//!
//! Ids look like the real ones (`agent_011…`, `cfg_…`, `sevt_011…`) and sort in creation order,
//! so the stores can be plain `BTreeMap`s and lists come out oldest first. Nothing here touches
//! shared state except the one atomic counter in [`IdGen`].

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SplitMix64: tiny, seedable and good enough for fixtures and fault rates. A bijection on
/// `u64`, which is what makes [`IdGen`] ids unique.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A float in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // 53 random bits are exactly representable in an f64 mantissa.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a: a stable hash for deriving fixtures from an identifier (std's hasher is not
/// guaranteed stable across releases).
pub(crate) fn stable_hash(seed: u64, text: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix(hash)
}

/// Makes ids. The counter is shared by all kinds, so every id is unique in the process.
#[derive(Debug)]
pub(crate) struct IdGen {
    seed: u64,
    counter: AtomicU64,
}

impl IdGen {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, counter: AtomicU64::new(1) }
    }

    /// An Anthropic-style id: `<prefix>_011` + 21 base62 characters, sortable by creation.
    pub(crate) fn anthropic(&self, prefix: &str) -> String {
        // Relaxed is enough: only uniqueness matters, not ordering with other memory.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = format!("{prefix}_011");
        push_base62(&mut id, n, 9);
        push_base62(&mut id, mix(n ^ self.seed), 12);
        id
    }

    /// A Scalekit-style id: `<prefix>_` + decimal digits, e.g. `cfg_85630864460904897`.
    pub(crate) fn scalekit(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Keep them 17 digits long and increasing, like the real ones.
        format!("{prefix}_{}", 70_000_000_000_000_000u64 + n * 1_000 + mix(n ^ self.seed) % 1_000)
    }
}

fn push_base62(out: &mut String, mut value: u64, width: usize) {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.extend(digits.into_iter().map(char::from));
}

/// A request id for error bodies and the `request-id` header (`req_011…`).
pub(crate) fn request_id() -> String {
    let random = uuid::Uuid::new_v4().as_u128();
    let mut id = String::from("req_011");
    push_base62(&mut id, (random >> 64) as u64, 11);
    push_base62(&mut id, random as u64, 11);
    id
}

/// RFC 3339 in UTC with milliseconds and `Z`, as both APIs write timestamps.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 in whole seconds (protojson `Timestamp`, as Scalekit writes it).
pub(crate) fn rfc3339_secs(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Now, as [`rfc3339`].
pub(crate) fn now() -> String {
    rfc3339(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sortable_and_shaped_like_the_real_ones() {
        let ids = IdGen::new(7);
        let a = ids.anthropic("agent");
        let b = ids.anthropic("agent");
        assert!(a.starts_with("agent_011") && a.len() == "agent_011".len() + 21, "{a}");
        assert!(a < b);
        assert!(ids.scalekit("cfg").starts_with("cfg_"));
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut one, mut two) = (Rng::new(3), Rng::new(3));
        for _ in 0..100 {
            let x = one.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert_eq!(x.to_bits(), two.next_f64().to_bits());
        }
        assert_eq!(stable_hash(1, "alice"), stable_hash(1, "alice"));
        assert_ne!(stable_hash(1, "alice"), stable_hash(2, "alice"));
    }
}
