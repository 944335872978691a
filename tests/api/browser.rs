//! Browser end to end, in real headless Chromium (Debian's `chromium`; `.ci/run` installs it).
//!
//! A page served from another local origin does what the existing UI does: `POST
//! /generate-presigned-url` with `{"hash"}`, then follows `presignedUrl` through an `<a download>`
//! click. The file Chromium saves must hold the object's exact bytes. The same page served from
//! an origin not in `cors_allowed_origins` must be refused by CORS.
//!
//! Chromium is driven with its own DevTools protocol over `--remote-debugging-pipe` (JSON
//! messages separated by NUL bytes on file descriptors 3 and 4), so no WebDriver, no websocket
//! crate and no browser download are needed. `sh` wires the child's stdin/stdout to fds 3 and 4,
//! which keeps this free of `unsafe` (`pre_exec`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, timeout};

use crate::support::app::{Config, spawn_app};
use crate::support::mirror::{FakeMirror, weights_submitted};
use crate::support::s3::S3Server;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on every single wait in this file (a DevTools answer, a page load, a download).
const WAIT: Duration = Duration::from_secs(60);

/// What the existing UI does, reduced to its two steps. The API's base URL comes from `?api=`.
/// `download(hash)` resolves to "downloading" or to "refused: <error>", and also puts it in the
/// title so a person watching a headful run sees it.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>weights</title>
<script>
const API = new URLSearchParams(location.search).get("api");
async function download(hash) {
  let body;
  try {
    const r = await fetch(API + "/generate-presigned-url", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({hash}),
    });
    body = await r.json();
  } catch (e) {
    return document.title = "refused: " + e;
  }
  if (body.status !== "ok" || body.hash !== hash) {
    return document.title = "bad answer: " + JSON.stringify(body);
  }
  const a = document.createElement("a");
  a.href = body.presignedUrl;
  a.download = hash;
  document.body.append(a);
  a.click();
  return document.title = "downloading";
}
</script>
"#;

#[tokio::test]
async fn the_ui_flow_downloads_the_exact_object_and_other_origins_are_refused() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs Debian's `chromium` package, which .ci/run installs \
         (apt-get install chromium); it never downloads a browser"
    );

    // Two page origins: same host, different ports, so different origins.
    let (_allowed, allowed_origin) = serve_page().await;
    let (_other, other_origin) = serve_page().await;

    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let hash = format!("{}.safetensors", "5e".repeat(32));
    // Binary content (NULs, high bytes) so Chromium treats the answer as a file to save,
    // as it will for real weights.
    let object: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s3.put(&hash, &object);
    mirror.push_many([
        weights_submitted((1_700_000_000, 1), 0, 42, [0x11; 20], &"77".repeat(32), 1_700_000_000),
        weights_submitted((1_700_000_100, 2), 0, 42, [0x22; 20], &hash, 1_700_000_100),
    ]);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(&mirror, Some(&s3), dir.path());
    config.set("http", "cors_allowed_origins", &format!("[{allowed_origin:?}]"));
    let app = spawn_app(&config, Some(&s3)).await;
    app.wait_for_status("the backfill", |s| s["submissions_indexed"] == json!(2))
        .await;

    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).expect("downloads dir");
    let mut chrome = Chromium::launch(dir.path()).await;
    chrome
        .call(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allowAndName", "downloadPath": downloads, "eventsEnabled": true}),
            None,
        )
        .await;
    let page = chrome.open_page().await;

    // 1. The listed origin: the POST is allowed and the URL downloads the object.
    chrome.load(&page, &format!("{allowed_origin}/?api={}", app.url)).await;
    let outcome = chrome.eval(&page, &format!("download({hash:?})")).await;
    assert_eq!(
        outcome, "downloading",
        "the page at the allowed origin {allowed_origin}"
    );
    let guid = chrome.wait_for_download().await;
    let saved = std::fs::read(downloads.join(&guid)).expect("read the downloaded file");
    assert!(
        saved == object,
        "the downloaded file differs from the object: {} bytes saved, {} expected",
        saved.len(),
        object.len()
    );

    // 2. An origin not listed: the preflight answer has no Access-Control-Allow-Origin, so the
    //    browser never sends the POST and the fetch rejects.
    chrome.load(&page, &format!("{other_origin}/?api={}", app.url)).await;
    let outcome = chrome.eval(&page, &format!("download({hash:?})")).await;
    assert!(
        outcome.starts_with("refused: TypeError"),
        "the page at {other_origin} (not in cors_allowed_origins) must be refused by CORS; it said {outcome:?}"
    );
    // The console entry may arrive after the evaluation's answer: wait (bounded) for it. A fetch
    // that failed for another reason logs no CORS refusal and fails here.
    chrome
        .wait_for_console("has been blocked by CORS policy", "Chromium's CORS refusal")
        .await;
    assert_eq!(
        std::fs::read_dir(&downloads).expect("list downloads").count(),
        1,
        "no second download may happen"
    );

    chrome.close().await;
    app.stop().await;
}

/// Serves `PAGE` on a fresh local port; returns the server task and its origin.
async fn serve_page() -> (AbortOnDrop, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind page server");
    let origin = format!("http://{}", listener.local_addr().expect("page addr"));
    let router = Router::new().route("/", get(|| async { Html(PAGE) }));
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("page server");
    });
    (AbortOnDrop(task), origin)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A headless Chromium with a fresh profile, spoken to over the DevTools pipe.
/// Dropping it kills the browser (`kill_on_drop`); the profile is a temporary directory.
struct Chromium {
    child: Child,
    to_browser: ChildStdin,
    from_browser: BufReader<ChildStdout>,
    next_id: u64,
    /// Download events received while waiting for answers, oldest first.
    downloads: VecDeque<Value>,
    /// Every console/log entry seen, for failure messages and the CORS check.
    console: Vec<String>,
    log_path: PathBuf,
    _profile: tempfile::TempDir,
}

/// An attached page: DevTools commands for it carry this session id.
struct Page(String);

impl Chromium {
    async fn launch(log_dir: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let log_path = log_dir.join("chromium.log");
        let log = std::fs::File::create(&log_path).expect("chromium log file");
        let mut child = Command::new("sh")
            // fd 3 <- our stdin (commands), fd 4 -> our stdout (answers and events).
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >&2"#)
            .arg(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium through sh");
        let to_browser = child.stdin.take().expect("piped stdin");
        let from_browser = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            downloads: VecDeque::new(),
            console: Vec::new(),
            log_path,
            _profile: profile,
        }
    }

    /// Sends a command and waits (bounded) for its answer; panics on a DevTools error.
    async fn call(&mut self, method: &str, params: Value, page: Option<&Page>) -> Value {
        match self.try_call(method, params, page).await {
            Ok(result) => result,
            Err(error) => self.fail(&format!("{method} failed: {error}")),
        }
    }

    /// Sends a command and waits (bounded) for its answer: its result or its DevTools error.
    async fn try_call(&mut self, method: &str, params: Value, page: Option<&Page>) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(Page(session)) = page {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("serialize command");
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes).await {
            self.fail(&format!("cannot send {method} to chromium: {e}"));
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.next_message(deadline, method).await;
            if message["id"] == json!(id) {
                return match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
            }
            self.keep_event(message);
        }
    }

    /// Reads one message, failing at `deadline`.
    async fn next_message(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        let mut buf = Vec::new();
        let read = timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.from_browser.read_until(0, &mut buf),
        )
        .await;
        match read {
            Err(_) => self.fail(&format!(
                "no answer from chromium within {WAIT:?} while waiting for {waiting_for}"
            )),
            Ok(Err(e)) => self.fail(&format!("reading from chromium: {e}")),
            Ok(Ok(0)) => self.fail(&format!("chromium closed the pipe while waiting for {waiting_for}")),
            Ok(Ok(_)) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        serde_json::from_slice(&buf).unwrap_or_else(|e| self.fail(&format!("bad DevTools message ({e})")))
    }

    /// Keeps what later checks need from an event: console text and download progress.
    fn keep_event(&mut self, event: Value) {
        let params = &event["params"];
        match event["method"].as_str().unwrap_or_default() {
            "Log.entryAdded" => self
                .console
                .push(params["entry"]["text"].as_str().unwrap_or_default().to_owned()),
            "Runtime.consoleAPICalled" => self.console.push(params["args"].to_string()),
            "Runtime.exceptionThrown" => self.console.push(params["exceptionDetails"].to_string()),
            m if m.starts_with("Browser.download") => self.downloads.push_back(event),
            _ => {}
        }
    }

    /// Opens a blank tab and attaches to it.
    async fn open_page(&mut self) -> Page {
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                None,
            )
            .await;
        let page = Page(attached["sessionId"].as_str().expect("a session id").to_owned());
        self.call("Page.enable", json!({}), Some(&page)).await;
        self.call("Log.enable", json!({}), Some(&page)).await;
        self.call("Runtime.enable", json!({}), Some(&page)).await;
        page
    }

    /// Navigates and waits until the page's script is ready.
    async fn load(&mut self, page: &Page, url: &str) {
        let nav = self.call("Page.navigate", json!({"url": url}), Some(page)).await;
        if let Some(error) = nav.get("errorText") {
            self.fail(&format!("cannot load {url}: {error}"));
        }
        let deadline = Instant::now() + WAIT;
        loop {
            // Until the new document commits, this runs in the old one (or in none: an error).
            let ready = self
                .try_eval(page, "typeof download === 'function' && location.href")
                .await;
            if ready.as_deref() == Ok(url) {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("{url} did not load within {WAIT:?}; last check: {ready:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Evaluates an expression (awaiting a promise) and returns its value as a string.
    async fn eval(&mut self, page: &Page, expression: &str) -> String {
        match self.try_eval(page, expression).await {
            Ok(value) => value,
            Err(error) => self.fail(&format!("`{expression}` failed: {error}")),
        }
    }

    /// `eval`, returning a DevTools error or a JavaScript exception as `Err`.
    async fn try_eval(&mut self, page: &Page, expression: &str) -> Result<String, String> {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self
            .try_call("Runtime.evaluate", params, Some(page))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("threw {exception}"));
        }
        Ok(match &result["result"]["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// Waits (bounded) for one download to start and complete; returns its file name (a GUID).
    async fn wait_for_download(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        let mut guid = None;
        loop {
            let event = match self.downloads.pop_front() {
                Some(event) => event,
                None => {
                    let message = self.next_message(deadline, "the download").await;
                    self.keep_event(message);
                    continue;
                }
            };
            match event["method"].as_str() {
                Some("Browser.downloadWillBegin") => {
                    guid = event["params"]["guid"].as_str().map(str::to_owned);
                }
                Some("Browser.downloadProgress") if event["params"]["guid"].as_str() == guid.as_deref() => {
                    match event["params"]["state"].as_str() {
                        Some("completed") => return guid.expect("guid seen"),
                        Some("canceled") => self.fail("chromium canceled the download"),
                        _ => {}
                    }
                }
                _ => {}
            }
            if Instant::now() > deadline {
                self.fail(&format!("no completed download within {WAIT:?}"));
            }
        }
    }

    /// Waits (bounded) until a console entry mentions `needle`.
    async fn wait_for_console(&mut self, needle: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.console.iter().any(|t| t.contains(needle)) {
            let message = self.next_message(deadline, what).await;
            self.keep_event(message);
        }
    }

    /// Asks the browser to quit, then makes sure it has.
    async fn close(mut self) {
        self.next_id += 1;
        let mut bytes = serde_json::to_vec(&json!({"id": self.next_id, "method": "Browser.close"})).expect("json");
        bytes.push(0);
        let _ = self.to_browser.write_all(&bytes).await;
        if timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }

    /// Panics with `what`, the console seen so far and the tail of Chromium's own log.
    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "{what}\npage console: {:?}\nlast lines of chromium's log ({}):\n{}",
            self.console,
            self.log_path.display(),
            tail.join("\n")
        );
    }
}
