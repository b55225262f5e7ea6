//! What keeps the ops servers safe and small: a `Host` that is not this server's is refused
//! (DNS rebinding), with or without the token; every response carries the security headers;
//! the dashboard needs the token, and its sign-in sets an `HttpOnly`, `SameSite=Strict` cookie
//! that is not the token;
//! connections are capped, so the worker's file descriptors stay for its runs, and a slowloris
//! client is cut off; the scheduler serves its own probes and metrics; `agentcron health`
//! says whether Redis and the process on this host are well, within its timeout.

use std::io::Write as _;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::app::spawn_app;
use crate::ops_http::{Server, client, ops_config, spawn_worker_with, wait_for_url, worker_env};

/// A GET of `url` with `Host: host` and the bearer `token`.
async fn get_as(url: &str, host: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().get(url).header("host", host);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_rebound_host_is_refused_and_every_response_has_the_security_headers() {
    let app = spawn_app().await;
    let mut config = ops_config(&app);
    let token = "SECRET-ops-guard-token-7f3a";
    config.ops.token = Some(token.to_owned().into());
    config.ops.hosts = vec!["ops.example.com".to_owned()];
    let server = Server::start(config).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    for path in ["/api/runs", "/metrics", "/", "/healthz"] {
        let url = format!("{}{path}", server.base);
        for t in [None, Some(token)] {
            let refused = get_as(&url, "evil.example", t).await;
            assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST, "{path} {t:?}");
            let refused = get_as(&url, &format!("evil.example:{port}"), t).await;
            assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST, "{path} {t:?}");
        }
    }
    let runs = format!("{}/api/runs", server.base);
    for host in ["ops.example.com", "localhost", "127.0.0.1"] {
        let host = format!("{host}:{port}");
        assert_eq!(get_as(&runs, &host, None).await.status(), StatusCode::UNAUTHORIZED, "{host}");
        let wrong = get_as(&runs, &host, Some("SECRET-ops-guard-token-7f3b")).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{host}");
        assert_eq!(get_as(&runs, &host, Some(token)).await.status(), StatusCode::OK, "{host}");
    }
    // Every page, the refusals included, carries the headers; the page loads no inline script.
    for path in ["/", "/dashboard.js", "/dashboard.css", "/api/status", "/healthz", "/nowhere"] {
        for host in ["127.0.0.1", "evil.example"] {
            let response = get_as(&format!("{}{path}", server.base), host, Some(token)).await;
            let headers = response.headers();
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            let csp = header("content-security-policy").unwrap_or_else(|| panic!("{path}"));
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
            assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
            assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
        }
    }
    let page = get_as(&format!("{}/", server.base), "127.0.0.1", Some(token)).await;
    let page = page.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("<style>"), "{page}");
    assert!(page.contains("<script src=\"/dashboard.js\">"), "{page}");
    server.stop().await;
}

/// A POST of the sign-in form to `base`, from `origin`; redirects are not followed.
async fn sign_in(base: &str, token: &str, origin: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let form = [("token", token), ("next", "/?view=runs&run=r-1")];
    client.post(format!("{base}/signin")).header("origin", origin).form(&form).send().await.unwrap()
}

/// A GET of `base` + `path` with `cookie` (`name=value`) and no bearer.
async fn get_with_cookie(base: &str, path: &str, cookie: &str) -> (StatusCode, String) {
    let response =
        client().get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_dashboard_needs_the_token_and_a_sign_in_sets_an_http_only_strict_cookie() {
    let app = spawn_app().await;
    let mut config = ops_config(&app);
    let token = "SECRET-ops-signin-token-5c1d";
    config.ops.token = Some(token.to_owned().into());
    let server = Server::start(config).await;
    let base = server.base.clone();
    // Without the token: the sign-in page at `/`, nothing of the dashboard's code or data.
    for path in ["/", "/?view=runs&run=r-1", "/dashboard.js", "/charts.js"] {
        let response = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("action=\"/signin\""), "{path}: {page}");
        // Signing in goes on to the URL asked for.
        let asked = if path.starts_with("/?") { path } else { "/" };
        let next = format!("name=\"next\" value=\"{}\"", asked.replace('&', "&amp;"));
        assert!(page.contains(&next), "{path}: {page}");
        assert!(!page.contains("dashboard.js") && !page.contains("<script"), "{path}: {page}");
    }
    // The style is open: the sign-in page uses it.
    assert_eq!(get_with_cookie(&base, "/dashboard.css", "").await.0, StatusCode::OK);

    // A wrong token, or the right one from another site's page, sets nothing.
    let wrong = sign_in(&base, "SECRET-ops-signin-token-5c1e", &base).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("not this server's ops token"));
    for origin in ["http://evil.example", "null"] {
        let foreign = sign_in(&base, token, origin).await;
        assert_eq!(foreign.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(foreign.headers().get("set-cookie").is_none());
    }

    // The right token: a cookie the page's script cannot read and no other site sends, that
    // is not the token.
    let signed = sign_in(&base, token, &base).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()["location"], "/?view=runs&run=r-1", "back to the URL asked for");
    let set = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains(token) && !set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, page) = get_with_cookie(&base, "/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<script src=\"/dashboard.js\">") && page.contains("/signout"));
    for path in ["/dashboard.js", "/charts.js", "/api/runs", "/api/status", "/metrics"] {
        let (status, body) = get_with_cookie(&base, path, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Behind a proxy that terminates TLS the cookie is Secure.
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let behind_tls = client
        .post(format!("{base}/signin"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert!(behind_tls.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
    assert_eq!(behind_tls.headers()["location"], "/", "no next: the dashboard");
    // A `next` that names another site is not followed.
    for elsewhere in ["//evil.example/", "https://evil.example/", "/\\evil.example"] {
        let form = [("token", token), ("next", elsewhere)];
        let signed = client.post(format!("{base}/signin")).form(&form).send().await.unwrap();
        assert_eq!(signed.headers()["location"], "/", "{elsewhere}");
    }

    // A forged or stretched cookie is refused.
    let (name, value) = cookie.split_once('=').unwrap();
    let (_, tag) = value.split_once('.').unwrap();
    let stretched = format!("{name}=99999999999.{tag}");
    let forged = format!("{name}=99999999999.AAAA");
    for bad in [stretched, forged, format!("{name}={token}")] {
        assert_eq!(get_with_cookie(&base, "/api/runs", &bad).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get_with_cookie(&base, "/", &bad).await.0, StatusCode::UNAUTHORIZED);
    }
    // Signing out clears it.
    let out = client.post(format!("{base}/signout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    server.stop().await;

    // A server with another token does not take the cookie.
    let mut config = ops_config(&app);
    config.ops.token = Some("SECRET-ops-signin-token-other".to_owned().into());
    let other = Server::start(config).await;
    assert_eq!(
        get_with_cookie(&other.base, "/api/runs", &cookie).await.0,
        StatusCode::UNAUTHORIZED
    );
    other.stop().await;
}

/// The open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test]
async fn idle_connections_cannot_take_the_workers_descriptors_and_slowloris_is_cut_off() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut env = worker_env(&app, dir.path());
    env.push(("AGENTCRON__OPS__MAX_CONNECTIONS".to_owned(), "16".to_owned()));
    let mut worker = spawn_worker_with(&log, &env);
    let base = wait_for_url(&log).await;
    let addr = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let pid = worker.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = fds(pid);
    // 120 idle connections: the kernel holds those past the cap in its backlog (128 deep).
    let connects = (0..120).map(|_| {
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr.clone()))
    });
    let idle: Vec<_> = futures::future::join_all(connects).await;
    assert!(idle.iter().filter(|c| matches!(c, Ok(Ok(_)))).count() >= 100, "connected");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = fds(pid);
    assert!(during <= before + 20, "descriptors went from {before} to {during}");
    drop(idle);

    // One byte every 2 s never completes a request head: the server closes it at 10 s.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut closed = None;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*byte]).is_err() {
            closed = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        let waiting = |e: &std::io::Error| {
            matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        };
        match std::io::Read::read(&mut slow, &mut buf) {
            Ok(0) => {
                closed = Some(started.elapsed());
                break;
            }
            Err(e) if !waiting(&e) => {
                closed = Some(started.elapsed());
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let closed = closed.expect("the slow connection was never closed");
    assert!(closed < Duration::from_secs(16), "closed after {closed:?}");
    // And the server still answers.
    let (status, _) = crate::ops_http::get(&format!("{base}healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// `agentcron <args>` with `env` (and no other agentcron variable), in the repository.
fn agentcron(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, String, Duration) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = Instant::now();
    let output = crate::common::agentcron(args, &env, &crate::common::repo_root());
    let (stdout, stderr) = crate::common::text(&output);
    (output.status.code(), stdout, stderr, started.elapsed())
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

#[tokio::test]
async fn the_scheduler_serves_its_probes_and_metrics_and_health_checks_each_process() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = worker_env(&app, dir.path());
    set(&mut env, "AGENTCRON__OPS__SCHEDULER_BIND", "127.0.0.1:0");
    let scheduler_log = dir.path().join("scheduler.log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentcron"));
    command.arg("scheduler").current_dir(crate::common::repo_root());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AGENTCRON")) {
        command.env_remove(name);
    }
    command.envs(env.iter().cloned()).stdout(std::process::Stdio::null());
    command.stderr(std::fs::File::create(&scheduler_log).unwrap());
    let mut scheduler = command.spawn().unwrap();
    let base = wait_for_url(&scheduler_log).await;
    let (status, _) = crate::ops_http::get(&format!("{base}healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = crate::ops_http::get(&format!("{base}readyz"), None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let metrics = client().get(format!("{base}metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let kind = metrics.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    let refused = get_as(&format!("{base}metrics"), "evil.example", None).await;
    assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
    // The scheduler has no API or dashboard.
    assert_eq!(get_as(&format!("{base}api/runs"), "127.0.0.1", None).await.status(), 404);

    let worker_log = dir.path().join("worker.log");
    let mut worker = spawn_worker_with(&worker_log, &env);
    let worker_base = wait_for_url(&worker_log).await;
    let at = |base: &str| base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    set(&mut env, "AGENTCRON__OPS__BIND", &at(&worker_base));
    set(&mut env, "AGENTCRON__OPS__SCHEDULER_BIND", &at(&base));
    let (code, stdout, stderr, _) = agentcron(&["health"], &env);
    assert_eq!((code, stdout.as_str()), (Some(0), "redis: ok\n"), "{stderr}");
    let (code, stdout, stderr, _) = agentcron(&["health", "--worker"], &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("worker: ok"), "{stdout}");
    let (code, stdout, stderr, _) = agentcron(&["health", "--scheduler", "--json"], &env);
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["checks"]["scheduler"], "ok", "{json}");
    assert_eq!(json["healthy"], true);

    // A stopped scheduler, and a Redis nobody serves: exit 1 naming each, within the timeout.
    scheduler.kill().unwrap();
    scheduler.wait().unwrap();
    let (code, _, stderr, _) = agentcron(&["health", "--scheduler"], &env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("scheduler: ") && stderr.contains(&at(&base)), "{stderr}");
    set(&mut env, "REDIS_URL", "redis://127.0.0.1:1");
    let (code, _, stderr, took) = agentcron(&["health"], &env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("redis: ") && stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    worker.kill().unwrap();
    worker.wait().unwrap();
}
