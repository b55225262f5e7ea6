//! Delivery of notice events to the optional webhook: a JSON POST, signed with HMAC-SHA256
//! over the body in `X-Agentcron-Signature: sha256=<hex>` when a secret is configured, retried
//! with backoff. A webhook that stays down is logged and never fails the run.

use backon::Retryable;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::notice::NoticeEvent;
use crate::backoff::RetryPolicy;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-agentcron-signature";

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &SecretString, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// POSTs `notice` to `url`; returns whether it was delivered. Failures are logged, not
/// returned: notices are also on the Redis stream, so nothing is lost.
pub async fn deliver(
    http: &reqwest::Client,
    url: &Url,
    secret: Option<&SecretString>,
    policy: RetryPolicy,
    notice: &NoticeEvent,
) -> bool {
    let Ok(body) = serde_json::to_vec(notice) else { return false };
    let attempt = || async {
        let mut request = http.post(url.clone()).header("content-type", "application/json");
        if let Some(secret) = secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        let response =
            request.body(body.clone()).send().await.map_err(|e| e.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    };
    match attempt.retry(policy).sleep(tokio::time::sleep).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(message = "Notice webhook failed; the notice stays on the stream.", user = %notice.user, connection = %notice.connection, %error);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let secret = SecretString::from("Jefe");
        let expect = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(signature(&secret, b"what do ya want for nothing?"), expect);
    }
}
