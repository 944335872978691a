//! `spawn_app`: the daemon in-process on port 0 with its own temporary database, pointed at a
//! fake mirror node and an S3 server; plus `Config`, a TOML builder shared with the tests
//! that start the real binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weights_watcher::app::{App, AppOptions};
use weights_watcher::config::Settings;
use weights_watcher::events::EventSpec;
use weights_watcher::metrics::Metrics;
use weights_watcher::mirror::RetryPolicy;
use weights_watcher::poller::{CatchUp, RescanPolicy};

use super::mirror::FakeMirror;
use super::s3::S3Server;

/// A config.toml under construction: `section -> key -> TOML literal`.
#[derive(Debug, Clone)]
pub struct Config {
    values: BTreeMap<String, BTreeMap<String, String>>,
}

impl Config {
    /// Settings for a test: the mirror's contract, fast polling, a database in `dir`.
    pub fn new(mirror: &FakeMirror, s3: Option<&S3Server>, dir: &Path) -> Self {
        let mut c = Self {
            values: BTreeMap::new(),
        };
        c.set("mirror", "base_url", &format!("{:?}", mirror.base_url));
        c.set("mirror", "contract", &format!("{:?}", mirror.contract_id()));
        c.set("mirror", "poll_interval", "\"100ms\"");
        c.set("mirror", "request_timeout", "\"2s\"");
        c.set(
            "database",
            "path",
            &format!("{:?}", dir.join("ww.db").display().to_string()),
        );
        c.set("http", "listen", "\"127.0.0.1:0\"");
        c.set("http", "cors_allowed_origins", "[\"http://allowed.test:5173\"]");
        if let Some(s3) = s3 {
            c.set("storage", "endpoint", &format!("{:?}", s3.endpoint));
            c.set("storage", "bucket", &format!("{:?}", s3.bucket));
            c.set("storage", "region", "\"us-east-1\"");
        }
        c
    }

    /// Sets `[section] key = literal` (a TOML literal: quote strings).
    pub fn set(&mut self, section: &str, key: &str, literal: &str) -> &mut Self {
        self.values
            .entry(section.into())
            .or_default()
            .insert(key.into(), literal.into());
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        for (section, keys) in &self.values {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    }

    /// Parsed settings.
    pub fn settings(&self) -> Settings {
        Settings::from_toml(Path::new("test-config.toml"), &self.toml(), Vec::new()).expect("test config is valid")
    }

    /// Writes it to `dir/config.toml` and returns the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.toml()).expect("write config");
        path
    }
}

/// Quick retries so fault tests run in seconds.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        max_attempts: None,
        max_retry_after: Duration::from_secs(10),
    }
}

/// A running daemon.
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub db_path: PathBuf,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Test options: fast retries, the S3 server's credentials.
pub fn options(s3: Option<&S3Server>) -> AppOptions {
    AppOptions {
        retry: fast_retry(),
        credentials: s3.map(S3Server::credentials),
        ..AppOptions::default()
    }
}

/// Starts the daemon (poller + HTTP) in-process.
pub async fn spawn_app(config: &Config, s3: Option<&S3Server>) -> TestApp {
    spawn_app_with(config, options(s3)).await
}

/// Starts the daemon in-process with explicit options.
pub async fn spawn_app_with(config: &Config, options: AppOptions) -> TestApp {
    let settings = config.settings();
    let spec = EventSpec::new(&settings.event).expect("event spec");
    let db_path = settings.database.path.clone();
    let app = App::build(settings, spec, options).await.expect("app builds");
    let metrics = app.metrics().clone();
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(listener, cancel.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        addr,
        url: format!("http://{addr}"),
        db_path,
        metrics,
        http,
        cancel,
        task,
    }
}

/// Starts the daemon with a late-arrival sweep every `every` over the last hour.
pub async fn spawn_app_sweeping(config: &Config, s3: Option<&S3Server>, every: Duration) -> TestApp {
    let rescan = RescanPolicy {
        every,
        window: Duration::from_secs(3600),
    };
    spawn_app_with(config, AppOptions { rescan, ..options(s3) }).await
}

/// `run --once` in-process.
pub async fn run_once(config: &Config, s3: Option<&S3Server>) -> CatchUp {
    let settings = config.settings();
    let spec = EventSpec::new(&settings.event).expect("event spec");
    let app = App::build(settings, spec, options(s3)).await.expect("app builds");
    app.run_once(&CancellationToken::new())
        .await
        .expect("catch-up succeeds")
}

impl TestApp {
    /// GET a path, returning status and JSON (or Null).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Waits (bounded) until `check` passes on `/v1/status`.
    /// The bound is generous: it only ends a test that would otherwise hang, and a busy CI
    /// machine can be many times slower than a laptop.
    pub async fn wait_for_status(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (_, body) = self.get("/v1/status").await;
            if check(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the daemon and waits for it, asserting a clean exit.
    pub async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops within 5 s");
        result.expect("no panic").expect("clean exit");
    }
}
