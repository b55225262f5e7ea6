//! Serialisers that keep secrets out of printed configuration (`config check`).
//!
//! Durations print in humantime form, URLs with their password replaced, and secrets as
//! `[REDACTED]` or `(unset)`. This module must never write a secret value anywhere.

use std::time::Duration;

use secrecy::SecretString;
use serde::Serializer;
use url::Url;

pub(super) const REDACTED: &str = "[REDACTED]";

pub(super) fn duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*value))
}

pub(super) fn opt_duration<S: Serializer>(
    value: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => duration(value, s),
        None => s.serialize_none(),
    }
}

/// `url` with its password, if any, replaced.
pub(super) fn redacted_url(url: &Url) -> Url {
    let mut url = url.clone();
    // Setting a password only fails for URLs that cannot have one, which then had none.
    if url.password().is_some() && url.set_password(Some(REDACTED)).is_err() {
        return Url::parse("redis://[REDACTED]").unwrap_or(url);
    }
    url
}

pub(super) fn url<S: Serializer>(value: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&redacted_url(value))
}

pub(super) fn opt_url<S: Serializer>(value: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => url(value, s),
        None => s.serialize_none(),
    }
}

/// The ops address, or `"off"`.
pub(super) fn opt_bind<S: Serializer>(
    value: &Option<std::net::SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_str("off"),
    }
}

pub(super) fn opt_secret<S: Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(REDACTED),
        None => s.serialize_none(),
    }
}

/// Required secrets show whether they are set, never their value.
pub(super) fn secret_status<S: Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(if value.is_some() { REDACTED } else { "(unset)" })
}

pub(super) fn display<S: Serializer, T: std::fmt::Display>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}
