//! A minimal W3C WebDriver client over reqwest and serde_json, for the dashboard's browser
//! test: a `chromedriver` child on a free port, one headless Chromium session, and the few
//! commands the test needs (navigate, find, click, text, screenshot). The driver and its
//! browser end with this value.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::poll_until;

/// The driver's name for an element reference in W3C replies.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A `chromedriver` child and one session on it.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session with a 1280×1000 window.
    pub(crate) async fn start(profile: &Path) -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: install the Debian package chromium-driver (`.ci/run` \
             installs it when missing)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = super::super::ops_http::client();
        let root = format!("http://127.0.0.1:{port}");
        poll_until("chromedriver answers", Duration::from_secs(20), || async {
            http.get(format!("{root}/status")).send().await.is_ok()
        })
        .await;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": super::super::ops_http::CHROMIUM, "args": args},
        }}});
        let reply = send(http.post(format!("{root}/session")).json(&capabilities)).await;
        let session = reply["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}"));
        let base = format!("{root}/session/{session}");
        Self { driver, base, http }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    async fn get(&self, path: &str) -> Value {
        send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The first element matching `css`, waiting up to 20 s for it to appear.
    pub(crate) async fn find(&self, css: &str) -> String {
        poll_until(&format!("an element {css}"), Duration::from_secs(20), || async {
            let body = json!({"using": "css selector", "value": css});
            let reply =
                self.http.post(format!("{}/element", self.base)).json(&body).send().await.unwrap();
            let value: Value = reply.json().await.unwrap();
            value["value"][ELEMENT].as_str().map(str::to_owned).ok_or(value)
        })
        .await
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    /// Types `text` into the first element matching `css`.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/value"), json!({"text": text})).await;
    }

    /// The rendered text of the first element matching `css`.
    pub(crate) async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("/element/{element}/text")).await.as_str().unwrap_or_default().to_owned()
    }

    /// An attribute of the first element matching `css` (empty when it has none).
    pub(crate) async fn attribute(&self, css: &str, name: &str) -> String {
        let element = self.find(css).await;
        let value = self.get(&format!("/element/{element}/attribute/{name}")).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// What `script` (a function body) returns in the page.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    /// A PNG of the viewport, written to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (the browser closes); dropping `self` then ends the driver.
    pub(crate) async fn stop(self) {
        self.http.delete(&self.base).send().await.ok();
    }
}

/// Sends a command; panics with the driver's error unless it answered 200. Returns `value`.
async fn send(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "webdriver: {status}: {body}");
    body["value"].clone()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still stops its driver (and so its browser).
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}
