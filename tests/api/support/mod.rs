//! Shared test fixtures: the fake mirror node, the in-process S3 server and `spawn_app`.
#![allow(dead_code)]

pub mod app;
pub mod mirror;
pub mod s3;

use std::path::PathBuf;

use sqlx::Connection;

/// A path inside the read-only `shared/` directory beside the repository.
pub fn shared_path(relative: &str) -> PathBuf {
    let root = std::env::var_os("WEIGHTS_WATCHER_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    root.join(relative)
}

/// The hashes of a weights answer (`{"weights": [{"hash", …}, …]}`), in its order.
pub fn weight_hashes(answer: &serde_json::Value) -> Vec<&str> {
    answer["weights"]
        .as_array()
        .expect("weights")
        .iter()
        .map(|w| w["hash"].as_str().unwrap_or_default())
        .collect()
}

/// Every stored submission as (timestamp, index, task, trainer, hash), in chain order.
pub async fn stored_submissions(db: &std::path::Path) -> Vec<mirror::Expected> {
    let mut conn = open_connection(db).await;
    let rows = submissions_on(&mut conn).await;
    conn.close().await.expect("close");
    rows
}

/// The stored submissions and the committed cursor, read in one transaction, so that a
/// daemon still committing cannot slip a page in between the two reads.
pub async fn stored_snapshot(db: &std::path::Path) -> (Vec<mirror::Expected>, Option<String>) {
    let mut conn = open_connection(db).await;
    let mut tx = conn.begin().await.expect("begin");
    let rows = submissions_on(&mut tx).await;
    let cursor = cursor_on(&mut tx).await;
    tx.commit().await.expect("commit");
    conn.close().await.expect("close");
    (rows, cursor)
}

async fn submissions_on(conn: &mut sqlx::SqliteConnection) -> Vec<mirror::Expected> {
    let rows: Vec<(String, i64, String, Option<String>, String)> = sqlx::query_as(
        "SELECT consensus_timestamp, log_index, task_id, trainer, weights_hash FROM weights_submissions \
         ORDER BY consensus_ns, log_index",
    )
    .fetch_all(conn)
    .await
    .expect("query submissions");
    rows.into_iter()
        .map(|(timestamp, index, task_id, trainer, hash)| mirror::Expected {
            timestamp,
            index: index as u32,
            task_id,
            trainer: trainer.unwrap_or_default(),
            hash,
        })
        .collect()
}

async fn cursor_on(conn: &mut sqlx::SqliteConnection) -> Option<String> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT consensus_timestamp, log_index FROM poller_cursor")
        .fetch_optional(conn)
        .await
        .expect("query cursor");
    row.map(|(t, i)| format!("{t}/{i}"))
}

/// Every quarantined log as (timestamp, index), sorted.
pub async fn stored_rejections(db: &std::path::Path) -> Vec<(String, u32)> {
    let mut conn = open_connection(db).await;
    let mut rows: Vec<(String, i64)> = sqlx::query_as("SELECT consensus_timestamp, log_index FROM rejected_logs")
        .fetch_all(&mut conn)
        .await
        .expect("query rejected");
    conn.close().await.expect("close");
    rows.sort();
    rows.into_iter().map(|(t, i)| (t, i as u32)).collect()
}

/// The committed cursor as "timestamp/index".
pub async fn stored_cursor(db: &std::path::Path) -> Option<String> {
    let mut conn = open_connection(db).await;
    let cursor = cursor_on(&mut conn).await;
    conn.close().await.expect("close");
    cursor
}

fn connect_options(db: &std::path::Path) -> sqlx::sqlite::SqliteConnectOptions {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(std::time::Duration::from_secs(5))
}

/// A pool on a test database.
pub async fn open_db(db: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(connect_options(db))
        .await
        .expect("open test database")
}

/// One connection to a test database; closed (file released) when its `close` returns, which
/// a pool does not promise.
pub async fn open_connection(db: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    connect_options(db).connect().await.expect("open test database")
}

/// Sorts expected poison positions the way `stored_rejections` does.
pub fn sorted(mut v: Vec<(String, u32)>) -> Vec<(String, u32)> {
    v.sort();
    v
}

/// Asserts two chain-ordered lists are equal, reporting the first difference (not both lists).
#[track_caller]
pub fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!("{what}: first difference at {i}: got {:?}, want {:?}", got[i], want[i]);
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: lengths differ (the shorter is a prefix of the longer)"
    );
}

/// Asserts no request followed a `Retry-After` (in seconds) before it elapsed.
#[track_caller]
pub fn assert_retry_after_honoured(requests: &[mirror::RequestRecord]) {
    for pair in requests.windows(2) {
        let wait = match &pair[0].fault {
            Some(mirror::Fault::TooManyRequests {
                retry_after: Some(mirror::RetryAfter::Seconds(s)),
                ..
            })
            | Some(mirror::Fault::Unavailable {
                retry_after: Some(mirror::RetryAfter::Seconds(s)),
            }) => std::time::Duration::from_secs(*s),
            _ => continue,
        };
        let gap = pair[1].received.duration_since(pair[0].received);
        assert!(gap >= wait, "a request came {gap:?} after a Retry-After of {wait:?}");
    }
}
