//! Signed webhook delivery, per the Standard Webhooks spec: a JSON POST with `webhook-id`
//! (unique per message, the same on every retry of it), `webhook-timestamp` (unix seconds of
//! the attempt) and, when a secret is configured, `webhook-signature: v1,<base64 of
//! HMAC-SHA256 over "{id}.{timestamp}.{body}">`; retried with backoff up to the policy's bound.
//! A secret written `whsec_<base64>` (the spec's form) is decoded and its bytes are the key; any
//! other secret is used as its raw bytes. The notice webhook and the run webhook both deliver
//! through here. A webhook that stays down is reported to the caller and never fails a run.
//!
//! See: <https://www.standardwebhooks.com/>

use std::sync::atomic::{AtomicU32, Ordering};

use backon::Retryable;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::backoff::RetryPolicy;

/// The message id header: unique per message, the same on each retry (receivers dedupe on it).
pub const ID_HEADER: &str = "webhook-id";
/// The attempt's time header, unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The signature header: `v1,<base64>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix of a secret in the spec's form, followed by its base64.
const SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of `secret`: the decoded bytes of a `whsec_<base64>` secret, else its bytes.
pub fn key_bytes(secret: &SecretString) -> Vec<u8> {
    let secret = secret.expose_secret();
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes(secret));
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(format!("{id}.{timestamp}.").as_bytes());
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// A fresh message id, `msg_<uuid v7>`.
pub fn message_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Whether an attempt got a 2xx answer.
    pub delivered: bool,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// The last attempt's error, when none succeeded.
    pub error: Option<String>,
}

/// POSTs `body` to `url` as message `id`, signed when `secret` is given, until a 2xx answer or
/// `policy` gives up. Each attempt is signed with its own timestamp.
pub async fn deliver(
    http: &reqwest::Client,
    url: &Url,
    secret: Option<&SecretString>,
    policy: RetryPolicy,
    (id, body): (&str, &[u8]),
) -> Delivery {
    let attempts = AtomicU32::new(0);
    let attempt = || async {
        attempts.fetch_add(1, Ordering::Relaxed);
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = http
            .post(url.clone())
            .header("content-type", "application/json")
            .header(ID_HEADER, id)
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, id, timestamp, body));
        }
        let response =
            request.body(body.to_vec()).send().await.map_err(|e| e.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    };
    let result = attempt.retry(policy).sleep(tokio::time::sleep).await;
    let attempts = attempts.load(Ordering::Relaxed);
    Delivery { delivered: result.is_ok(), attempts, error: result.err() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_specs_example() {
        // The Standard Webhooks spec's worked example.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let expect = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(signature(&secret, id, 1_614_265_330, body), expect);
    }

    #[test]
    fn a_secret_without_the_prefix_is_its_raw_bytes() {
        assert_eq!(key_bytes(&SecretString::from("plain")), b"plain");
        assert_eq!(key_bytes(&SecretString::from("whsec_cGxhaW4=")), b"plain");
    }
}
