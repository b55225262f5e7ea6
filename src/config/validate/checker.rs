//! The primitive checks validation is built from: durations, integers, floats, rates, URLs,
//! choices and names, each with its range, and the list of problems they record.
//!
//! A failed check records a [`Problem`] naming the key and where it was set, then returns a
//! default so validation can go on and report every problem at once. This module must not know
//! about sections or their defaults: `validate.rs` passes both in.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::SECOND;
use crate::config::locate::{Document, KeyPath};
use crate::config::{Origin, Problem};

const FALLBACK_URL: &str = "http://invalid.invalid/";

/// Collects problems with the origin of each key.
pub(super) struct Checker<'a> {
    path: &'a Path,
    document: &'a Document<'a>,
    /// Key → the variable whose value it took.
    env_origins: &'a BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker for values layered from `document` (the file at `path`) and the variables of
    /// `env_origins`, after the `problems` found while reading them.
    pub(super) fn new(
        path: &'a Path,
        document: &'a Document<'a>,
        env_origins: &'a BTreeMap<String, String>,
        problems: Vec<Problem>,
    ) -> Self {
        Self { path, document, env_origins, problems }
    }

    /// Whether no problem was recorded for any of `keys`, so a check across them means
    /// something.
    pub(super) fn are_valid(&self, keys: &[&str]) -> bool {
        !self.problems.iter().any(|problem| keys.contains(&problem.key.as_str()))
    }

    /// Every problem recorded, in the order found.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Records a problem with `key`; its origin is the variable that set the key, else the
    /// file's line for it (from the spans of the one parse).
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        let origin = match self.env_origins.get(key) {
            Some(var) => Origin::Env(var.clone()),
            None => Origin::File {
                path: self.path.to_path_buf(),
                line: self.document.line_of(&KeyPath::parse(key)),
            },
        };
        self.problems.push(Problem { origin, key: key.to_owned(), message: message.into() });
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(parsed) if range.contains(&parsed) => parsed,
            Ok(_) => {
                let (low, high) = (range.start(), range.end());
                let (low, high) =
                    (humantime::format_duration(*low), humantime::format_duration(*high));
                self.problem(
                    key,
                    format!("expected a duration from {low} to {high}, found {text:?}"),
                );
                default
            }
            Err(_) => {
                let message = format!(
                    "expected a duration such as \"30s\", \"15m\" or \"1h\", found {text:?}"
                );
                self.problem(key, message);
                default
            }
        }
    }

    pub(super) fn opt_duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        max: Duration,
    ) -> Option<Duration> {
        value.map(|text| self.duration(key, Some(text), Duration::ZERO, SECOND..=max))
    }

    pub(super) fn int<T: TryFrom<i64> + Copy>(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: T,
        range: RangeInclusive<i64>,
    ) -> T {
        let Some(number) = value else { return default };
        match T::try_from(number) {
            Ok(converted) if range.contains(&number) => converted,
            _ => {
                let (low, high) = (range.start(), range.end());
                self.problem(
                    key,
                    format!("expected an integer from {low} to {high}, found {number}"),
                );
                default
            }
        }
    }

    pub(super) fn float(
        &mut self,
        key: &str,
        value: Option<f64>,
        range: RangeInclusive<f64>,
    ) -> Option<f64> {
        let number = value?;
        if range.contains(&number) {
            return Some(number);
        }
        let (low, high) = (range.start(), range.end());
        self.problem(key, format!("expected a number from {low} to {high}, found {number}"));
        None
    }

    /// A rate limit, where 0 means none: `default` when unset, `None` when 0, else a number
    /// above 0 and at most `max`.
    pub(super) fn rate(
        &mut self,
        key: &str,
        value: Option<f64>,
        default: Option<f64>,
        max: f64,
    ) -> Option<f64> {
        let Some(number) = value else { return default };
        if number == 0.0 {
            return None;
        }
        if number > 0.0 && number <= max {
            return Some(number);
        }
        self.problem(
            key,
            format!("expected 0 (no limit) or a number above 0 up to {max}, found {number}"),
        );
        default
    }

    /// The URL a value that is not used stands for: it reaches no host.
    pub(super) fn unused_url() -> Url {
        Url::parse(FALLBACK_URL).expect("the fallback URL is a valid constant")
    }

    pub(super) fn url(
        &mut self,
        key: &str,
        value: Option<&str>,
        schemes: &[&str],
        missing: &str,
    ) -> Url {
        let fallback = || Url::parse(FALLBACK_URL).expect("the fallback URL is a valid constant");
        let Some(text) = value else {
            self.problem(key, format!("missing: {missing}"));
            return fallback();
        };
        match Url::parse(text.trim()) {
            Ok(url) if schemes.contains(&url.scheme()) => url,
            Ok(url) => {
                let scheme = url.scheme();
                self.problem(
                    key,
                    format!("expected a {} URL, found scheme {scheme:?}", schemes.join(" or ")),
                );
                fallback()
            }
            Err(error) => {
                // The text may hold a password: show only the parser's reason.
                self.problem(
                    key,
                    format!("expected a URL such as \"{}://host:port\": {error}", schemes[0]),
                );
                fallback()
            }
        }
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&str>,
        options: &[(&str, T)],
    ) -> T {
        let default = options[0].1;
        let Some(text) = value else { return default };
        if let Some((_, choice)) = options.iter().find(|(name, _)| *name == text) {
            return *choice;
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.problem(key, format!("expected one of {}, found {text:?}", names.join(", ")));
        default
    }

    pub(super) fn name(&mut self, key: &str, value: &str, max_len: usize) {
        let valid_chars =
            value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if value.is_empty() || value.len() > max_len || !valid_chars {
            self.problem(
                key,
                format!("expected 1 to {max_len} characters of A-Z a-z 0-9 - _ ., found {value:?}"),
            );
        }
    }
}
