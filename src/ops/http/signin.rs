//! The dashboard's sign-in. With `ops.token` set, a browser that has not signed in gets the
//! sign-in page instead of the dashboard (and 401 for its scripts); the page's form posts the
//! token to `/signin` (same origin only), which answers with a session cookie: `HttpOnly` (no
//! script, ours or an injected one, can read it), `SameSite=Strict` (no other site's page or
//! form sends it), 12 hours long. The cookie holds an expiry and an HMAC of it keyed by the
//! token, never the token: it proves its holder knew the token, it cannot be stretched, and
//! changing the token ends every session. `/signout` clears it. A bearer header works wherever
//! the cookie does (curl, scripts). This module must not read run data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::OpsState;

/// The cookie's name.
const COOKIE: &str = "agentcron_ops_session";
/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// What the HMAC signs besides the expiry, so that no other use of the token can yield a
/// cookie.
const CONTEXT: &str = "agentcron ops session v1";
/// The sign-in page; `{message}` is one of the fixed messages below, never request data, and
/// `{next}` the dashboard URL that was asked for, checked by [`local_path`] and escaped.
const SIGN_IN: &str = include_str!("../dashboard/signin.html");

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
    /// Where to go once signed in: the dashboard URL the sign-in page stood in for.
    #[serde(default)]
    next: String,
}

/// Whether `headers` carry a cookie of a live session for `token`.
pub(super) fn signed_in(headers: &HeaderMap, token: &SecretString) -> bool {
    let now = unix_now();
    cookies(headers).any(|value| session_valid(value, token, now))
}

/// The sign-in page, with 401: what `/` and the dashboard's scripts answer a browser that has
/// not signed in; signing in goes on to `next` (when it is a path of this server).
pub(super) fn sign_in_page(message: &str, next: &str) -> Response {
    let next = html_escape(local_path(next));
    let page = SIGN_IN.replace("{message}", message).replace("{next}", &next);
    (StatusCode::UNAUTHORIZED, Html(page)).into_response()
}

/// `next` when it is a path on this server (`/…`, not `//host` or `/\host`, which browsers
/// take for another site, and visible ASCII only, as a browser sends a URL and as a
/// `Location` header must be), else `/`: a sign-in never sends the browser elsewhere.
fn local_path(next: &str) -> &str {
    let rest = next.strip_prefix('/');
    let local = rest.is_some_and(|rest| !rest.starts_with(['/', '\\']))
        && next.chars().all(|c| c.is_ascii_graphic());
    if local { next } else { "/" }
}

/// `text` safe inside an HTML attribute value.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `POST /signin`: the right token sets the session cookie and goes to the dashboard; a wrong
/// one shows the form again, with 401. Without `ops.token` there is nothing to sign in to.
pub(super) async fn sign_in(
    State(state): State<OpsState>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let Some(token) = &state.config.ops.token else { return Redirect::to("/").into_response() };
    if !super::guard::token_matches(form.token.trim(), token) {
        return sign_in_page("That is not this server's ops token.", &form.next);
    }
    let expires = unix_now() + SESSION_TTL.as_secs();
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        session_value(token, expires),
        SESSION_TTL.as_secs(),
        secure_attribute(&headers),
    );
    with_cookie(Redirect::to(local_path(&form.next)), &cookie)
}

/// `POST /signout`: clears the cookie and goes back to the sign-in page.
pub(super) async fn sign_out(headers: HeaderMap) -> Response {
    let cookie = format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure_attribute(&headers)
    );
    with_cookie(Redirect::to("/"), &cookie)
}

/// Answers a request for the dashboard's page or scripts: through when no token is set or the
/// request is signed in (cookie or bearer), the sign-in page otherwise.
pub(super) async fn require_sign_in(
    State(state): State<OpsState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    match &state.config.ops.token {
        Some(token) if !super::guard::authorized(request.headers(), token) => {
            // Only the page is navigated to; its scripts' URLs are not worth going back to.
            let uri = request.uri();
            let asked = uri.path_and_query().filter(|_| uri.path() == "/");
            let asked = asked.map_or("/", |asked| asked.as_str());
            sign_in_page("This dashboard needs the ops token.", asked)
        }
        _ => next.run(request).await,
    }
}

fn with_cookie(redirect: Redirect, cookie: &str) -> Response {
    let mut response = redirect.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    // A redirect after a POST is a GET (303), so a reload does not post the form again.
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
}

/// `; Secure` when the browser reached us over HTTPS (through a proxy that terminates TLS and
/// says so): a plain-HTTP ops port would never get a `Secure` cookie back.
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let forwarded = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok());
    if forwarded.is_some_and(|proto| proto.eq_ignore_ascii_case("https")) { "; Secure" } else { "" }
}

/// The values of every cookie named [`COOKIE`] in the request.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `<expiry, unix seconds>.<HMAC-SHA256 of it, keyed by the token, base64url>`.
fn session_value(token: &SecretString, expires: u64) -> String {
    let tag = hmac::sign(&key(token), format!("{CONTEXT}|{expires}").as_bytes());
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Whether `value` is a session cookie signed with `token` that has not expired at `now`.
fn session_valid(value: &str, token: &SecretString, now: u64) -> bool {
    let Some((expires, tag)) = value.split_once('.') else { return false };
    let (Ok(expiry), Ok(tag)) = (expires.parse::<u64>(), URL_SAFE_NO_PAD.decode(tag)) else {
        return false;
    };
    // `verify` compares in constant time.
    expiry > now
        && hmac::verify(&key(token), format!("{CONTEXT}|{expires}").as_bytes(), &tag).is_ok()
}

fn key(token: &SecretString) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.expose_secret().as_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_for_its_token() {
        let now = 1_800_000_000;
        let value = session_value(&token("s3cret"), now + 60);
        assert!(session_valid(&value, &token("s3cret"), now));
        assert!(!session_valid(&value, &token("s3cret"), now + 60), "expired");
        assert!(!session_valid(&value, &token("s3creT"), now), "another token");
        assert!(!value.contains("s3cret"), "{value}");
    }

    #[test]
    fn a_stretched_or_mangled_cookie_is_refused() {
        let now = 1_800_000_000;
        let value = session_value(&token("s3cret"), now + 60);
        let (_, tag) = value.split_once('.').unwrap();
        let stretched = format!("{}.{tag}", now + 3600);
        for bad in [stretched.as_str(), "", ".", "x.y", &value[..value.len() - 1], tag] {
            assert!(!session_valid(bad, &token("s3cret"), now), "{bad}");
        }
    }

    #[test]
    fn a_sign_in_goes_on_only_to_a_path_of_this_server() {
        assert_eq!(local_path("/?view=runs&run=r-1"), "/?view=runs&run=r-1");
        for elsewhere in
            ["//evil.example", "/\\evil.example", "https://evil.example", "", "/a\nb", "/é"]
        {
            assert_eq!(local_path(elsewhere), "/", "{elsewhere:?}");
        }
        assert_eq!(html_escape("/?a=\"><script>&'"), "/?a=&quot;&gt;&lt;script&gt;&amp;&#39;");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let value = session_value(&token("t"), unix_now() + 60);
        let mut headers = HeaderMap::new();
        let line = format!("theme=dark; {COOKIE}={value}; other=1");
        headers.insert(header::COOKIE, HeaderValue::from_str(&line).unwrap());
        assert!(signed_in(&headers, &token("t")));
        assert!(!signed_in(&HeaderMap::new(), &token("t")));
    }
}
