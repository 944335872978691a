//! `cargo run --example demo`: the whole flow on this machine, without credentials or network.
//!
//! Starts, in this process and on loopback only, a fake Hedera mirror node holding a few
//! `WeightsSubmitted` logs and a real S3-compatible server (s3s, checking SigV4 signatures)
//! holding their objects: the same fixtures the integration tests use. Then runs weights-watcher
//! against them, waits for the backfill and prints `curl` commands to try. Ctrl-C stops it.

#[path = "../tests/api/support/mirror.rs"]
mod mirror;
#[path = "../tests/api/support/s3.rs"]
mod s3;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use weights_watcher::app::{App, AppOptions};
use weights_watcher::config::Settings;
use weights_watcher::events::EventSpec;

/// (task id, trainer, object key): what trainers uploaded and recorded on chain.
const SUBMISSIONS: &[(u64, [u8; 20], &str)] = &[
    (1, [0xa1; 20], "task1-round1.safetensors"),
    (1, [0xb2; 20], "task1-round2.safetensors"),
    (2, [0xa1; 20], "task2-round1.safetensors"),
    (3, [0xc3; 20], "task3-round1.safetensors"),
    (3, [0xb2; 20], "task3-round2.safetensors"),
    (3, [0xa1; 20], "task3-round3.safetensors"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The upstreams: a mirror node with one log per submission, a bucket with one object each.
    let mirror = mirror::FakeMirror::start().await;
    let s3 = s3::S3Server::start().await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for (i, (task, trainer, key)) in SUBMISSIONS.iter().enumerate() {
        let when = now - 3600 + 300 * i as u64;
        mirror.push(mirror::weights_submitted((when, 0), 0, *task, *trainer, key, when));
        s3.put(
            key,
            format!("demo weights of task {task}, uploaded as {key}\n").as_bytes(),
        );
    }

    // weights-watcher's own configuration, as an operator would write it.
    let dir = tempfile::tempdir()?;
    let listen = if std::net::TcpListener::bind("127.0.0.1:9001").is_ok() {
        "127.0.0.1:9001"
    } else {
        "127.0.0.1:0" // 9001 is taken: any free port.
    };
    let toml = format!(
        "[mirror]\nbase_url = {:?}\ncontract = {:?}\npoll_interval = \"1s\"\n\
         [storage]\nendpoint = {:?}\nbucket = {:?}\nregion = \"us-east-1\"\n\
         [database]\npath = {:?}\n\
         [http]\nlisten = {listen:?}\ncors_allowed_origins = [\"http://localhost:5173\"]\n",
        mirror.base_url,
        mirror.contract_id(),
        s3.endpoint,
        s3.bucket,
        dir.path().join("demo.db").display().to_string(),
    );
    let settings = Settings::from_toml(std::path::Path::new("demo.toml"), &toml, std::env::vars())?;
    weights_watcher::telemetry::init(settings.log.format);
    let spec = EventSpec::new(&settings.event)?;
    let options = AppOptions {
        credentials: Some(s3.credentials()),
        ..Default::default()
    };
    let app = App::build(settings, spec, options).await?;
    let listener = app.bind().await?;
    let api = format!("http://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    let mut running = tokio::spawn(app.run_until_stopped(listener, cancel.clone()));

    wait_for_backfill(&api).await?;
    let hash = SUBMISSIONS[0].2;
    println!(
        "\nweights-watcher is serving {n} submissions on {api} (fake mirror {m}, S3 {e}).\nTry:\n\n  \
         curl -s {api}/v1/tasks/1/weights\n  \
         curl -s {api}/v1/tasks\n  \
         curl -s {api}/v1/weights/{hash}\n  \
         curl -sL -o {hash} {api}/v1/weights/{hash}/download && cat {hash}\n  \
         curl -s -X POST -H 'Content-Type: application/json' -d '{{\"hash\":\"{hash}\"}}' {api}/generate-presigned-url\n  \
         curl -s {api}/v1/status\n  \
         curl -s {api}/metrics\n\nCtrl-C stops the demo.",
        n = SUBMISSIONS.len(),
        m = mirror.base_url,
        e = s3.endpoint,
    );

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        result = &mut running => return result?.context("weights-watcher stopped"),
    }
    cancel.cancel();
    running.await??;
    Ok(())
}

/// Polls `/v1/status` until every sample submission is indexed (at most 30 s).
async fn wait_for_backfill(api: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = reqwest::get(format!("{api}/v1/status")).await?.json().await?;
        if status["submissions_indexed"].as_u64() >= Some(SUBMISSIONS.len() as u64) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the backfill did not finish within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
