//! A query-string extractor that keeps repeated keys (`types[]=a&types[]=b`,
//! `connection_names=a&connection_names=b`), which axum's `Query` cannot, plus the body parsers
//! that turn bad JSON into each API's error shape instead of axum's plain-text rejection.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{AnthropicError, ScalekitError};

/// The decoded query pairs, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(query: &str) -> Self {
        Self(url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    }

    /// The first value of `key`, if any and not empty.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// `key` as a boolean (`true`/`1`), false when absent.
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query().unwrap_or_default()))
    }
}

/// Parses an Anthropic JSON body; an empty body is the type's default.
pub(crate) fn anthropic_body<T: DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, AnthropicError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| AnthropicError::invalid(format!("invalid request body: {error}")))
}

/// Parses a Scalekit JSON body; an empty body is the type's default.
pub(crate) fn scalekit_body<T: DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ScalekitError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ScalekitError::invalid("body", format!("invalid JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_bracketed_keys_are_kept() {
        let params = Params::parse("types%5B%5D=a&types%5B%5D=b&limit=2&beta=true&x=");
        assert_eq!(params.all("types[]"), ["a", "b"]);
        assert_eq!(params.get("limit"), Some("2"));
        assert_eq!(params.get("x"), None);
        assert!(params.flag("beta"));
    }
}
