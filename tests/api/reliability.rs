//! SPEC §8's promises attacked: SIGKILL at random moments, every mirror fault alone and mixed,
//! a mirror node that misbehaves on purpose, 64 API clients during a backfill, and a disk that
//! fills up or turns read-only. Sizes fit CI; `TEST_CRASH_KILLS` and `TEST_FAULT_LOGS` run them
//! bigger by hand.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sqlx::Connection;
use weights_watcher::types::ConsensusTimestamp;

use crate::support::app::{Config, TestApp, spawn_app, spawn_app_sweeping};
use crate::support::mirror::{self, Expected, FakeMirror, Fault, RetryAfter};
use crate::support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::support::{
    assert_same, open_connection, sorted, stored_rejections, stored_snapshot, stored_submissions, weight_hashes,
};

const START: u64 = 1_580_000_000;
const DAY: u64 = 86_400;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn position(timestamp: &str, index: u32) -> (ConsensusTimestamp, u32) {
    (timestamp.parse().expect("stored timestamps parse"), index)
}

/// The database is intact and its cursor covers exactly its rows: every expected submission
/// up to the cursor is stored, none after it, each once.
async fn assert_consistent(db: &Path, expected: &[Expected]) -> usize {
    if !db.exists() {
        return 0; // killed before the daemon created its database
    }
    let mut conn = open_connection(db).await;
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check");
    assert_eq!(check, "ok", "PRAGMA integrity_check");
    let migrated: Option<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master WHERE name = 'poller_cursor'")
        .fetch_optional(&mut conn)
        .await
        .expect("schema");
    conn.close().await.expect("close");
    if migrated.is_none() {
        return 0; // killed before the first migration committed
    }
    let (stored, cursor) = stored_snapshot(db).await;
    let Some(cursor) = cursor else {
        assert!(stored.is_empty(), "rows without a cursor");
        return 0;
    };
    let (ts, index) = cursor.split_once('/').expect("cursor format");
    let cursor = position(ts, index.parse().expect("index"));
    let covered: Vec<Expected> = expected
        .iter()
        .filter(|e| position(&e.timestamp, e.index) <= cursor)
        .cloned()
        .collect();
    assert_same(&stored, &covered, "rows match the cursor exactly (whole pages only)");
    stored.len()
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let kills = knob("TEST_CRASH_KILLS", 10);
    let mirror = FakeMirror::start().await;
    // Each run makes a few pages of progress before its kill; the history is long enough
    // that every requested kill interrupts a backfill still under way.
    let (logs, expected, poison) = mirror::history(31, (kills * 700).max(20_000), START, 60 * DAY);
    mirror.push_many(logs);
    mirror.set_latency(Duration::from_millis(5));
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path()).write(dir.path());
    let db = dir.path().join("ww.db");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut survived = 0;
    let mut progress = Vec::new();
    for round in 0..kills {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weights-watcher"))
            .arg("--config")
            .arg(&config)
            .args(["run", "--once"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        // The first two kills land during start-up (database creation, migrations); the rest
        // mid-backfill.
        let after = if round < 2 {
            rng.random_range(0..10)
        } else {
            rng.random_range(50..400)
        };
        tokio::time::sleep(Duration::from_millis(after)).await;
        if child.try_wait().expect("wait").is_some() {
            break; // finished before the kill: nothing left to interrupt
        }
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("reap");
        survived += 1;
        progress.push(assert_consistent(&db, &expected).await);
    }
    eprintln!("crash consistency: {survived} SIGKILLs survived, rows after each: {progress:?}");
    assert!(
        survived >= kills.min(5),
        "the backfill was killed mid-way at least a few times ({survived})"
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress is never lost");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weights-watcher"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--once"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("final run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(assert_consistent(&db, &expected).await, expected.len());
    assert_same(
        &stored_submissions(&db).await,
        &expected,
        "ground truth after the kills",
    );
    assert_eq!(stored_rejections(&db).await, sorted(poison));
}

/// One fault-matrix run: `faults` injected (queue and/or rate) over a backfill, while the API
/// keeps answering from its cache.
async fn backfill_through(faults: &[Fault], rate: f64, seed: u64) {
    let n = knob("TEST_FAULT_LOGS", 10_000);
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let (logs, expected, poison) = mirror::history(seed, n, START, 40 * DAY);
    // A first slice is indexed before the faults start, so the API has a cache to serve.
    let split = logs.len() / 10;
    let (first, rest): (Vec<_>, Vec<_>) = logs.into_iter().enumerate().partition(|(i, _)| *i < split);
    mirror.push_many(first.into_iter().map(|(_, l)| l));
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, Some(&s3), dir.path());
    let app = spawn_app(&config, Some(&s3)).await;
    app.wait_for_status("the first slice", |s| {
        s["last_poll_ok"] == true && s["submissions_indexed"].as_i64() > Some(0)
    })
    .await;
    let known_task = stored_submissions(&dir.path().join("ww.db")).await[0].task_id.clone();
    for f in faults {
        mirror.inject(f.clone(), 2);
    }
    if rate > 0.0 {
        mirror.set_fault_rate(rate, faults.to_vec());
    }
    mirror.push_many(rest.into_iter().map(|(_, l)| l));
    let total = expected.len() as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        // The API answers from its cache throughout.
        let (code, body) = app.get(&format!("/v1/tasks/{known_task}/weights")).await;
        assert_eq!(code, 200, "the API keeps answering during faults: {body}");
        let (_, status) = app.get("/v1/status").await;
        if status["submissions_indexed"] == total && status["last_poll_ok"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backfill did not finish: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mirror.clear_faults();
    let db = dir.path().join("ww.db");
    assert_same(
        &stored_submissions(&db).await,
        &expected,
        "exact set through the faults",
    );
    assert_eq!(stored_rejections(&db).await, sorted(poison));
    let requests = mirror.requests();
    let injected = requests.iter().filter(|r| r.fault.is_some()).count();
    assert!(injected >= faults.len().min(2), "faults were injected ({injected})");
    crate::support::assert_retry_after_honoured(&requests);
    eprintln!(
        "fault matrix {faults:?} rate {rate}: {injected} faults injected over {} requests",
        requests.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn fault_429_with_retry_after_seconds() {
    backfill_through(
        &[Fault::TooManyRequests {
            retry_after: Some(RetryAfter::Seconds(1)),
            html_body: false,
        }],
        0.0,
        41,
    )
    .await;
}

#[tokio::test]
async fn fault_429_with_retry_after_http_date_and_html_body() {
    let when = std::time::SystemTime::now() + Duration::from_secs(3);
    backfill_through(
        &[Fault::TooManyRequests {
            retry_after: Some(RetryAfter::HttpDate(when)),
            html_body: true,
        }],
        0.0,
        42,
    )
    .await;
}

#[tokio::test]
async fn fault_500_503_and_timeouts() {
    backfill_through(
        &[
            Fault::ServerError,
            Fault::Unavailable {
                retry_after: Some(RetryAfter::Seconds(1)),
            },
            Fault::Hang(Duration::from_secs(3)),
        ],
        0.0,
        43,
    )
    .await;
}

#[tokio::test]
async fn fault_resets_truncated_json_and_repeated_pages() {
    backfill_through(&[Fault::Reset, Fault::TruncatedJson, Fault::RepeatPage], 0.0, 44).await;
}

#[tokio::test]
async fn all_faults_mixed_at_20_percent() {
    backfill_through(
        &[
            Fault::TooManyRequests {
                retry_after: Some(RetryAfter::Seconds(1)),
                html_body: true,
            },
            Fault::ServerError,
            Fault::Unavailable { retry_after: None },
            Fault::Hang(Duration::from_millis(2500)),
            Fault::Reset,
            Fault::TruncatedJson,
            Fault::RepeatPage,
            Fault::ForeignNext,
        ],
        0.2,
        45,
    )
    .await;
}

#[tokio::test]
async fn readyz_says_why_while_the_mirror_fails_and_recovers_after() {
    let mirror = FakeMirror::start().await;
    mirror.push(mirror::weights_submitted((START, 0), 0, 1, [1; 20], "aa", 1));
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());
    let app = spawn_app(&config, None).await;
    app.wait_for_status("first poll", |s| s["last_poll_ok"] == true).await;
    assert_eq!(app.get("/readyz").await.0, 200);
    mirror.set_fault_rate(1.0, vec![Fault::Unavailable { retry_after: None }]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let reason = loop {
        let (code, body) = app.get("/readyz").await;
        if code == 503 {
            break body["error"].as_str().unwrap_or_default().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("503"), "the reason names the fault: {reason}");
    assert_eq!(app.get("/healthz").await.0, 200, "still serving");
    let (_, status) = app.get("/v1/status").await;
    assert_eq!(status["last_poll_ok"], false);
    mirror.clear_faults();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.get("/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "readyz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_mirror_that_misbehaves_on_purpose_loses_nothing() {
    let mirror = FakeMirror::start().await;
    let trainer = [9; 20];
    mirror.push(mirror::weights_submitted((START, 0), 0, 1, trainer, "first", 1));
    mirror.push(mirror::weights_submitted((START + 100, 0), 0, 2, trainer, "second", 1));
    let mut null_data = mirror::weights_submitted((START + 101, 0), 0, 3, trainer, "null-data", 1);
    null_data.data = None;
    mirror.push(null_data);
    let mut no_topics = mirror::weights_submitted((START + 102, 0), 0, 4, trainer, "no-topics", 1);
    no_topics.topics.clear();
    mirror.push(no_topics);
    let mut short_topics = mirror::weights_submitted((START + 103, 0), 0, 5, trainer, "short", 1);
    short_topics.topics.truncate(1);
    mirror.push(short_topics);
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());
    let app = spawn_app_sweeping(&config, None, Duration::from_millis(200)).await;
    app.wait_for_status("the first logs", |s| {
        s["submissions_indexed"] == 2 && s["logs_rejected"] == 2
    })
    .await;

    // Oversized, foreign-linked and repeated pages come next; then a log older than the
    // cursor appears late, and duplicates are served.
    mirror.inject(Fault::HugeBody(50 * 1024 * 1024), 1);
    mirror.inject(Fault::ForeignNext, 1);
    mirror.inject(Fault::RepeatPage, 1);
    mirror.push(mirror::weights_submitted(
        (START + 50, 0),
        0,
        6,
        trainer,
        "late-older",
        1,
    ));
    for i in 0..150 {
        mirror.push(mirror::weights_submitted(
            (START + 200 + i, 0),
            0,
            7,
            trainer,
            &format!("bulk-{i}"),
            1,
        ));
    }
    app.wait_for_status("late and bulk logs", |s| s["submissions_indexed"] == 153)
        .await;
    // The same log served twice within a page and across pages is stored once.
    mirror.push(mirror::weights_submitted((START + 200, 0), 0, 7, trainer, "bulk-0", 1));
    mirror.push(mirror::weights_submitted(
        (START + 400, 0),
        0,
        8,
        trainer,
        "after-dup",
        1,
    ));
    app.wait_for_status("after the duplicates", |s| s["submissions_indexed"] == 154)
        .await;
    app.stop().await;

    let db = dir.path().join("ww.db");
    let hashes: Vec<String> = stored_submissions(&db).await.into_iter().map(|s| s.hash).collect();
    assert_eq!(hashes.len(), 154, "each log once");
    assert!(
        hashes.contains(&"late-older".to_owned()),
        "the late log older than the cursor was swept in"
    );
    assert_eq!(
        stored_rejections(&db).await.len(),
        2,
        "null data and a missing indexed topic are quarantined"
    );
    assert!(
        !hashes.contains(&"no-topics".to_owned()),
        "a log with no topics is not ours"
    );
    let requests = mirror.requests();
    assert!(
        requests.iter().all(|r| !r.path_and_query.contains("203.0.113.1")),
        "never followed a foreign link"
    );
}

#[tokio::test]
async fn sixty_four_api_clients_during_a_backfill_see_consistent_answers() {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let (logs, expected, _) = mirror::history(51, 8_000, START, 30 * DAY);
    mirror.push_many(logs);
    mirror.set_latency(Duration::from_millis(3));
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, Some(&s3), dir.path());
    let app = std::sync::Arc::new(spawn_app(&config, Some(&s3)).await);
    let mut final_by_task = std::collections::BTreeMap::<String, Vec<String>>::new();
    for e in &expected {
        final_by_task.entry(e.task_id.clone()).or_default().push(e.hash.clone());
    }
    let final_by_task = std::sync::Arc::new(final_by_task);
    let total = expected.len() as i64;
    // Ends a stalled run instead of hanging; never reached by a working one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut clients = Vec::new();
    for c in 0..64u64 {
        let app = app.clone();
        let truth = final_by_task.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c);
            let tasks: Vec<&String> = truth.keys().collect();
            let mut answered = 0u32;
            loop {
                let task = tasks[rng.random_range(0..tasks.len())];
                let (code, body) = app.get(&format!("/v1/tasks/{task}/weights")).await;
                match code {
                    200 => {
                        let got: Vec<String> = weight_hashes(&body).into_iter().map(str::to_owned).collect();
                        assert!(
                            truth[task].starts_with(&got),
                            "task {task}: answers are prefixes of the history"
                        );
                    }
                    404 => {}
                    other => panic!("client {c}: {other} {body}"),
                }
                let (code, status) = app.get("/v1/status").await;
                assert_eq!(code, 200, "{status}");
                answered += 1;
                if status["submissions_indexed"] == total {
                    return answered;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the backfill never finished under load: {status}"
                );
            }
        }));
    }
    let mut answered = 0;
    for c in clients {
        answered += c.await.expect("client did not panic");
    }
    eprintln!("concurrency: 64 clients, {answered} lookups during the backfill, no error");
    assert_same(
        &stored_submissions(&dir.path().join("ww.db")).await,
        &expected,
        "backfill exact under load",
    );
}

/// A tmpfs mounted for one test; unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mountpoint");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root (CI runs as root)");
        Self { path, _dir: dir }
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn wait_for_error(app: &TestApp, needle: &str) -> String {
    // (the poller reports storage errors through /v1/status's last_error)
    let status = app
        .wait_for_status(needle, |s| s["last_error"].as_str().is_some_and(|e| e.contains(needle)))
        .await;
    status["last_error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_full_or_read_only_disk_is_reported_and_recovered_from_exactly() {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let (logs, expected, poison) = mirror::history(61, 6_000, START, 20 * DAY);
    mirror.push_many(logs);
    let disk = SmallDisk::mount("400k");
    let mut config = Config::new(&mirror, Some(&s3), &disk.path);
    config.set(
        "database",
        "path",
        &format!("{:?}", disk.path.join("ww.db").display().to_string()),
    );
    let app = spawn_app(&config, Some(&s3)).await;
    let error = wait_for_error(&app, "full").await;
    eprintln!("full disk reported as: {error}");
    assert_eq!(app.get("/healthz").await.0, 200, "still serving while the disk is full");
    let db = disk.path.join("ww.db");
    let partial = assert_consistent(&db, &expected).await;
    assert!(partial < expected.len(), "the disk filled mid-backfill");

    disk.remount("size=64m");
    app.wait_for_status("recovery", |s| s["submissions_indexed"] == expected.len() as i64)
        .await;

    app.stop().await;

    // Now the database sits on a read-only file system: a clear error, nothing touched.
    disk.remount("ro");
    for i in 0..5 {
        mirror.push(mirror::weights_submitted(
            (START + 30 * DAY + i, 0),
            0,
            99,
            [5; 20],
            &format!("ro-{i}"),
            1,
        ));
    }
    // The config file itself sits on a writable directory.
    let config_dir = tempfile::tempdir().expect("dir");
    let path = config.write(config_dir.path());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weights-watcher"))
        .arg("--config")
        .arg(&path)
        .args(["run", "--once"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "read-only disk reported as: {}",
        stderr.lines().last().unwrap_or_default()
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ww.db") && (stderr.contains("read-only") || stderr.contains("readonly")),
        "{stderr}"
    );
    disk.remount("rw");
    assert_eq!(
        assert_consistent(&db, &expected).await,
        expected.len(),
        "untouched while read-only"
    );
    let done = crate::support::app::run_once(&config, Some(&s3)).await;
    assert_eq!(done.indexed, 5, "resumes exactly where it stopped");
    let stored = stored_submissions(&db).await;
    assert_eq!(stored.len(), expected.len() + 5);
    assert_same(&stored[..expected.len()], &expected, "the history, once");
    assert_eq!(stored_rejections(&db).await, sorted(poison));
}
