//! A standalone fake Hedera mirror node for the end-to-end benchmarks (BENCHMARKS.md): the
//! integration tests' fake (`tests/api/support/mirror.rs`) in its own process, loopback only.
//!
//! ```sh
//! cargo run --release --example fake_mirror -- LOGS PORT LATENCY_MS [CONTROL_PORT]
//! ```
//!
//! Serves contract 0.0.5005 with `LOGS` logs of the deterministic history (~85%
//! WeightsSubmitted, ~10% another event, ~5% malformed; pages of at most 100) on
//! `127.0.0.1:PORT`, adding `LATENCY_MS` to every request. Task ids are rewritten so every task
//! has 10 submissions whatever `LOGS` is: lookups cost the same at 10 k and at 1 M rows.
//!
//! With `CONTROL_PORT` (not 0), a control listener on `127.0.0.1:CONTROL_PORT` takes
//! `POST /push?task=ID&hash=KEY`: it appends one WeightsSubmitted log stamped with the current
//! time and answers its consensus timestamp (the freshness benchmark). It prints one `ready` line
//! on stdout once both listeners accept connections, then serves until killed.

#[path = "../tests/api/support/mirror.rs"]
mod mirror;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;

/// Submissions per task in the served history.
const PER_TASK: u64 = 10;
/// The history spans 30 days ending on 2023-11-14 22:13:20 UTC, well before any pushed log.
const HISTORY_START: u64 = 1_700_000_000 - 30 * 86_400;
const HISTORY_SPAN: u64 = 30 * 86_400;
/// The trainer of pushed logs.
const TRAINER: [u8; 20] = [0xa1; 20];

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str, default: Option<T>) -> anyhow::Result<T> {
    match args.get(i) {
        Some(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}: not a number: {v:?}")),
        None => default.ok_or_else(|| anyhow::anyhow!("usage: fake_mirror LOGS PORT LATENCY_MS [CONTROL_PORT]")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let logs: usize = arg(&args, 0, "LOGS", None)?;
    let port: u16 = arg(&args, 1, "PORT", None)?;
    let latency_ms: u64 = arg(&args, 2, "LATENCY_MS", None)?;
    let control_port: u16 = arg(&args, 3, "CONTROL_PORT", Some(0))?;

    let (mut history, expected, _) = mirror::history(1, logs, HISTORY_START, HISTORY_SPAN);
    let submissions = expected.len();
    drop(expected);
    let topic0 = mirror::weights_submitted_topic0();
    let ours = history
        .iter_mut()
        .filter(|l| l.topics.first() == Some(&topic0) && l.topics.len() > 1);
    for (k, log) in ours.enumerate() {
        log.topics[1] = word(k as u64 / PER_TASK + 1);
    }

    let mirror = Arc::new(
        mirror::FakeMirror::start_with(mirror::MirrorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            latency: Duration::from_millis(latency_ms),
            ..Default::default()
        })
        .await,
    );
    mirror.push_many(history);

    let mut control = String::new();
    if control_port != 0 {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], control_port)))
            .await
            .with_context(|| format!("while binding the control port {control_port}"))?;
        control = format!(" control=http://{}", listener.local_addr()?);
        let app = Router::new().route("/push", post(push)).with_state(mirror.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake_mirror: control listener failed: {e}");
            }
        });
    }
    // Malformed logs carry WeightsSubmitted's topic0 too, so `tasks` is submissions / 10: every id
    // in 1..=tasks has submissions (about 10), the range lookups rotate over.
    println!(
        "ready base_url={} contract={} logs={logs} submissions={submissions} tasks={} latency_ms={latency_ms}{control}",
        mirror.base_url,
        mirror.contract_id(),
        submissions as u64 / PER_TASK,
    );
    std::future::pending::<()>().await;
    Ok(())
}

/// A uint256 topic holding `v`.
fn word(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

/// `POST /push?task=ID&hash=KEY`: one WeightsSubmitted log at the current time.
async fn push(
    State(mirror): State<Arc<mirror::FakeMirror>>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let (Some(task), Some(hash)) = (q.get("task").and_then(|t| t.parse::<u64>().ok()), q.get("hash")) else {
        return (StatusCode::BAD_REQUEST, "usage: POST /push?task=ID&hash=KEY\n".into());
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = (now.as_secs(), now.subsec_nanos());
    mirror.push(mirror::weights_submitted(ts, 0, task, TRAINER, hash, ts.0));
    (StatusCode::OK, format!("{}\n", mirror::format_timestamp(ts)))
}
