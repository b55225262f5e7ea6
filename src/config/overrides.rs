//! The environment's layer: which variable sets which key, and the variables that look meant
//! for the configuration but set nothing.
//!
//! `AGENTCRON__SECTION__KEY` sets `section.key` (deeper keys add segments:
//! `AGENTCRON__ANTHROPIC__AGENT__MODEL`); the names are matched without regard to case, so
//! `AGENTCRON__WORKER__concurrency` sets `worker.concurrency` too. The conventional variables
//! (`REDIS_URL`, …) set their key below the overrides. Any other variable whose name begins
//! with `AGENTCRON_` is a [`Warning`] naming it, with the variable that would work when one is
//! near: the single-underscore `AGENTCRON_REDIS__URL`, an unknown key or section, a section
//! named alone, a key set twice. This module must not read the process environment (it gets an
//! [`Env`]) nor judge values.

use std::collections::BTreeMap;

use super::Warning;
use super::env::{CONVENTIONAL, Env, NOT_KEYS, OVERRIDE_PREFIX};
use super::read::{Kind, Known};

/// What the environment sets, and the variables it ignores.
#[derive(Debug, Default)]
pub(super) struct Overrides {
    /// Key → (variable, value); an `AGENTCRON__` variable wins over a conventional one.
    by_key: BTreeMap<String, (String, String)>,
    /// Variables that set no key whatever the file says, with why.
    stray: Vec<(String, Stray)>,
}

#[derive(Debug)]
enum Stray {
    /// `AGENTCRON_` followed by something else than a second underscore.
    OneUnderscore(String),
    /// Another variable sets the same key, in another case, and wins.
    Twice(String),
}

impl Overrides {
    pub(super) fn from_env(env: &Env) -> Self {
        let mut overrides = Self::default();
        for (var, key) in CONVENTIONAL {
            if let Some(value) = env.get(var) {
                overrides.by_key.insert(key.to_owned(), (var.to_owned(), value.to_owned()));
            }
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (var, value) in env.iter() {
            let upper = var.to_ascii_uppercase();
            if !upper.starts_with("AGENTCRON_") || NOT_KEYS.contains(&upper.as_str()) {
                continue;
            }
            let Some(rest) = upper.strip_prefix(OVERRIDE_PREFIX) else {
                let guess = key_of(&upper["AGENTCRON_".len()..]);
                overrides.stray.push((var.to_owned(), Stray::OneUnderscore(guess)));
                continue;
            };
            let key = key_of(rest);
            if let Some(first) = seen.get(&key) {
                overrides.stray.push((var.to_owned(), Stray::Twice(first.clone())));
                continue;
            }
            seen.insert(key.clone(), var.to_owned());
            overrides.by_key.insert(key, (var.to_owned(), value.to_owned()));
        }
        overrides
    }

    /// The variable that sets `key`, and its value.
    pub(super) fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.by_key.get(key).map(|(var, value)| (var.as_str(), value.as_str()))
    }

    /// A warning for every `AGENTCRON_` variable that sets no key of `known`, by name.
    pub(super) fn warnings(&self, known: &Known) -> Vec<Warning> {
        let mut warnings: Vec<Warning> = self
            .by_key
            .iter()
            .filter(|(_, (var, _))| var.to_ascii_uppercase().starts_with(OVERRIDE_PREFIX))
            .filter_map(|(key, (var, _))| {
                let message = match known.get(key) {
                    Some(Kind::Value) => return None,
                    Some(Kind::Tables) => {
                        format!("`{key}` is a list of tables, which only the file can set, so it is ignored")
                    }
                    None if is_section(known, key) => {
                        format!("names the section [{key}], not a key of it, so it is ignored")
                    }
                    None => with_hint("maps to no configuration key", key, known),
                };
                Some(Warning { var: var.clone(), message })
            })
            .collect();
        for (var, stray) in &self.stray {
            let message = match stray {
                Stray::OneUnderscore(guess) => with_hint(
                    &format!("overrides begin with {OVERRIDE_PREFIX} (two underscores)"),
                    guess,
                    known,
                ),
                Stray::Twice(first) => {
                    format!("{first} sets the same key and wins, so this one is ignored")
                }
            };
            warnings.push(Warning { var: var.clone(), message });
        }
        warnings.sort_by(|a, b| a.var.cmp(&b.var));
        warnings
    }
}

/// The key a variable's name (after the prefix) sets: `WORKER__CONCURRENCY` → `worker.concurrency`.
fn key_of(rest: &str) -> String {
    rest.to_ascii_lowercase().split("__").collect::<Vec<_>>().join(".")
}

/// The variable that sets `key`: `worker.concurrency` → `AGENTCRON__WORKER__CONCURRENCY`.
fn var_of(key: &str) -> String {
    format!("{OVERRIDE_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

fn is_section(known: &Known, key: &str) -> bool {
    let prefix = format!("{key}.");
    known.keys().any(|known_key| known_key.starts_with(&prefix))
}

/// `message`, "so it is ignored", and the variable of the valid key nearest `key` when one is
/// near.
fn with_hint(message: &str, key: &str, known: &Known) -> String {
    let settable = known
        .iter()
        .filter(|(known_key, kind)| **kind == Kind::Value && !known_key.contains('['))
        .map(|(known_key, _)| known_key.as_str());
    match nearest(key, settable) {
        Some(near) => format!("{message}, so it is ignored; did you mean {}?", var_of(near)),
        None => format!("{message}, so it is ignored"),
    }
}

/// The candidate nearest `name` by edit distance (a transposition counts as one edit), when it
/// is near enough to be the likely intent: at most a third of the name's length apart.
pub(super) fn nearest<'k>(
    name: &str,
    candidates: impl Iterator<Item = &'k str>,
) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_nearest(name: &str, expect: Option<&str>) {
        let candidates = ["concurrency", "run_timeout", "lease", "heartbeat", "http", "prefix"];
        assert_eq!(nearest(name, candidates.into_iter()), expect, "{name}");
    }

    #[test]
    fn nearest_keys() {
        check_nearest("concurency", Some("concurrency"));
        check_nearest("concurrnecy", Some("concurrency"));
        check_nearest("htttp", Some("http"));
        check_nearest("leese", Some("lease"));
        check_nearest("colour", None);
        check_nearest("password", None);
        check_nearest("x", None);
    }

    #[test]
    fn names_map_to_keys_and_back() {
        assert_eq!(key_of("ANTHROPIC__AGENT__MODEL"), "anthropic.agent.model");
        assert_eq!(key_of("Worker__Concurrency"), "worker.concurrency");
        assert_eq!(var_of("retry.max_attempts"), "AGENTCRON__RETRY__MAX_ATTEMPTS");
    }
}
