//! HS256 JSON Web Tokens for the simulator: Scalekit's client access tokens and MCP session
//! tokens. The real session tokens are RS256 with the environment's key; an HMAC key of the
//! simulator keeps the same claims (`sub`, `aud`, `mcp_cfg`, `exp`) checkable without a key pair.
//!
//! It only signs and checks signatures; what a claim means is for the caller.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde_json::Value;

/// Why a token was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("invalid token signature")]
    Signature,
}

/// The simulator's signing key.
pub(crate) struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key derived from the seed, so a restarted simulator with the same seed accepts the
    /// tokens it issued before.
    pub(crate) fn from_seed(seed: u64) -> Self {
        let material = format!("agentcron-sim-signing-key:{seed}");
        Self(hmac::Key::new(hmac::HMAC_SHA256, material.as_bytes()))
    }

    /// Signs `claims` (a JSON object) as a compact JWT.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"sim"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let tag = hmac::sign(&self.0, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks the signature and returns the claims. Expiry and audience are the caller's.
    pub(crate) fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(header)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::Algorithm);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
        let signing_input = &token[..header_len(token)];
        hmac::verify(&self.0, signing_input.as_bytes(), &signature)
            .map_err(|_| JwtError::Signature)?;
        decode_json(payload)
    }
}

/// Length of `header.payload` (the signed part).
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = Key::from_seed(1);
        let token = key.sign(&json!({"sub": "alice", "exp": 10}));
        assert_eq!(key.verify(&token).unwrap()["sub"], "alice");
        assert_eq!(Key::from_seed(2).verify(&token), Err(JwtError::Signature));
        let forged = token.replacen('.', ".e30", 1);
        assert!(key.verify(&forged).is_err());
        assert_eq!(key.verify("nope"), Err(JwtError::Malformed));
    }
}
