//! A record's or a notice's fields as JSON with their types, for `--json` and `/api/*`: counts
//! and unix-millisecond times are numbers, flags are booleans, and beside each `<name>_ms` time
//! is `<name>`, the same time in RFC 3339 with milliseconds (UTC). A value that does not parse
//! as its field's type stays the string it is. Reads nothing.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serializer;
use serde_json::{Map, Number, Value};

/// Fields that hold a whole number (besides the `_ms` times and the `tokens_` counts).
const COUNTS: [&str; 9] = [
    "attempts",
    "fence",
    "count",
    "model_requests",
    "result_bytes",
    "n_tool_calls",
    "n_tool_errors",
    "n_session_errors",
    "usage_counted",
];

/// `fields` with their types (see the module doc).
pub(crate) fn typed(fields: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, text) in fields {
        if let Some(stem) = name.strip_suffix("_ms")
            && let Ok(ms) = text.parse::<i64>()
        {
            if let Some(time) = Utc.timestamp_millis_opt(ms).single() {
                let shown = time.to_rfc3339_opts(SecondsFormat::Millis, true);
                out.entry(stem.to_owned()).or_insert(Value::String(shown));
            }
            out.insert(name.clone(), Value::from(ms));
            continue;
        }
        out.insert(name.clone(), value(name, text));
    }
    out
}

fn value(name: &str, text: &str) -> Value {
    let whole =
        COUNTS.contains(&name) || name.starts_with("tokens_") || name.ends_with("_attempts");
    if whole && let Ok(n) = text.parse::<u64>() {
        return Value::from(n);
    }
    if name == "cost_usd"
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    if name.ends_with("_truncated") && (text == "true" || text == "false") {
        return Value::Bool(text == "true");
    }
    Value::String(text.to_owned())
}

/// `serialize_with` for a field map: [`typed`].
pub(crate) fn serialize<S: Serializer>(
    fields: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&typed(fields), s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times_are_numbers_with_rfc3339_beside_and_the_rest_strings() {
        let fields: BTreeMap<String, String> = [
            ("attempts", "2"),
            ("created_at_ms", "1767254400123"),
            ("tokens_input", "1200"),
            ("cost_usd", "0.012345"),
            ("result_truncated", "false"),
            ("webhook_succeeded_attempts", "3"),
            ("state", "succeeded"),
            ("count", "not-a-number"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let shown = Value::Object(typed(&fields));
        assert_eq!(shown["attempts"], 2);
        assert_eq!(shown["created_at_ms"], 1_767_254_400_123_i64);
        assert_eq!(shown["created_at"], "2026-01-01T08:00:00.123Z");
        assert_eq!(shown["tokens_input"], 1200);
        assert_eq!(shown["cost_usd"], 0.012_345);
        assert_eq!(shown["result_truncated"], false);
        assert_eq!(shown["webhook_succeeded_attempts"], 3);
        assert_eq!(shown["state"], "succeeded");
        assert_eq!(shown["count"], "not-a-number", "a value that does not parse stays");
    }
}
