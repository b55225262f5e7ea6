//! What every ops request passes before a handler: its `Host` must name this server (a
//! loopback name, an IP address, or one of `ops.hosts`), so a web page whose name was rebound
//! to 127.0.0.1 cannot read it (DNS rebinding: the browser sends the attacker's name); the
//! bearer token or the dashboard's session cookie (`signin.rs`) where a token is configured;
//! an action (a POST) must come from no page or from this server's own page (`Origin` absent
//! or this server's origin), so that another site's form or script cannot act (CSRF); and the
//! security headers every response carries (a Content-Security-Policy without inline script,
//! no framing, no sniffing, no referrer). This module must not read run data.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

use super::OpsState;
use super::json_api::ApiError;

/// The dashboard loads its own script, style and data, and nothing else; no page may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Refuses a request whose `Host` does not name this server with 421 Misdirected Request.
pub(super) async fn allowed_host(
    State(state): State<OpsState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().host());
    match host {
        Some(host) if host_allowed(host, &state.config.ops.hosts) => next.run(request).await,
        _ => {
            let message = "this Host is not one of this server's names (see ops.hosts)";
            (StatusCode::MISDIRECTED_REQUEST, axum::Json(serde_json::json!({"error": message})))
                .into_response()
        }
    }
}

/// Whether `host` (a `Host` header: a name or an address, with or without a port) names this
/// server: an IP address (a rebinding attack needs a name of its own), `localhost`, or one of
/// `names` (lower case).
pub(super) fn host_allowed(host: &str, names: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        // `[::1]:9187`
        Some(rest) => rest.split(']').next().unwrap_or_default().to_owned(),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
            _ => host.clone(),
        },
    };
    let name = name.trim_end_matches('.');
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || names.iter().any(|allowed| allowed == name)
}

/// Refuses with 403 a request whose `Origin` names another site than this server (the scheme
/// and the `Host` it was sent to). No `Origin` passes: a browser sends one with every POST, and
/// a client that sends none (curl, a script) is no browser page acting for a visitor. `null`
/// passes only with `Sec-Fetch-Site: same-origin`.
pub(super) async fn same_origin(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).map(|value| value.to_str().unwrap_or("?"));
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    // A form posted from a page served with `Referrer-Policy: no-referrer` (ours) carries
    // `Origin: null`; the browser's own `Sec-Fetch-Site`, which no page can set, says where
    // it came from.
    let fetch_site = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok());
    let allowed = origin_allowed(origin, host.or_else(|| request.uri().host()))
        || (origin == Some("null") && fetch_site == Some("same-origin"));
    if allowed {
        next.run(request).await
    } else {
        ApiError::Forbidden("cross-origin request refused: Origin is not this server".to_owned())
            .into_response()
    }
}

/// Whether `origin` (an `Origin` header) is absent or `http(s)://<host>`, `host` being the
/// request's `Host` (name and port). `null` (a sandboxed or file page) is another origin.
fn origin_allowed(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let Some(host) = host else { return false };
    let origin = origin.trim().to_ascii_lowercase();
    let site = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    site.is_some_and(|site| site == host.trim().to_ascii_lowercase())
}

/// Adds the security headers to every response.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Lets a request through when no token is configured or it carries the token (a bearer
/// header, or the dashboard's session cookie).
pub(super) async fn require_token(
    State(state): State<OpsState>,
    request: Request,
    next: Next,
) -> Response {
    match &state.config.ops.token {
        Some(token) if !authorized(request.headers(), token) => {
            ApiError::Unauthorized.into_response()
        }
        _ => next.run(request).await,
    }
}

/// Whether `headers` carry `token` as a bearer or a live session cookie signed with it.
pub(super) fn authorized(headers: &HeaderMap, token: &SecretString) -> bool {
    let given =
        headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(bearer);
    given.is_some_and(|given| token_matches(given, token))
        || super::signin::signed_in(headers, token)
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
}

/// Compares in time independent of where the first difference is (the length may leak; the
/// content does not).
pub(super) fn token_matches(given: &str, token: &SecretString) -> bool {
    let (given, token) = (given.as_bytes(), token.expose_secret().as_bytes());
    given.len() == token.len()
        && given.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_name_this_server_pass_and_others_do_not() {
        let names = vec!["ops.example.com".to_owned()];
        for host in [
            "127.0.0.1:9187",
            "localhost:9187",
            "LOCALHOST",
            "[::1]:9187",
            "10.1.2.3:9187",
            "ops.example.com",
            "OPS.example.com:443",
            "app.localhost:9187",
        ] {
            assert!(host_allowed(host, &names), "{host}");
        }
        for host in
            ["evil.example", "evil.example:9187", "ops.example.com.evil", "", "127.0.0.1.nip.io"]
        {
            assert!(!host_allowed(host, &names), "{host}");
        }
    }

    #[test]
    fn only_an_absent_origin_or_this_servers_own_passes() {
        let host = Some("127.0.0.1:9187");
        assert!(origin_allowed(None, host));
        assert!(origin_allowed(Some("http://127.0.0.1:9187"), host));
        assert!(origin_allowed(Some("HTTPS://127.0.0.1:9187"), host));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9188",
            "http://127.0.0.1",
            "null",
            "",
            "ftp://127.0.0.1:9187",
            "http://127.0.0.1:9187.evil.example",
        ] {
            assert!(!origin_allowed(Some(origin), host), "{origin}");
        }
        assert!(!origin_allowed(Some("http://127.0.0.1:9187"), None));
    }

    #[test]
    fn bearer_accepts_any_case_of_the_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn token_matches_only_the_same_bytes() {
        let token = SecretString::from("s3cret-token");
        assert!(token_matches("s3cret-token", &token));
        assert!(!token_matches("s3cret-tokeN", &token));
        assert!(!token_matches("s3cret", &token));
        assert!(!token_matches("", &token));
    }
}
