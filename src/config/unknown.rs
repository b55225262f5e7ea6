//! The file's keys that are not configuration keys: each is a [`Problem`] at its line, with the
//! nearest valid key of its table ("did you mean `concurrency`?") or the list of them, and the
//! rest of the file is still checked.
//!
//! The valid keys are the ones `read.rs` was asked for, so this list cannot drift from what is
//! read. This module must not judge values: a valid key's value was checked when it was read.

use std::collections::BTreeSet;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::locate::Document;
use super::overrides::nearest;
use super::read::{Kind, Known, mismatch};
use super::{Origin, Problem};

/// Every key of `document` that `known` lacks, in file order.
pub(super) fn problems(path: &Path, document: &Document<'_>, known: &Known) -> Vec<Problem> {
    let mut walk = Walk { path, document, known, problems: Vec::new() };
    walk.table(document.root().get_ref(), "", "");
    walk.problems
}

struct Walk<'a> {
    path: &'a Path,
    document: &'a Document<'a>,
    known: &'a Known,
    problems: Vec<Problem>,
}

impl Walk<'_> {
    /// Checks the keys of `table`, whose key is `shown` (with indices) and `normal` (with `[]`).
    fn table(&mut self, table: &DeTable<'_>, shown: &str, normal: &str) {
        for (key, value) in table {
            let name: &str = key.get_ref();
            let shown = joined(shown, if name.is_empty() { "\"\"" } else { name });
            let normal = joined(normal, name);
            let line = self.document.line_at(key.span().start);
            match (self.known.get(&normal), value.get_ref()) {
                (Some(Kind::Value), _) => {}
                (Some(Kind::Tables), DeValue::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        if let DeValue::Table(item) = item.get_ref() {
                            self.table(item, &format!("{shown}[{i}]"), &format!("{normal}[]"));
                        }
                    }
                }
                // A wrong type of an array of tables was reported when it was read.
                (Some(Kind::Tables), _) => {}
                (None, DeValue::Table(inner)) if self.is_section(&normal) => {
                    self.table(inner, &shown, &normal);
                }
                (None, other) if self.is_section(&normal) => {
                    let message = mismatch(&format!("the section [{shown}]"), other);
                    self.push(shown, line, format!("invalid type: {message}"));
                }
                (None, other) => {
                    let what = if other.is_table() { "unknown section" } else { "unknown key" };
                    let message = self.hint(what, name, table_of(&normal));
                    self.push(shown, line, message);
                }
            }
        }
    }

    fn is_section(&self, normal: &str) -> bool {
        let prefix = format!("{normal}.");
        self.known.keys().any(|key| key.starts_with(&prefix))
    }

    /// "unknown key; did you mean `x`?", else the valid keys of the table.
    fn hint(&self, what: &str, name: &str, table: &str) -> String {
        let siblings = siblings(self.known, table);
        if let Some(near) = nearest(name, siblings.iter().map(String::as_str)) {
            return format!("{what}; did you mean `{near}`?");
        }
        let list: Vec<&str> = siblings.iter().map(String::as_str).collect();
        format!("{what}; expected one of {}", list.join(", "))
    }

    fn push(&mut self, key: String, line: usize, message: String) {
        let origin = Origin::File { path: self.path.to_path_buf(), line: Some(line) };
        self.problems.push(Problem { origin, key, message });
    }
}

fn joined(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") }
}

/// The table part of a normalized key: `schedule[].cron` → `schedule[]`, `redis` → ``.
fn table_of(normal: &str) -> &str {
    normal.rsplit_once('.').map_or("", |(table, _)| table)
}

/// The names valid directly inside `table` (`""` for the top level).
fn siblings(known: &Known, table: &str) -> BTreeSet<String> {
    known
        .keys()
        .filter_map(|key| {
            let rest = if table.is_empty() {
                key.as_str()
            } else {
                key.strip_prefix(table)?.strip_prefix('.')?
            };
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            Some(rest[..end].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_of_tables() {
        let known: Known = [
            ("redis.url", Kind::Value),
            ("anthropic.agent.model", Kind::Value),
            ("schedule", Kind::Tables),
            ("schedule[].cron", Kind::Value),
        ]
        .into_iter()
        .map(|(key, kind)| (key.to_owned(), kind))
        .collect();
        let names = |table: &str| siblings(&known, table).into_iter().collect::<Vec<_>>();
        assert_eq!(names(""), ["anthropic", "redis", "schedule"]);
        assert_eq!(names("anthropic"), ["agent"]);
        assert_eq!(names("schedule[]"), ["cron"]);
        assert_eq!(table_of("schedule[].cron"), "schedule[]");
        assert_eq!(table_of("redis"), "");
    }
}
