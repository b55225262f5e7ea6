//! Prompt templates: `{name}` is a value, `{name|default}` a value with a default, `{{` and
//! `}}` a literal brace. Pure: the values come from the caller (the built-ins `user`,
//! `run_id`, `local_time`, and the user's profile); this module must not read them.
//!
//! Parsing is lenient on purpose: a brace that does not open a placeholder (`{"a": 1}`, a
//! lone `}`) is text, so a prompt written before templates existed renders as it did. Only a
//! placeholder whose value is missing and has no default is an error, and it is one the caller
//! reports (`config check`, or the run fails with `missing_value:<name>`), never a literal
//! placeholder sent to the agent.

/// How `{local_time}` reads: "Monday 15 March 2027, 08:00 CET".
pub const LOCAL_TIME_FORMAT: &str = "%A %-d %B %Y, %H:%M %Z";

/// The placeholders every run has, whatever the user's profile; they win over its values.
pub const BUILTINS: [&str; 3] = ["user", "run_id", "local_time"];

/// Longest placeholder name.
const MAX_NAME: usize = 64;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value { name: String, default: Option<String> },
}

/// A placeholder had no value and no default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the prompt uses {{{0}}}, which has no value and no default")]
pub struct Missing(pub String);

/// Whether `name` can name a placeholder (and so a profile value): `[A-Za-z_][A-Za-z0-9_]*`,
/// at most 64 bytes.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_NAME
}

impl Template {
    /// Parses `text`; never fails (see the module doc).
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let tail = &rest[at..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
            } else if let Some((part, len)) =
                tail.starts_with('{').then(|| placeholder(tail)).flatten()
            {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &tail[len..];
            } else {
                literal.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Self { parts }
    }

    /// The names of the placeholders, in order, each once, with whether it has a default.
    pub fn names(&self) -> Vec<(&str, bool)> {
        let mut names: Vec<(&str, bool)> = Vec::new();
        for part in &self.parts {
            if let Part::Value { name, default } = part
                && !names.iter().any(|(seen, _)| seen == name)
            {
                names.push((name, default.is_some()));
            }
        }
        names
    }

    /// The placeholders that take a value from the profile (not [`BUILTINS`]), each once,
    /// with whether it has a default.
    pub fn profile_names(&self) -> Vec<(&str, bool)> {
        self.names().into_iter().filter(|(name, _)| !BUILTINS.contains(name)).collect()
    }

    /// Whether the template has any placeholder.
    pub fn has_values(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Value { .. }))
    }

    /// The text with every placeholder replaced by `lookup(name)`, else its default.
    ///
    /// # Errors
    /// [`Missing`] naming the first placeholder with neither.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Result<String, Missing> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value { name, default } => {
                    let value = lookup(name).or(default.as_deref());
                    out.push_str(value.ok_or_else(|| Missing(name.clone()))?);
                }
            }
        }
        Ok(out)
    }
}

/// The placeholder at the start of `text` (which starts with `{`) and its length in bytes.
fn placeholder(text: &str) -> Option<(Part, usize)> {
    let inner_end = text.find('}')?;
    let inner = &text[1..inner_end];
    if inner.contains('{') {
        return None;
    }
    let (name, default) = match inner.split_once('|') {
        Some((name, default)) => (name, Some(default.to_owned())),
        None => (inner, None),
    };
    is_name(name).then(|| (Part::Value { name: name.to_owned(), default }, inner_end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, values: &[(&'static str, &'static str)]) -> Result<String, Missing> {
        Template::parse(text)
            .render(|name| values.iter().find(|(key, _)| *key == name).map(|(_, value)| *value))
    }

    #[test]
    fn values_defaults_and_escapes() {
        let values = [("name", "Ada"), ("user", "ada@example.com")];
        assert_eq!(
            render("Triage {name}'s inbox; reply in {language|English}", &values),
            Ok("Triage Ada's inbox; reply in English".to_owned())
        );
        assert_eq!(render("{{user}} is {user}", &values), Ok("{user} is ada@example.com".into()));
        assert_eq!(render("a }} b", &values), Ok("a } b".to_owned()));
        assert_eq!(render("{empty|}x", &values), Ok("x".to_owned()));
    }

    #[test]
    fn a_value_without_default_is_missing() {
        assert_eq!(render("Hi {name}", &[]), Err(Missing("name".to_owned())));
        assert_eq!(Template::parse("{a} {b|x} {a}").names(), vec![("a", false), ("b", true)]);
    }

    #[test]
    fn braces_that_open_no_placeholder_are_text() {
        for text in [r#"{"a": 1}"#, "a { b", "a } b", "{ name }", "{1x}", "{}"] {
            let expected = text.replace("}}", "}");
            assert_eq!(render(text, &[]), Ok(expected), "{text}");
        }
        assert!(!Template::parse(r#"{"a": 1}"#).has_values());
    }
}
