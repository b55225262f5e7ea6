//! The Redis client a configuration describes: its URL, with `redis.username` and
//! `redis.password` over the URL's own, and for `rediss://` the CA and the client certificate of
//! `[redis.tls]`. Every Redis connection agentcron makes starts here, so TLS and ACL settings
//! apply to all of them; and here a failed connection is put in words that name the host and,
//! for a certificate, the reason. This module must not connect.

use std::path::{Path, PathBuf};

use redis::IntoConnectionInfo;
use secrecy::ExposeSecret;

use super::RedisConfig;

/// Why the Redis client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisClientError {
    /// A `[redis.tls]` file could not be read.
    #[error("{key}: cannot read {}: {error}", path.display())]
    File {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The URL or a certificate was refused.
    #[error("redis at {host}: {error}")]
    Redis {
        /// `host:port`.
        host: String,
        /// The client's error.
        error: redis::RedisError,
    },
}

impl RedisConfig {
    /// A client for this configuration (it connects on first use).
    ///
    /// # Errors
    /// [`RedisClientError`] when a TLS file cannot be read or the URL is refused.
    pub fn client(&self) -> Result<redis::Client, RedisClientError> {
        self.client_at(&self.host())
    }

    /// A client for the node at `addr` (`host:port`) with this configuration's scheme,
    /// credentials and certificates: the master a sentinel named.
    pub(super) fn client_at(&self, addr: &str) -> Result<redis::Client, RedisClientError> {
        // rustls needs a process-wide crypto provider; ring is the one compiled in.
        rustls::crypto::ring::default_provider().install_default().ok();
        let named = |error| RedisClientError::Redis { host: addr.to_owned(), error };
        let mut url = self.url.clone();
        if let Some((host, port)) = addr.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
            && url.host_str().is_some()
        {
            // A host and port that parsed from a sentinel's answer; a failure keeps the URL's.
            url.set_host(Some(host)).ok();
            url.set_port(Some(port)).ok();
        }
        let plain = url.as_str().replacen("+cluster://", "://", 1);
        let info = plain.as_str().into_connection_info().map_err(named)?;
        self.open(addr, info, self.username.as_deref(), self.password.as_ref())
    }

    /// A client for the sentinel at `node` (`host:port`): TLS, with `[redis.tls]`'s
    /// certificates, when the Redis URL is `rediss://`, and the sentinels' own user and
    /// password when `[redis.sentinel]` gives them.
    pub(super) fn sentinel_client(&self, node: &str) -> Result<redis::Client, RedisClientError> {
        let named = |error| RedisClientError::Redis { host: node.to_owned(), error };
        let scheme = if self.is_tls() { "rediss" } else { "redis" };
        let info = format!("{scheme}://{node}").into_connection_info().map_err(named)?;
        let sentinel = self.sentinel.as_ref();
        let username = sentinel.and_then(|s| s.username.as_deref());
        self.open(node, info, username, sentinel.and_then(|s| s.password.as_ref()))
    }

    /// The client of `info` with `username` and `password` over the URL's own, and
    /// `[redis.tls]`'s certificates.
    fn open(
        &self,
        host: &str,
        mut info: redis::ConnectionInfo,
        username: Option<&str>,
        password: Option<&secrecy::SecretString>,
    ) -> Result<redis::Client, RedisClientError> {
        let named = |error| RedisClientError::Redis { host: host.to_owned(), error };
        let mut settings = info.redis_settings().clone();
        if let Some(username) = username {
            settings = settings.set_username(username);
        }
        if let Some(password) = password {
            settings = settings.set_password(password.expose_secret());
        }
        info = info.set_redis_settings(settings);
        match self.certificates()? {
            None => redis::Client::open(info).map_err(named),
            Some(certificates) => redis::Client::build_with_tls(info, certificates).map_err(named),
        }
    }

    /// The CA and client certificate of `[redis.tls]`, when a `rediss://` URL names any.
    ///
    /// # Errors
    /// [`RedisClientError::File`] when a file cannot be read.
    pub(super) fn certificates(&self) -> Result<Option<redis::TlsCertificates>, RedisClientError> {
        if !self.is_tls() || (self.tls.ca_file.is_none() && self.tls.cert_file.is_none()) {
            return Ok(None);
        }
        let root_cert = read(&self.tls.ca_file, "redis.tls.ca_file")?;
        let client_tls = match (
            read(&self.tls.cert_file, "redis.tls.cert_file")?,
            read(&self.tls.key_file, "redis.tls.key_file")?,
        ) {
            (Some(client_cert), Some(client_key)) => {
                Some(redis::ClientTlsConfig { client_cert, client_key })
            }
            _ => None,
        };
        Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
    }

    /// True for a `rediss://` (or `rediss+cluster://`) URL.
    pub fn is_tls(&self) -> bool {
        self.url.scheme().starts_with("rediss")
    }

    /// The keys of this deployment: under the prefix, hash-tagged on a cluster.
    pub fn keys(&self) -> crate::keys::Keys {
        if self.cluster {
            crate::keys::Keys::clustered(self.prefix.clone()).sharded(self.shards)
        } else {
            crate::keys::Keys::new(self.prefix.clone()).sharded(self.shards)
        }
        .events_capped(self.events_max_len)
    }

    /// `host:port` of the URL (the socket path of a `unix:` URL), for messages.
    pub fn host(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => format!("{host}:6379"),
            _ => self.url.path().to_owned(),
        }
    }

    /// A failed connection in words: where (the URL without its password), and for a TLS
    /// failure what was wrong with the certificate.
    pub fn connect_error(&self, error: &redis::RedisError) -> String {
        format!(
            "cannot connect to Redis at {}: {}",
            self.shown_url(),
            explain(error, self.is_tls())
        )
    }

    /// The URL for messages: without its password (and with Sentinel, the master's name).
    pub fn shown_url(&self) -> String {
        if let Some(sentinel) = &self.sentinel {
            return format!(
                "the master {:?} of the sentinels {}",
                sentinel.master,
                sentinel.nodes.join(", ")
            );
        }
        let mut url = self.url.clone();
        // Only a URL that cannot have a password refuses one; this one has one.
        if url.password().is_some() && url.set_password(Some("***")).is_err() {
            return self.host();
        }
        url.to_string()
    }
}

fn read(path: &Option<PathBuf>, key: &'static str) -> Result<Option<Vec<u8>>, RedisClientError> {
    let Some(path) = path else { return Ok(None) };
    let file = |error| RedisClientError::File { key, path: Path::to_path_buf(path), error };
    std::fs::read(path).map(Some).map_err(file)
}

/// rustls's certificate verdicts, as a reader of the log would say them.
const CERTIFICATE_REASONS: [(&str, &str); 5] = [
    (
        "UnknownIssuer",
        "the server's certificate is not signed by a trusted CA (unknown issuer; redis.tls.ca_file replaces the platform's roots)",
    ),
    ("NotValidForName", "the server's certificate is not valid for this host name (name mismatch)"),
    ("Expired", "the server's certificate has expired"),
    ("NotValidYet", "the server's certificate is not valid yet"),
    (
        "CertificateRequired",
        "the server requires a client certificate (redis.tls.cert_file and redis.tls.key_file)",
    ),
];

fn explain(error: &redis::RedisError, tls: bool) -> String {
    let text = error.to_string();
    let reason = CERTIFICATE_REASONS.iter().find(|(needle, _)| text.contains(needle));
    match reason {
        Some((_, reason)) if tls => format!("{reason} ({text})"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_failure_is_put_in_words() {
        let error = redis::RedisError::from(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        let said = explain(&error, true);
        assert!(
            said.starts_with("the server's certificate is not signed by a trusted CA"),
            "{said}"
        );
        assert_eq!(explain(&error, false), error.to_string());
    }
}
