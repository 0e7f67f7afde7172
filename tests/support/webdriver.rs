//! A small W3C WebDriver client for the browser tests: headless Chromium through Debian's
//! `chromedriver`, over the HTTP client the other tests already use. Just what the tests need:
//! sessions, navigation, elements by CSS selector, clicks, keys, text, attributes, scripts,
//! screenshots and the browser's console log.
//!
//! The browser is a hard requirement: when `/usr/bin/chromium` or `/usr/bin/chromedriver` is
//! missing the test fails, naming the packages (`scripts/test.sh` installs them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::DEADLINE;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key W3C WebDriver uses for an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

/// A `chromedriver` process on a free loopback port; killed, with the browsers it started, on drop.
pub struct Driver {
    child: Child,
    port: u16,
    dir: TempDir,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Driver {
    /// Starts chromedriver and waits until its `/status` says it is ready.
    pub async fn start() -> Driver {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the browser tests need Debian's `chromium` and \
                 `chromium-driver` packages (./scripts/test.sh installs them)"
            );
        }
        let dir = tempfile::tempdir().expect("create a temp dir for the browser");
        // A free port: bind port 0, note it, release it for chromedriver.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            l.local_addr().expect("bound socket has an address").port()
        };
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))
            .expect("create the chromedriver log");
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log),
            // Its own process group, so that dropping the driver also ends the browsers it started.
            0,
        )
        .spawn()
        .expect("spawn chromedriver");
        let driver = Driver {
            child,
            port,
            dir,
            http: Client::builder(TokioExecutor::new()).build_http(),
        };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok((_, v)) = driver.call(Method::GET, "/status", None).await
                && v["value"]["ready"] == json!(true)
            {
                return driver;
            }
            assert!(
                Instant::now() < end,
                "chromedriver did not become ready; its log:\n{}",
                driver.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// What chromedriver printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A new headless Chromium session with a fresh profile.
    pub async fn session(&self) -> Session<'_> {
        let profile = self.dir.path().join(format!("profile-{}", self.port));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, v) = self
            .call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("new session: {e}; log:\n{}", self.log()));
        assert!(
            status.is_success(),
            "new session refused: {v}; log:\n{}",
            self.log()
        );
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {v}"))
            .to_string();
        Session {
            base: format!("/session/{id}"),
            driver: self,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(http::StatusCode, Value), String> {
        let body = match (&method, body) {
            (_, Some(v)) => Bytes::from(v.to_string()),
            (&Method::POST, None) => Bytes::from_static(b"{}"),
            _ => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid WebDriver request");
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = serde_json::from_slice(&bytes).map_err(|e| format!("{e}: {bytes:?}"))?;
        Ok((status, v))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds chromedriver and every browser it started; all were started here.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver error: the W3C `error` code and its message.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

/// An element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

/// One browser session.
pub struct Session<'d> {
    driver: &'d Driver,
    base: String,
}

impl Session<'_> {
    /// A command; a W3C error comes back as `Err`.
    async fn try_cmd(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let (status, v) = self
            .driver
            .call(method, &format!("{}{path}", self.base), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(WdError {
                error: v["value"]["error"].as_str().unwrap_or("?").to_string(),
                message: v["value"]["message"].as_str().unwrap_or("").to_string(),
            })
        }
    }

    /// A command that must succeed.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path} failed: {} {}", e.error, e.message))
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.cmd(Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.try_cmd(
            Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .ok()
        .map(|v| element(&v))
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .as_array()
        .map(|a| a.iter().map(element).collect())
        .unwrap_or_default()
    }

    pub async fn find(&self, css: &str) -> Element {
        self.try_find(css)
            .await
            .unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    pub async fn displayed(&self, el: &Element) -> bool {
        self.try_cmd(Method::GET, &format!("/element/{}/displayed", el.0), None)
            .await
            .map(|v| v == json!(true))
            .unwrap_or(false)
    }

    /// Waits until an element matching `css` is displayed, and returns it.
    pub async fn wait(&self, css: &str) -> Element {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(el) = self.try_find(css).await
                && self.displayed(&el).await
            {
                return el;
            }
            if Instant::now() >= end {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {css:?} to be displayed; page text:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no displayed element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let end = Instant::now() + DEADLINE;
        loop {
            let shown = match self.try_find(css).await {
                Some(el) => self.displayed(&el).await,
                None => false,
            };
            if !shown {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {css:?} to disappear"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the text of the element matching `css` contains `wanted`, and returns the text.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        let end = Instant::now() + DEADLINE;
        let mut last = String::new();
        loop {
            if let Some(el) = self.try_find(css).await {
                last = self.text(&el).await;
                if last.contains(wanted) {
                    return last;
                }
            }
            if Instant::now() >= end {
                panic!("timed out waiting for {css:?} to contain {wanted:?}; last text: {last:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the script (a function body that returns a value) returns true.
    pub async fn wait_script(&self, what: &str, script: &str, args: Value) {
        let end = Instant::now() + DEADLINE;
        loop {
            if self.execute(script, args.clone()).await == json!(true) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn click(&self, el: &Element) {
        self.cmd(Method::POST, &format!("/element/{}/click", el.0), None)
            .await;
    }

    /// Waits for `css` to be displayed, then clicks it.
    pub async fn click_css(&self, css: &str) {
        let el = self.wait(css).await;
        self.click(&el).await;
    }

    pub async fn clear(&self, el: &Element) {
        self.cmd(Method::POST, &format!("/element/{}/clear", el.0), None)
            .await;
    }

    /// Types `text` into the element (WebDriver key codes such as `\u{E007}` for Enter included).
    pub async fn send_keys(&self, el: &Element, text: &str) {
        self.cmd(
            Method::POST,
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clears the field matching `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait(css).await;
        self.clear(&el).await;
        self.send_keys(&el, text).await;
    }

    /// Presses and releases each key in `keys` on whatever has the focus, as a keyboard does.
    pub async fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                let k = k.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.cmd(
            Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
        let _ = self.try_cmd(Method::DELETE, "/actions", None).await;
    }

    /// The id of the focused element.
    pub async fn focused_id(&self) -> String {
        self.execute("return document.activeElement?.id ?? ''", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn text(&self, el: &Element) -> String {
        self.try_cmd(Method::GET, &format!("/element/{}/text", el.0), None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub async fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        self.cmd(
            Method::GET,
            &format!("/element/{}/attribute/{name}", el.0),
            None,
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    pub async fn property(&self, el: &Element, name: &str) -> Value {
        self.cmd(
            Method::GET,
            &format!("/element/{}/property/{name}", el.0),
            None,
        )
        .await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The whole page's visible text, and its HTML: what a failed wait reports.
    pub async fn page_text(&self) -> String {
        let text = match self.try_find("body").await {
            Some(body) => self.text(&body).await,
            None => String::new(),
        };
        let html = self
            .try_cmd(
                Method::POST,
                "/execute/sync",
                Some(json!({"script": "return document.body.outerHTML", "args": []})),
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        format!("{text}\n---- HTML ----\n{html}")
    }

    /// The text of a JavaScript alert, when one is open.
    pub async fn alert_text(&self) -> Option<String> {
        self.try_cmd(Method::GET, "/alert/text", None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// The browser's console messages since the last call: (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        self.try_cmd(Method::POST, "/se/log", Some(json!({ "type": "browser" })))
            .await
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.cmd(Method::GET, "/screenshot", None).await;
        let png = base64_decode(data.as_str().expect("a screenshot is a base64 string"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session and closes its browser.
    pub async fn quit(self) {
        let _ = self.driver.call(Method::DELETE, &self.base, None).await;
    }
}

fn element(v: &Value) -> Element {
    Element(
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {v}"))
            .to_string(),
    )
}

/// Where the browser tests put their screenshots: `$CARGO_TARGET_DIR/screenshots` when that is
/// set, else `target/screenshots` in the repository.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}
