//! Reads the raw configuration key by key from its two layers: the file's parsed [`Document`]
//! and the environment's [`Overrides`], the variable winning.
//!
//! Each key is read with the type it must have; a value of another type is a [`Problem`] naming
//! where it came from (the file's line, or the variable), and reading goes on, so that one
//! `config check` finds every mistake. The reader remembers every key it was asked for: that is
//! the set of valid keys, against which `unknown.rs` checks the file and `overrides.rs` the
//! environment. This module must not judge values beyond their type: `validate.rs` does.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::DeValue;

use super::locate::{Document, KeyPath};
use super::overrides::Overrides;
use super::{Origin, Problem};

/// Longest piece of a wrong value a problem shows.
const SHOWN_CHARS: usize = 40;

/// What a valid key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A value: a string, a number, a boolean or a list of strings.
    Value,
    /// An array of tables, such as `[[schedule]]`; only the file can set it.
    Tables,
}

/// Every valid key, array indices written `[]` (`schedule[].cron`), with what it holds.
pub(super) type Known = BTreeMap<String, Kind>;

/// Reads typed values and collects the problems of their types.
pub(super) struct Reader<'a> {
    path: &'a Path,
    document: &'a Document<'a>,
    overrides: &'a Overrides,
    problems: Vec<Problem>,
    known: Known,
    /// Key → the variable whose value it took.
    env_origins: BTreeMap<String, String>,
}

/// What reading found: the problems of types, the valid keys, and which variable set which key.
pub(super) struct Read {
    pub(super) problems: Vec<Problem>,
    pub(super) known: Known,
    pub(super) env_origins: BTreeMap<String, String>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(
        path: &'a Path,
        document: &'a Document<'a>,
        overrides: &'a Overrides,
    ) -> Self {
        Self {
            path,
            document,
            overrides,
            problems: Vec::new(),
            known: Known::new(),
            env_origins: BTreeMap::new(),
        }
    }

    pub(super) fn finish(self) -> Read {
        Read { problems: self.problems, known: self.known, env_origins: self.env_origins }
    }

    pub(super) fn string(&mut self, key: &str) -> Option<String> {
        let from_file = |value: &DeValue<'_>| match value {
            DeValue::String(text) => Ok(text.to_string()),
            other => Err(mismatch("a string", other)),
        };
        self.read(key, from_file, |text| Ok(text.to_owned()))
    }

    pub(super) fn int(&mut self, key: &str) -> Option<i64> {
        let from_env =
            |text: &str| text.trim().parse().map_err(|_| env_mismatch("an integer", text));
        self.read(key, integer, from_env)
    }

    pub(super) fn float(&mut self, key: &str) -> Option<f64> {
        let from_file = |value: &DeValue<'_>| match value {
            DeValue::Float(number) => {
                let float = number.as_str().parse::<f64>().map_err(|error| error.to_string())?;
                if float.is_infinite() && !number.as_str().contains("inf") {
                    return Err("floating-point number overflowed".to_owned());
                }
                Ok(float)
            }
            // An integer is a number too: `creates_per_minute = 300`.
            DeValue::Integer(_) => integer(value).map(|n| n as f64),
            other => Err(mismatch("a number", other)),
        };
        let from_env = |text: &str| text.trim().parse().map_err(|_| env_mismatch("a number", text));
        self.read(key, from_file, from_env)
    }

    pub(super) fn bool(&mut self, key: &str) -> Option<bool> {
        let from_file = |value: &DeValue<'_>| match value {
            DeValue::Boolean(flag) => Ok(*flag),
            other => Err(mismatch("true or false", other)),
        };
        let from_env = |text: &str| match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(env_mismatch("true or false", text)),
        };
        self.read(key, from_file, from_env)
    }

    /// A list of strings; from the environment, comma-separated (`a, b`).
    pub(super) fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        let from_file = |value: &DeValue<'_>| match value {
            DeValue::Array(items) => items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(text) => Ok(text.to_string()),
                    other => Err(mismatch("a list of strings", other) + " in the list"),
                })
                .collect(),
            other => Err(mismatch("a list of strings", other)),
        };
        let from_env = |text: &str| {
            Ok(text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        };
        self.read(key, from_file, from_env)
    }

    /// How many tables the file's array of tables `key` holds (`[[schedule]]`), `None` when the
    /// file does not set it (or sets something else, a problem).
    pub(super) fn tables(&mut self, key: &str) -> Option<usize> {
        self.known.insert(normalized(key), Kind::Tables);
        let value = self.document.get(&KeyPath::parse(key))?;
        match value.get_ref() {
            DeValue::Array(items) if items.iter().all(|item| item.get_ref().is_table()) => {
                Some(items.len())
            }
            other => {
                let message = mismatch("an array of tables such as [[schedule]]", other);
                self.file_problem(key, message);
                None
            }
        }
    }

    /// Reads `key` from the file, then from the environment (which wins). A value of the wrong
    /// type in either is a problem, and the key is then left unset.
    fn read<T>(
        &mut self,
        key: &str,
        from_file: impl Fn(&DeValue<'_>) -> Result<T, String>,
        from_env: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.known.insert(normalized(key), Kind::Value);
        // The file's value is checked even when a variable overrides it: it is still a mistake.
        let from_file =
            match self.document.get(&KeyPath::parse(key)).map(|v| from_file(v.get_ref())) {
                Some(Ok(value)) => Some(value),
                Some(Err(message)) => {
                    self.file_problem(key, format!("invalid type: {message}"));
                    None
                }
                None => None,
            };
        let Some((var, text)) = self.overrides.get(key) else { return from_file };
        self.env_origins.insert(key.to_owned(), var.to_owned());
        match from_env(text) {
            Ok(value) => Some(value),
            Err(message) => {
                let origin = Origin::Env(var.to_owned());
                let message = format!("invalid type: {message}");
                self.problems.push(Problem { origin, key: key.to_owned(), message });
                None
            }
        }
    }

    fn file_problem(&mut self, key: &str, message: String) {
        let line = self.document.line_of(&KeyPath::parse(key));
        let origin = Origin::File { path: self.path.to_path_buf(), line };
        self.problems.push(Problem { origin, key: key.to_owned(), message });
    }
}

/// `key` with every array index written `[]`: `schedule[2].cron` → `schedule[].cron`.
pub(super) fn normalized(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

fn integer(value: &DeValue<'_>) -> Result<i64, String> {
    match value {
        DeValue::Integer(number) => i64::from_str_radix(number.as_str(), number.radix())
            .map_err(|_| "integer number overflowed".to_owned()),
        other => Err(mismatch("an integer", other)),
    }
}

/// "expected an integer, found string \"many\"": the value is shown only for scalars, shortened.
pub(super) fn mismatch(expected: &str, found: &DeValue<'_>) -> String {
    let shown = match found {
        DeValue::String(text) => format!("string {:?}", shortened(text)),
        DeValue::Integer(number) => format!("integer {number}"),
        DeValue::Float(number) => format!("float {}", number.as_str()),
        DeValue::Boolean(flag) => format!("boolean {flag}"),
        DeValue::Datetime(_) => "a date-time".to_owned(),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    };
    format!("expected {expected}, found {shown}")
}

/// Only keys that are not strings fail to read from the environment, so the value shown is a
/// mistyped number or flag, never a secret.
fn env_mismatch(expected: &str, text: &str) -> String {
    format!("expected {expected}, found {:?}", shortened(text))
}

fn shortened(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(SHOWN_CHARS).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_normalized() {
        assert_eq!(normalized("schedule[12].users[3]"), "schedule[].users[]");
        assert_eq!(normalized("worker.concurrency"), "worker.concurrency");
    }

    #[test]
    fn values_are_shortened() {
        let long = "x".repeat(100);
        assert_eq!(shortened(&long).chars().count(), SHOWN_CHARS + 1);
        assert_eq!(shortened("abc"), "abc");
    }
}
