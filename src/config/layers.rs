//! Layers the configuration file and the environment into one [`RawConfig`].
//!
//! [`parse_layers`] parses the file's text exactly once, into a [`Document`] that keeps every
//! span. The same parsed table is checked strictly against [`RawConfig`] (so a wrong type or an
//! unknown key names its line), then handed to the `config` crate as a [`config::Source`] below
//! the two environment layers. The `config` crate never sees the text, so it cannot parse it a
//! second time. This module must not validate values or read files and the process environment:
//! `config.rs` hands it the text and an [`Env`] snapshot, and `validate.rs` checks the values.

use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::env::{Env, OVERRIDE_PREFIX};
use super::locate::{self, Document};
use super::raw::RawConfig;
use super::{ConfigError, Origin, Problem, Result};

/// Parses `text` once, checks it strictly (for positions), then layers the environment over it.
///
/// Returns the parsed document too, so that validation can name the line of each problem.
///
/// # Errors
/// [`ConfigError::Invalid`] with the one problem that stopped parsing or layering.
pub(super) fn parse_layers<'a>(
    path: &Path,
    text: &'a str,
    env: &Env,
) -> Result<(Document<'a>, RawConfig)> {
    let document = Document::parse(text).map_err(|error| {
        // A syntax error leaves no table to find the key in.
        ConfigError::Invalid(vec![file_problem(path, text, None, &error)])
    })?;
    // Deserialising from the parsed table gives the same messages and spans as `toml::from_str`.
    let strict = toml::de::Deserializer::from(document.root().clone());
    if let Err(error) = RawConfig::deserialize(strict) {
        return Err(ConfigError::Invalid(vec![file_problem(path, text, Some(&document), &error)]));
    }
    let env_problem = |error| ConfigError::Invalid(vec![env_problem(env, &error)]);
    let file = ParsedFile::from_document(&document).map_err(env_problem)?;
    let with_prefix = |vars| {
        config::Environment::with_prefix("AGENTCRON")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(vars))
    };
    let raw = config::Config::builder()
        .add_source(file)
        .add_source(with_prefix(env.conventional()))
        .add_source(with_prefix(env.overrides()))
        .build()
        .and_then(config::Config::try_deserialize::<RawConfig>)
        .map_err(env_problem)?;
    Ok((document, raw))
}

/// The file's values, converted from the already parsed [`Document`] for the `config` crate.
///
/// The conversion is the one `config::File` applies to TOML (same value kinds, no origin, as
/// for `config::File::from_str`), so layering behaves exactly as it did with a file source.
#[derive(Debug, Clone)]
struct ParsedFile(config::Map<String, config::Value>);

impl ParsedFile {
    fn from_document(document: &Document<'_>) -> Result<Self, config::ConfigError> {
        table_values(document.root().get_ref())
            .map(Self)
            .map_err(|cause| config::ConfigError::FileParse { uri: None, cause })
    }
}

impl config::Source for ParsedFile {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

type ConvertResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn table_values(table: &DeTable<'_>) -> ConvertResult<config::Map<String, config::Value>> {
    let mut values = config::Map::new();
    for (key, value) in table {
        values.insert(key.get_ref().to_string(), value_of(value.get_ref())?);
    }
    Ok(values)
}

fn value_of(value: &DeValue<'_>) -> ConvertResult<config::Value> {
    let value = match value {
        DeValue::String(text) => config::Value::new(None, text.to_string()),
        DeValue::Float(number) => {
            let float = number.as_str().parse::<f64>()?;
            if float.is_infinite() && !number.as_str().contains("inf") {
                return Err("floating-point number overflowed".into());
            }
            config::Value::new(None, float)
        }
        DeValue::Integer(number) => {
            config::Value::new(None, i64::from_str_radix(number.as_str(), number.radix())?)
        }
        DeValue::Boolean(flag) => config::Value::new(None, *flag),
        DeValue::Table(table) => config::Value::new(None, table_values(table)?),
        DeValue::Array(items) => {
            let items: ConvertResult<Vec<_>> =
                items.iter().map(|item| value_of(item.get_ref())).collect();
            config::Value::new(None, items?)
        }
        DeValue::Datetime(datetime) => config::Value::new(None, datetime.to_string()),
    };
    Ok(value)
}

/// A problem the TOML parser or the strict deserialisation found, at its line.
fn file_problem(
    path: &Path,
    text: &str,
    document: Option<&Document<'_>>,
    error: &toml::de::Error,
) -> Problem {
    let offset = error.span().map(|span| span.start);
    let key = offset.zip(document).and_then(|(offset, document)| document.path_at(offset));
    Problem {
        origin: Origin::File {
            path: path.to_path_buf(),
            line: offset.map(|offset| locate::line_at(text, offset)),
        },
        key: key.map_or_else(|| "(file)".to_owned(), |key| key.to_string()),
        message: error.message().trim().to_owned(),
    }
}

fn env_problem(env: &Env, error: &config::ConfigError) -> Problem {
    // The `config` crate names the key (or the unknown field and its table) in its message;
    // find the variable that set it.
    let message = error.to_string();
    let named = |key: &str| {
        let (table, field) = key.rsplit_once('.').unwrap_or(("", key));
        message.contains(&format!("`{key}`"))
            || (message.contains(&format!("`{field}`")) && message.contains(&format!("`{table}`")))
    };
    let found = env
        .overrides()
        .into_keys()
        .chain(env.conventional().into_keys())
        .map(|var| {
            let key = var[OVERRIDE_PREFIX.len()..].replace("__", ".").to_lowercase();
            (var, key)
        })
        .find(|(_, key)| named(key));
    let (var, key) =
        found.unwrap_or_else(|| ("AGENTCRON__*".to_owned(), "(environment)".to_owned()));
    Problem { origin: Origin::Env(var), key, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../jobs.toml");
    const KINDS: &str = "a = 0x1F\nb = -2.5e3\nc = inf\nd = 1979-05-27T07:32:00Z\ne = [1, \"x\"]\n\
        [[f]]\ng = true\n[h.i]\nj = 'k'\n";

    fn layered(source: impl config::Source + Send + Sync + 'static) -> serde_json::Value {
        let config = config::Config::builder().add_source(source).build().unwrap();
        config.try_deserialize().unwrap()
    }

    /// The parsed-table source gives the `config` crate what its own TOML file source gave.
    #[test]
    fn parsed_file_matches_the_config_crates_file_source() {
        for text in [SHIPPED, KINDS] {
            let document = Document::parse(text).unwrap();
            let ours = layered(ParsedFile::from_document(&document).unwrap());
            let theirs = layered(config::File::from_str(text, config::FileFormat::Toml));
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn a_strict_error_names_the_key_and_line_from_the_one_parse() {
        let env = Env::default();
        let text = "[worker]\nconcurrency = 3\ncolour = \"blue\"\n";
        let Err(error) = parse_layers(Path::new("jobs.toml"), text, &env) else {
            panic!("an unknown key must be rejected")
        };
        let problem = &error.problems()[0];
        assert_eq!(problem.key, "worker.colour");
        let origin = Origin::File { path: "jobs.toml".into(), line: Some(3) };
        assert_eq!(problem.origin, origin);
    }
}
