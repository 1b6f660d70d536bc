//! A tiny W3C WebDriver client: starts ChromeDriver on a free loopback port, opens a headless
//! Chromium session with a fresh profile, and offers the few commands the dashboard tests use.
//! Everything is blocking HTTP/1.1 over `TcpStream` (`super::http`); ChromeDriver and the
//! browser are killed when the [`Browser`] drops.

use super::http;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// W3C's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver error answer (or a transport failure).
#[derive(Debug, Clone)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(pub String);

/// Paths of the browser and its driver: `BPU_CHROMIUM` (default /usr/bin/chromium) and
/// `BPU_CHROMEDRIVER` (default /usr/bin/chromedriver). Panics when either is missing.
pub fn tools() -> (PathBuf, PathBuf) {
    let chromium =
        PathBuf::from(std::env::var("BPU_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let driver = PathBuf::from(
        std::env::var("BPU_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    );
    for (what, p, var) in [
        ("Chromium", &chromium, "BPU_CHROMIUM"),
        ("ChromeDriver", &driver, "BPU_CHROMEDRIVER"),
    ] {
        assert!(
            p.is_file(),
            "{what} is not installed at {} (set {var} to its path): the dashboard tests drive a \
             real headless Chromium; run `bash ci/setup.sh` (installs Debian's chromium and \
             chromium-driver)",
            p.display()
        );
    }
    (chromium, driver)
}

/// A headless Chromium driven through ChromeDriver.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Sends `method path` with a JSON body to ChromeDriver at `addr`; answers `value`.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, WdError> {
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    let headers: &[(&str, &str)] = if bytes.is_some() {
        &[("Content-Type", "application/json; charset=utf-8")]
    } else {
        &[]
    };
    let a = http::request(addr, method, path, headers, bytes.as_deref(), timeout).map_err(|e| {
        WdError {
            error: "transport".into(),
            message: format!("{method} {path}: {e}"),
        }
    })?;
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| WdError {
        error: "bad answer".into(),
        message: format!("{method} {path}: {} ({e}): {}", a.status, a.text()),
    })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if a.status == 200 {
        return Ok(value);
    }
    Err(WdError {
        error: value["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string(),
        message: value["message"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    })
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session (a fresh profile each time).
    pub fn start() -> Browser {
        let (chromium, driver_path) = tools();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut driver = Command::new(&driver_path)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", driver_path.display()));
            // Ready when /status says so (ChromeDriver starts in well under a second).
            let t0 = Instant::now();
            let mut ready = false;
            while t0.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = driver.try_wait() {
                    break;
                }
                if let Ok(v) = call(&addr, "GET", "/status", None, Duration::from_secs(2)) {
                    if v["ready"].as_bool() == Some(true) {
                        ready = true;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !ready {
                let _ = driver.kill();
                let _ = driver.wait();
                last_err = format!("ChromeDriver on port {port} did not become ready");
                continue;
            }
            let caps = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.to_string_lossy(),
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--window-size=1280,1000",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
                "goog:loggingPrefs": {"browser": "ALL"},
                "timeouts": {"pageLoad": 30_000, "script": 30_000, "implicit": 0},
            }}});
            match call(
                &addr,
                "POST",
                "/session",
                Some(&caps),
                Duration::from_secs(90),
            ) {
                Ok(v) => {
                    let session = v["sessionId"]
                        .as_str()
                        .expect("session id in the new-session answer")
                        .to_string();
                    return Browser {
                        driver,
                        addr,
                        session,
                        _profile: profile,
                    };
                }
                Err(e) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    last_err = format!("creating a session with {}: {e}", chromium.display());
                }
            }
        }
        panic!("could not start headless Chromium: {last_err} (see ci/setup.sh)");
    }

    /// A command of this session: `path` is relative to `/session/{id}`.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let p = format!("/session/{}{path}", self.session);
        call(
            &self.addr,
            method,
            &p,
            body.as_ref(),
            Duration::from_secs(60),
        )
    }

    fn must(&self, what: &str, r: Result<Value, WdError>) -> Value {
        r.unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    /// Navigates to `url` and waits for the load.
    pub fn goto(&self, url: &str) {
        let r = self.cmd("POST", "/url", Some(json!({ "url": url })));
        self.must(&format!("navigate to {url}"), r);
    }

    pub fn url(&self) -> String {
        let r = self.cmd("GET", "/url", None);
        self.must("current url", r)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let r = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        match r {
            Ok(v) => Some(Element(
                v[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("no element reference in {v}"))
                    .to_string(),
            )),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("WebDriver find {css:?}: {e}"),
        }
    }

    /// The element matching `css`, waiting for it up to `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if t0.elapsed() > timeout {
                panic!(
                    "no element {css:?} after {timeout:?} on {}: page text: {}",
                    self.url(),
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn click(&self, e: &Element) {
        let r = self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})));
        self.must("click", r);
    }

    pub fn clear(&self, e: &Element) {
        let r = self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
        self.must("clear", r);
    }

    /// Types `text` into an element (keyboard events, as a person would).
    pub fn type_text(&self, e: &Element, text: &str) {
        let r = self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
        self.must("send keys", r);
    }

    pub fn text(&self, e: &Element) -> String {
        let r = self.cmd("GET", &format!("/element/{}/text", e.0), None);
        self.must("element text", r)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        let r = self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None);
        self.must("attribute", r).as_str().map(str::to_string)
    }

    /// Runs a synchronous script in the page (`arguments` are `args`); answers its value.
    pub fn exec(&self, script: &str, args: Value) -> Result<Value, WdError> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls `script` every 50 ms until it returns something other than null/false/""; panics
    /// after `timeout` with `what` (script errors while the page changes count as not yet).
    pub fn wait_js(&self, what: &str, timeout: Duration, script: &str, args: Value) -> Value {
        let t0 = Instant::now();
        loop {
            let last = match self.exec(script, args.clone()) {
                Ok(Value::Null) | Ok(Value::Bool(false)) => "not yet".to_string(),
                Ok(Value::String(s)) if s.is_empty() => "not yet".to_string(),
                Ok(v) => return v,
                Err(e) => e.to_string(),
            };
            if t0.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for {what} ({last}) on {}: page text: {}",
                    self.url(),
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the current URL's path (without the query) is `path`.
    pub fn wait_path(&self, path: &str, timeout: Duration) -> String {
        let v = self.wait_js(
            &format!("the browser to be on {path}"),
            timeout,
            "return location.pathname === arguments[0] && document.readyState === 'complete' \
             ? location.href : null",
            json!([path]),
        );
        v.as_str().unwrap_or_default().to_string()
    }

    /// The page's visible text, shortened (for failure messages).
    pub fn page_text(&self) -> String {
        match self.exec(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        ) {
            Ok(v) => {
                let s = v.as_str().unwrap_or_default().replace('\n', " | ");
                s.chars().take(1500).collect()
            }
            Err(e) => format!("({e})"),
        }
    }

    /// Saves a PNG of the viewport to `$BPU_UI_SCREENSHOTS/<name>.png` when that variable is
    /// set (for looking at the pages; the tests do not need it).
    pub fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("BPU_UI_SCREENSHOTS") else {
            return;
        };
        use base64::Engine as _;
        let r = self.cmd("GET", "/screenshot", None);
        let b64 = self.must("screenshot", r);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot base64");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// The browser's console log since the last call (ChromeDriver's `se/log`), or `None`
    /// when the driver does not offer it.
    pub fn console(&self) -> Option<Vec<Value>> {
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .ok()
            .and_then(|v| v.as_array().cloned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(logs) = self.console() {
                for l in logs {
                    eprintln!("browser console: {} {}", l["level"], l["message"]);
                }
            }
        }
        let _ = call(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
            Duration::from_secs(10),
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
