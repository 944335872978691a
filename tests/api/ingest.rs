//! Ingest: the mirror node's logs end up in SQLite exactly once, across restarts, staged
//! visibility, live appends and injected faults.

use std::time::Duration;

use crate::support::app::{Config, run_once, spawn_app};
use crate::support::mirror::{self, FakeMirror, Fault, RetryAfter};
use crate::support::{assert_same, sorted, stored_cursor, stored_rejections, stored_submissions};

/// 2020-09-13: years back, so a `start_timestamp = "0"` backfill walks a long history.
const START: u64 = 1_600_000_000;
const DAY: u64 = 86_400;

#[tokio::test]
async fn backfill_of_5000_logs_over_40_days_equals_the_ground_truth() {
    let mirror = FakeMirror::start().await;
    let (logs, expected, poison) = mirror::history(1, 5_000, START, 40 * DAY);
    let last = logs.last().map(|l| format!("{}/{}", l.timestamp_string(), l.index));
    mirror.push_many(logs);
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());

    let done = run_once(&config, None).await;

    let db = dir.path().join("ww.db");
    let stored = stored_submissions(&db).await;
    assert_same(&stored, &expected, "every submission exactly once, as encoded");
    assert_eq!(
        stored_rejections(&db).await,
        sorted(poison.clone()),
        "every poison log quarantined once"
    );
    assert!(poison.len() > 50, "the history has poison in it");
    assert_eq!(done.indexed as usize, expected.len());
    assert_eq!(done.rejected as usize, poison.len());
    assert_eq!(stored_cursor(&db).await, last, "the cursor is the last log served");

    // The client followed the documented protocol on every request.
    let requests = mirror.requests();
    assert!(requests.len() >= 50, "about one request per 100 logs");
    for r in &requests {
        assert_eq!(r.status, 200, "no request was refused: {}", r.path_and_query);
        assert!(
            r.path_and_query.starts_with("/api/v1/contracts/0.0.5005/results/logs?"),
            "{}",
            r.path_and_query
        );
        assert!(
            r.path_and_query.contains("order=asc") && r.path_and_query.contains("limit=100"),
            "{}",
            r.path_and_query
        );
        assert!(
            !r.path_and_query.contains("timestamp=gt:"),
            "never resume with gt alone: {}",
            r.path_and_query
        );
    }

    // A second run finds nothing new and changes nothing.
    let again = run_once(&config, None).await;
    assert_eq!((again.indexed, again.rejected), (0, 0));
    assert_eq!(stored_submissions(&db).await.len(), expected.len());
}

#[tokio::test]
async fn stopping_after_a_few_pages_and_restarting_yields_the_same_set() {
    let mirror = FakeMirror::start().await;
    let (logs, expected, poison) = mirror::history(2, 3_000, START, 31 * DAY);
    mirror.push_many(logs);
    // Slow pages so the daemon is stopped mid-backfill.
    mirror.set_latency(Duration::from_millis(30));
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());

    let app = spawn_app(&config, None).await;
    let status = app
        .wait_for_status("a few pages", |s| {
            s["submissions_indexed"].as_i64().is_some_and(|n| n >= 300)
        })
        .await;
    app.stop().await;
    let db = dir.path().join("ww.db");
    let partial = stored_submissions(&db).await;
    assert!(
        partial.len() < expected.len(),
        "stopped mid-backfill ({} of {})",
        partial.len(),
        expected.len()
    );
    assert_same(
        &partial,
        &expected[..partial.len()],
        "a prefix of the history, in order",
    );
    assert!(status["cursor"].is_object());

    mirror.set_latency(Duration::ZERO);
    run_once(&config, None).await;
    assert_same(&stored_submissions(&db).await, &expected, "after the restart");
    assert_eq!(stored_rejections(&db).await, sorted(poison));
}

#[tokio::test]
async fn logs_sharing_the_newest_timestamp_are_indexed_when_they_appear_in_stages() {
    let mirror = FakeMirror::start().await;
    let trainer = [0x42; 20];
    let t = (START + 10, 5);
    mirror.push(mirror::weights_submitted((START, 0), 0, 1, trainer, "aa", 1));
    mirror.push(mirror::weights_submitted(t, 0, 2, trainer, "bb", 1));
    mirror.push(mirror::weights_submitted(t, 1, 3, trainer, "cc", 1));
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());
    assert_eq!(run_once(&config, None).await.indexed, 3);

    // The rest of that transaction's logs become visible later, at the same timestamp.
    mirror.push(mirror::weights_submitted(t, 2, 4, trainer, "dd", 1));
    mirror.push(mirror::other_event(t, 3, 4));
    mirror.push(mirror::weights_submitted(t, 4, 5, trainer, "ee", 1));
    let second = run_once(&config, None).await;
    assert_eq!(second.indexed, 2);
    mirror.push(mirror::weights_submitted((t.0, t.1 + 1), 0, 6, trainer, "ff", 1));
    assert_eq!(run_once(&config, None).await.indexed, 1);

    let hashes: Vec<String> = stored_submissions(&dir.path().join("ww.db"))
        .await
        .into_iter()
        .map(|s| s.hash)
        .collect();
    assert_eq!(hashes, ["aa", "bb", "cc", "dd", "ee", "ff"]);
    let last = mirror
        .requests()
        .last()
        .map(|r| r.path_and_query.clone())
        .unwrap_or_default();
    assert!(
        last.contains(&format!("timestamp=gte:{}.000000005&index=gt:4", t.0)),
        "resumes at the cursor: {last}"
    );
}

#[tokio::test]
async fn logs_appended_while_running_are_indexed_by_the_next_poll() {
    let mirror = FakeMirror::start().await;
    let (logs, expected, _) = mirror::history(3, 250, START, 2 * DAY);
    mirror.push_many(logs);
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());
    let app = spawn_app(&config, None).await;
    let n = expected.len() as i64;
    app.wait_for_status("the backfill", |s| s["submissions_indexed"] == n)
        .await;

    let newest = (START + 3 * DAY, 0);
    mirror.push(mirror::weights_submitted(newest, 0, 77, [7; 20], "fresh-weights", 1));
    mirror.push(mirror::weights_submitted(newest, 1, 77, [7; 20], "fresh-weights-2", 1));
    // The count comes from the database, the cursor from the poller once its commit returned:
    // wait for both.
    let status = app
        .wait_for_status("the new logs and the cursor after them", |s| {
            s["submissions_indexed"] == n + 2 && s["cursor"]["index"] == 1
        })
        .await;
    assert_eq!(status["cursor"]["timestamp"], format!("{}.000000000", newest.0));
    assert_eq!(status["cursor"]["index"], 1);
    assert_eq!(status["last_poll_ok"], true);
    let (code, body) = app.get("/v1/tasks/77/weights").await;
    assert_eq!(
        code, 503,
        "no S3 credentials in this test, so no URL can be made: {body}"
    );
    app.stop().await;
    let stored = stored_submissions(&dir.path().join("ww.db")).await;
    assert_eq!(stored.len(), expected.len() + 2);
}

#[tokio::test]
async fn injected_faults_are_waited_out_and_retry_after_is_honoured() {
    let mirror = FakeMirror::start().await;
    let (logs, expected, poison) = mirror::history(4, 2_000, START, 35 * DAY);
    mirror.push_many(logs);
    let date = RetryAfter::HttpDate(std::time::SystemTime::now() + Duration::from_secs(2));
    for fault in [
        Fault::TooManyRequests {
            retry_after: Some(RetryAfter::Seconds(1)),
            html_body: true,
        },
        Fault::ServerError,
        Fault::Unavailable {
            retry_after: Some(RetryAfter::Seconds(1)),
        },
        Fault::Reset,
        Fault::TruncatedJson,
        Fault::Hang(Duration::from_secs(4)),
        Fault::TooManyRequests {
            retry_after: Some(date),
            html_body: false,
        },
        Fault::HugeBody(20 * 1024 * 1024),
        Fault::RepeatPage,
        Fault::ForeignNext,
    ] {
        // Each fault hits the request after a healthy one, spreading them over the backfill.
        mirror.inject(fault, 1);
    }
    mirror.set_fault_rate(0.2, vec![Fault::ServerError, Fault::Reset, Fault::TruncatedJson]);
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, None, dir.path());

    run_once(&config, None).await;

    let db = dir.path().join("ww.db");
    assert_same(&stored_submissions(&db).await, &expected, "exact set despite faults");
    assert_eq!(stored_rejections(&db).await, sorted(poison));
    let requests = mirror.requests();
    let faulted = requests.iter().filter(|r| r.fault.is_some()).count();
    assert!(faulted >= 10, "faults were injected ({faulted})");
    crate::support::assert_retry_after_honoured(&requests);
    assert!(requests.iter().all(|r| !r.path_and_query.contains("203.0.113.1")));
}
