//! Finds where a configuration key sits in the TOML text, and the value the file gives it.
//!
//! [`Document`] is the file parsed once, with the span of every key and value kept. The layering
//! reads values from it and validation asks it for lines, so no error needs a second parse to
//! name its line. This module must never decide whether a value is valid: it only answers
//! "where".

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A dotted key path such as `schedule[1].cron`, built from the outermost section inwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    /// Parses `a.b[2].c` into segments. Key names never contain dots or brackets here.
    pub(crate) fn parse(path: &str) -> Self {
        let mut segments = Vec::new();
        for part in path.split('.').filter(|part| !part.is_empty()) {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_owned()));
            }
            for index in rest.split('[') {
                if let Ok(index) = index.trim_end_matches(']').parse() {
                    segments.push(Segment::Index(index));
                }
            }
        }
        Self(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(name) if i == 0 => f.write_str(name)?,
                Segment::Key(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&byte| byte == b'\n').count() + 1
}

/// The configuration file's text, parsed once, with the span of every key and value.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> Document<'a> {
    /// Parses `text` as TOML. This is the only parse of the file per load.
    ///
    /// # Errors
    /// The syntax error, with its span in `text`.
    pub(crate) fn parse(text: &'a str) -> Result<Self, toml::de::Error> {
        Ok(Self { text, root: DeTable::parse(text)? })
    }

    /// The parsed top-level table, spans included.
    pub(crate) fn root(&self) -> &Spanned<DeTable<'a>> {
        &self.root
    }

    /// The line where `path` is written, if the file sets it at all.
    pub(crate) fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let span = span_of(self.root.get_ref(), &path.0)?;
        Some(line_at(self.text, span.start))
    }

    /// The value the file gives `path`, if it sets it.
    pub(crate) fn get(&self, path: &KeyPath) -> Option<&Spanned<DeValue<'a>>> {
        let (Segment::Key(name), rest) = path.0.split_first()? else { return None };
        let (_, value) = self.root.get_ref().iter().find(|(key, _)| key.get_ref() == name)?;
        rest.iter().try_fold(value, |value, segment| match (value.get_ref(), segment) {
            (DeValue::Table(table), Segment::Key(name)) => {
                table.iter().find(|(key, _)| key.get_ref() == name).map(|(_, value)| value)
            }
            (DeValue::Array(items), Segment::Index(index)) => items.get(*index),
            _ => None,
        })
    }

    /// The 1-based line of a byte offset in the file.
    pub(crate) fn line_at(&self, offset: usize) -> usize {
        line_at(self.text, offset)
    }
}

fn span_of(table: &DeTable<'_>, segments: &[Segment]) -> Option<Range<usize>> {
    let (Segment::Key(name), rest) = segments.split_first()? else { return None };
    let (key, value) = table.iter().find(|(key, _)| key.get_ref() == name)?;
    if rest.is_empty() {
        return Some(key.span());
    }
    span_in_value(value, rest).or_else(|| Some(key.span()))
}

fn span_in_value(value: &Spanned<DeValue<'_>>, segments: &[Segment]) -> Option<Range<usize>> {
    match (value.get_ref(), segments.first()?) {
        (DeValue::Table(table), Segment::Key(_)) => span_of(table, segments),
        (DeValue::Array(items), Segment::Index(index)) => {
            let item = items.get(*index)?;
            if segments.len() == 1 {
                return Some(item.span());
            }
            span_in_value(item, &segments[1..]).or_else(|| Some(item.span()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[redis]\nurl = \"x\"\n\n[[schedule]]\nname = \"a\"\n\n[[schedule]]\nname = \"b\"\ncron = 5\n";

    fn check_line(path: &str, expect: Option<usize>) {
        let document = Document::parse(TEXT).unwrap();
        assert_eq!(document.line_of(&KeyPath::parse(path)), expect, "{path}");
    }

    #[test]
    fn lines_of_keys() {
        check_line("redis.url", Some(2));
        check_line("schedule[1].cron", Some(9));
        check_line("schedule[0].name", Some(5));
        check_line("worker.concurrency", None);
    }

    #[test]
    fn values_of_keys() {
        let document = Document::parse(TEXT).unwrap();
        let get = |path: &str| document.get(&KeyPath::parse(path)).map(|v| v.get_ref().type_str());
        assert_eq!(get("redis.url"), Some("string"));
        assert_eq!(get("schedule[1].cron"), Some("integer"));
        assert_eq!(get("schedule"), Some("array"));
        assert_eq!(get("schedule[2].cron"), None);
        assert_eq!(get("redis.url.x"), None);
    }

    #[test]
    fn key_path_round_trips() {
        for path in ["a", "a.b", "schedule[3].users[0]"] {
            assert_eq!(KeyPath::parse(path).to_string(), path);
        }
    }
}
